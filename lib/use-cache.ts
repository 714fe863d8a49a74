/**
 * next-volume-cache/use-cache: the `'use cache'` handler, configured from
 * `NEXT_VOLUME_CACHE_*` environment variables like the page handler.
 *
 *   cacheHandler: require.resolve('next-volume-cache'),
 *   cacheHandlers: { default: require.resolve('next-volume-cache/use-cache'), remote: require.resolve('next-volume-cache/use-cache') },
 */
import { createEnvUseCacheHandler } from './next/use-cache';

export { createUseCacheHandler, type UseCacheEntry, type UseCacheHandler } from './next/use-cache';

// Reads the environment at its first call, not at import: importing this module does no work.
const handler = createEnvUseCacheHandler();
export default handler;
