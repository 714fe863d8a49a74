import { codedError } from '../util/errors';
import { isVolumeCacheHandler } from './handler';
import type { NextCacheHandlerClass } from './types';

/**
 * Where Next 16 looks for a platform's cache handlers (`server/lib/incremental-cache/index.js`):
 * when next.config names no `cacheHandler`, each request's IncrementalCache takes the class in
 * `FetchCache` from here, for every kind it stores (pages, routes, fetch, `unstable_cache`).
 * The same object may hold `DefaultCache` / `RemoteCache` for `'use cache'`; those are kept.
 */
const NEXT_CACHE_HANDLERS = Symbol.for('@next/cache-handlers');

interface NextCacheHandlersGlobal {
  FetchCache?: unknown;
  [other: string]: unknown;
}

/**
 * Makes `handler` Next's incremental cache from `instrumentation.js`'s `register()`, instead of a
 * `cacheHandler` path in next.config.
 *
 * Why: with a `cacheHandler` path, Next 16 `import()`s that module again on every request (in
 * next-server.js and in the route module's `getIncrementalCache`), which costs more server CPU per
 * request than a memory hit of this handler. A class installed here is constructed directly.
 *
 * What it gives up, both Next's choices: optimized images go through a custom handler only when
 * next.config names `cacheHandler` (with this, each pod keeps its own `.next/cache/images`), and
 * Next refuses to cache a fetch over 2 MB, as it does for its built-in cache.
 *
 * Next ignores the installed class while next.config names a `cacheHandler`: remove it.
 * Next does not run `register()` during `next build`: build-time fetches go to Next's own
 * `.next/cache/fetch-cache` there, not to the volume.
 *
 * Calling this again replaces a class this library installed (`register()` may run again in
 * `next dev`, and `createCacheHandler` makes a new class each time); another platform's class is
 * refused with code `EHANDLERINSTALLED` rather than silently replaced.
 */
export function installCacheHandler(handler: NextCacheHandlerClass): void {
  if (typeof handler !== 'function') {
    throw codedError('EINVAL', `installCacheHandler needs a handler class, got ${handler === null ? 'null' : typeof handler}`);
  }
  const slot = globalThis as typeof globalThis & { [NEXT_CACHE_HANDLERS]?: NextCacheHandlersGlobal };
  const current = slot[NEXT_CACHE_HANDLERS];
  if (current?.FetchCache !== undefined && !isVolumeCacheHandler(current.FetchCache)) {
    const name = typeof current.FetchCache === 'function' && current.FetchCache.name ? current.FetchCache.name : 'another handler';
    throw codedError('EHANDLERINSTALLED', `another cache handler (${name}) is already installed for Next; not replacing it`);
  }
  // Set on the object already there, if any: whoever put it there may hold it.
  if (current) current.FetchCache = handler;
  else slot[NEXT_CACHE_HANDLERS] = { FetchCache: handler };
}
