import type { EntryDraft, ReadOptions } from '../service/cache-service';
import type { ImageValue } from '../service/cache-service';
import type { Runtime } from '../service/runtime';
import { runtimeFor } from '../service/registry';
import { resolveOptions, type CacheOptions, type ResolvedOptions } from '../config';
import { describe } from '../util/errors';
import { canServeStale, freshForMs, present, tagsOf } from './freshness';
import { isTaggablePagesEntry, pagesBuildOf, pagesImplicitTags, type PagesBuild } from './implicit-tags';
import { startAutoSeed } from './seed';
import type { CacheHandlerValue, CachedValue, GetContext, NextCacheHandler, NextCacheHandlerClass, NextHandlerOptions, SetContext, TagDurations } from './types';

/** Value kinds a page-cache entry may hold; anything else read back is damage. */
const PAGE_KINDS = new Set(['APP_PAGE', 'APP_ROUTE', 'PAGES', 'REDIRECT', 'FETCH', 'NULL']);

/**
 * Returns the class to export from a wrapper module used as Next's
 * `cacheHandler`. Options are validated now (a bad value throws here, at
 * start-up); the volume is first touched by the first get/set.
 */
export function createCacheHandler(options: CacheOptions = {}): NextCacheHandlerClass {
  const resolved = resolveOptions(options);
  return bindHandler((serverDistDir) => runtimeFor(resolved, serverDistDir));
}

/**
 * The default export's class: options come from the environment, resolved
 * when Next first constructs it (not at import, so that importing the
 * module for `createCacheHandler` never reads the environment).
 */
export function createEnvCacheHandler(): NextCacheHandlerClass {
  let resolved: ResolvedOptions | undefined;
  return bindHandler((serverDistDir) => runtimeFor((resolved ??= resolveOptions()), serverDistDir));
}

/** Every handler class this module made (installCacheHandler replaces its own, never another's). */
const handlerClasses = new WeakSet<object>();

/** Whether `value` is a handler class made by this library. */
export function isVolumeCacheHandler(value: unknown): boolean {
  return typeof value === 'function' && handlerClasses.has(value);
}

/** The handler class over a runtime source; tests pass a runtime with a fault-injecting filesystem. */
export function bindHandler(runtimeOf: (serverDistDir: string | undefined) => Runtime): NextCacheHandlerClass {
  const handlerClass = class NextVolumeCacheHandler implements NextCacheHandler {
    private readonly runtime: Runtime;
    private readonly serverDistDir: string | undefined;

    // Next constructs ~3 of these per request: no I/O here, only a registry lookup.
    constructor(nextOptions?: NextHandlerOptions) {
      this.serverDistDir = typeof nextOptions?.serverDistDir === 'string' ? nextOptions.serverDistDir : undefined;
      this.runtime = runtimeOf(this.serverDistDir);
      this.runtime.useNextMemorySize(nextOptions?.maxMemoryCacheSize);
    }

    get(key: string, ctx?: GetContext): Promise<CacheHandlerValue | null> {
      startAutoSeed(this.runtime, this.serverDistDir);
      return ctx?.kind === 'IMAGE' ? getImage(this.runtime, key, this.serverDistDir) : getEntry(this.runtime, key, ctx, this.serverDistDir);
    }

    set(key: string, data: CachedValue | null, ctx?: SetContext): Promise<void> {
      startAutoSeed(this.runtime, this.serverDistDir);
      if (data?.kind === 'IMAGE') {
        return this.runtime.service.writeImage(key, data as ImageValue, ctx?.cacheControl, this.runtime.namespaceFor('image', this.serverDistDir));
      }
      const area = data?.kind === 'FETCH' ? 'fetch' : 'page';
      const implicitTags = area === 'page' ? this.pagesTagsOf(key, data ?? null, ctx) : [];
      return this.runtime.service.write(toDraft(key, data ?? null, ctx, implicitTags), this.runtime.namespaceFor(area, this.serverDistDir));
    }

    /** Next passes an array; older callers a single tag. Rejects when the invalidation could not be recorded. */
    revalidateTag(tags: string | string[], durations?: TagDurations): Promise<void> {
      return this.runtime.service.invalidate(Array.isArray(tags) ? tags : [tags], durations);
    }

    resetRequestCache(): void {}

    /** A Pages Router entry's implicit path tags (see implicit-tags.ts); none for anything else. */
    private pagesTagsOf(key: string, data: CachedValue | null, ctx: SetContext | undefined): string[] {
      return isTaggablePagesEntry(key, data, ctx) ? pagesImplicitTags(key, this.pagesBuild()) : [];
    }

    /** The build's Pages routes (its manifests read on first use). */
    private pagesBuild(): PagesBuild | undefined {
      if (!this.serverDistDir) return undefined;
      const log = this.runtime.log;
      return pagesBuildOf(this.serverDistDir, (file, error) => log.onceWarn('pages-manifest', `cannot read ${file} (${describe(error)}): Pages Router entries are tagged by their path only`));
    }
  };
  handlerClasses.add(handlerClass);
  return handlerClass;
}

/**
 * Every failure of the store is a miss, logged once per cause. A hit the
 * memory tier can answer at once is answered without an async step (see
 * CacheService.readFromMemoryNow). Anything else that fails here (a ctx of
 * the wrong shape) rejects, as from an async function: get() never throws.
 */
function getEntry(rt: Runtime, key: string, ctx: GetContext | undefined, serverDistDir: string | undefined): Promise<CacheHandlerValue | null> {
  try {
    const namespace = rt.namespaceFor(ctx?.kind === 'FETCH' ? 'fetch' : 'page', serverDistDir);
    const options = readOptionsFor(ctx);
    const now = rt.service.readFromMemoryNow(key, namespace, options);
    if (now) return Promise.resolve(present(now.record, now.verdict, now.ageMs, ctx));
    return rt.service.read(key, namespace, options).then((outcome) => (outcome.status === 'hit' ? present(outcome.record, outcome.verdict, outcome.ageMs, ctx) : null));
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}

/** How the service judges a page-cache entry for this get. */
function readOptionsFor(ctx: GetContext | undefined): ReadOptions {
  return {
    extraTags: [...(ctx?.tags ?? []), ...(ctx?.softTags ?? [])],
    accept: (record) => PAGE_KINDS.has(record.kind),
    servableStale: (record) => canServeStale(record, ctx),
    freshForMs: (record) => freshForMs(record, ctx),
    kind: ctx?.kind,
  };
}

async function getImage(rt: Runtime, key: string, serverDistDir: string | undefined): Promise<CacheHandlerValue | null> {
  const outcome = await rt.service.readImage(key, rt.namespaceFor('image', serverDistDir));
  if (outcome.status === 'miss') return null;
  const s = outcome.sidecar;
  const value: CachedValue = { kind: 'IMAGE', buffer: outcome.buffer, etag: s.etag, upstreamEtag: s.upstreamEtag, extension: s.extension, revalidate: s.revalidate };
  const result: CacheHandlerValue = { lastModified: Date.now() - outcome.ageMs, value };
  if (s.cacheControl) result.cacheControl = s.cacheControl;
  return result;
}

function toDraft(key: string, value: CachedValue | null, ctx: SetContext | undefined, implicitTags: string[]): EntryDraft {
  return {
    key,
    kind: value === null ? 'NULL' : String(value.kind),
    cacheControl: ctx?.cacheControl,
    tags: [...new Set([...tagsOf(value, ctx), ...implicitTags])],
    value,
  };
}
