/**
 * next-volume-cache/use-cache: the `'use cache'` handler, configured from
 * `NEXT_VOLUME_CACHE_*` environment variables like the page handler.
 *
 *   cacheHandler: require.resolve('next-volume-cache'),
 *   cacheHandlers: { default: require.resolve('next-volume-cache/use-cache'), remote: require.resolve('next-volume-cache/use-cache') },
 */
import { createUseCacheHandler } from './next/use-cache';

export { createUseCacheHandler, type UseCacheEntry, type UseCacheHandler } from './next/use-cache';

const handler = createUseCacheHandler();
export default handler;
