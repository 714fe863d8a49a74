// instrumentation.js (or .ts) at the app's root, next to next.config.js.
export async function register() {
  // Only in the Node.js runtime: the library uses the filesystem, and the edge build drops this branch.
  if (process.env.NEXT_RUNTIME === 'nodejs') {
    const { installCacheHandler } = await import('next-volume-cache');
    installCacheHandler();
  }
}
