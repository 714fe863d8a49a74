/**
 * next-volume-cache: a Next.js 16 `cacheHandler` that keeps every entry on
 * one shared volume and keeps all replicas coherent.
 *
 *   // next.config.js
 *   cacheHandler: require.resolve('next-volume-cache'),
 *
 * The default export is the handler class configured from
 * `NEXT_VOLUME_CACHE_*` environment variables; `createCacheHandler(options)`
 * builds one from options for a wrapper module. `installCacheHandler()`
 * installs one from instrumentation.js instead of next.config.
 */
import { createEnvCacheHandler } from './next/handler';
import { installCacheHandler as installHandlerClass } from './next/install';
import type { NextCacheHandlerClass } from './next/types';
import { allRuntimes } from './service/registry';
import type { Metrics } from './util/metrics';
import type { MemoryStats } from './service/memory-tier';

export { createCacheHandler } from './next/handler';
export { ConfigError, resolveOptions, envNameOf, flagNameOf, type CacheOptions, type ResolvedOptions, type LogLevel } from './config';
export type { Metrics } from './util/metrics';
export type { MemoryStats } from './service/memory-tier';
export type { CacheControl, CacheHandlerValue, CachedValue, GetContext, SetContext, TagDurations, NextCacheHandler, NextCacheHandlerClass, NextHandlerOptions } from './next/types';

/** The in-process counters of every cache root this process uses (hits, misses by cause, timeouts, ...). */
export function getMetrics(): Array<{ dir: string; app: string; metrics: Metrics & { memory: MemoryStats } }> {
  return allRuntimes().map((rt) => ({ dir: rt.layout.root, app: rt.layout.app, metrics: rt.metricsSnapshot() }));
}

/**
 * Installs `handler` (default: this module's default export) as Next's cache handler from
 * `register()` in instrumentation.js, with no `cacheHandler` in next.config: Next then skips the
 * per-request import of a configured handler. See lib/next/install.ts and the README ("Installing
 * from instrumentation") for what that trades away.
 */
export function installCacheHandler(handler: NextCacheHandlerClass = NextVolumeCacheHandler): void {
  installHandlerClass(handler);
}

// Reads the environment when Next first constructs it, not at import: importing this module for
// `createCacheHandler` does no work and cannot fail on a bad variable.
const NextVolumeCacheHandler = createEnvCacheHandler();
export default NextVolumeCacheHandler;
