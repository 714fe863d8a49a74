// The app's next.config.js for this example.
module.exports = {
  output: 'standalone',
  cacheHandler: require.resolve('next-volume-cache'),
  cacheHandlers: {
    default: require.resolve('next-volume-cache/use-cache'),
    remote: require.resolve('next-volume-cache/use-cache'),
  },
  images: { customCacheHandler: true },
};
