// next.config.js for installing the handler from instrumentation.js (see README.md here): no
// `cacheHandler` line. Next would import a configured handler's module again on every request;
// an installed one it constructs directly.
module.exports = {
  output: 'standalone',
  // Loaded by Node at run time from node_modules (and copied into the standalone output), not
  // bundled into instrumentation.js: one copy of the library per process, whoever imports it.
  serverExternalPackages: ['next-volume-cache'],
  cacheHandlers: {
    default: require.resolve('next-volume-cache/use-cache'),
    remote: require.resolve('next-volume-cache/use-cache'),
  },
};
