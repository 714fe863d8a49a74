import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import NextVolumeCacheHandler, { createCacheHandler, installCacheHandler } from '../lib/index';
import type { NextCacheHandlerClass } from '../lib/next/types';

/** The global Next 16 reads a platform's cache handlers from (server/lib/incremental-cache/index.js). */
const NEXT_CACHE_HANDLERS = Symbol.for('@next/cache-handlers');
type Slot = typeof globalThis & { [NEXT_CACHE_HANDLERS]?: Record<string, unknown> };
const slot = globalThis as Slot;

/** Next's own IncrementalCache, the class each request constructs (next@16 from the repository's node_modules). */
interface IncrementalCacheLike {
  cacheHandler: unknown;
}
const { IncrementalCache } = createRequire(import.meta.url)('next/dist/server/lib/incremental-cache') as {
  IncrementalCache: new (options: Record<string, unknown>) => IncrementalCacheLike;
};

/** What next-server.js passes, minus `CurCacheHandler`: no cacheHandler in next.config. */
function requestCache(): IncrementalCacheLike {
  return new IncrementalCache({
    dev: false,
    requestHeaders: {},
    minimalMode: false,
    maxMemoryCacheSize: 0,
    previewProps: { previewModeId: 'x', previewModeEncryptionKey: 'x', previewModeSigningKey: 'x' },
    prerenderManifest: { version: 4, routes: {}, dynamicRoutes: {}, notFoundRoutes: [], preview: { previewModeId: 'x' } },
    fetchCacheKeyPrefix: '',
    CurCacheHandler: undefined,
  });
}

afterEach(() => {
  delete slot[NEXT_CACHE_HANDLERS];
});

describe('installCacheHandler', () => {
  it("makes the library's handler the class Next's per-request IncrementalCache constructs", () => {
    installCacheHandler();
    expect(slot[NEXT_CACHE_HANDLERS]?.FetchCache).toBe(NextVolumeCacheHandler);
    expect(requestCache().cacheHandler).toBeInstanceOf(NextVolumeCacheHandler);
  });

  it('installs a handler built from options', () => {
    const Handler = createCacheHandler({ dir: '/nonexistent-volume', app: 'shop' });
    installCacheHandler(Handler);
    expect(requestCache().cacheHandler).toBeInstanceOf(Handler);
  });

  it("keeps the 'use cache' handlers a platform put in the same global", () => {
    const DefaultCache = { get: () => undefined };
    const platform = { DefaultCache };
    slot[NEXT_CACHE_HANDLERS] = platform;
    installCacheHandler();
    expect(slot[NEXT_CACHE_HANDLERS]).toBe(platform);
    expect(platform).toEqual({ DefaultCache, FetchCache: NextVolumeCacheHandler });
  });

  it('called again (register() running again), replaces the class it installed, in the same global object', () => {
    installCacheHandler();
    const installed = slot[NEXT_CACHE_HANDLERS];
    expect(installed?.FetchCache).toBe(NextVolumeCacheHandler);
    expect(() => installCacheHandler()).not.toThrow();
    const Rebuilt = createCacheHandler({ dir: '/nonexistent-volume' });
    installCacheHandler(Rebuilt);
    expect(slot[NEXT_CACHE_HANDLERS]).toBe(installed);
    expect(installed?.FetchCache).toBe(Rebuilt);
    expect(requestCache().cacheHandler).toBeInstanceOf(Rebuilt);
  });

  it('refuses to replace another handler, with code EHANDLERINSTALLED, and leaves it in place', () => {
    class PlatformCache {}
    slot[NEXT_CACHE_HANDLERS] = { FetchCache: PlatformCache };
    expect(() => installCacheHandler()).toThrow(expect.objectContaining({ code: 'EHANDLERINSTALLED', message: expect.stringContaining('PlatformCache') }));
    expect(slot[NEXT_CACHE_HANDLERS]?.FetchCache).toBe(PlatformCache);
  });

  it('refuses something that is not a class, with code EINVAL, installing nothing', () => {
    expect(() => installCacheHandler(null as unknown as NextCacheHandlerClass)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => installCacheHandler({} as unknown as NextCacheHandlerClass)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(slot[NEXT_CACHE_HANDLERS]).toBeUndefined();
  });
});
