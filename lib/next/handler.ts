import { resolveOptions, type CacheOptions } from '../config';
import type { EntryRecord } from '../store/codec';
import type { ImageValue } from '../store/image-store';
import { runtimeFor, type Runtime } from '../runtime';
import { GateError } from '../util/gate';
import { countMiss } from '../util/metrics';
import { present, tagsOf } from './freshness';
import type {
  CacheHandlerValue,
  CachedValue,
  GetContext,
  NextCacheHandler,
  NextCacheHandlerClass,
  NextHandlerOptions,
  SetContext,
  TagDurations,
} from './types';

/**
 * Returns the class to export from a wrapper module used as Next's
 * `cacheHandler`. Options are validated now (a bad value throws here, at
 * start-up); the volume is first touched by the first get/set.
 */
export function createCacheHandler(options: CacheOptions = {}): NextCacheHandlerClass {
  const resolved = resolveOptions(options);
  return bindHandler((serverDistDir) => runtimeFor(resolved, serverDistDir));
}

/** The handler class over a runtime source; tests pass a runtime with a fault-injecting filesystem. */
export function bindHandler(runtimeOf: (serverDistDir: string | undefined) => Runtime): NextCacheHandlerClass {
  return class NextVolumeCacheHandler implements NextCacheHandler {
    private readonly runtime: Runtime;

    // Next constructs ~3 of these per request: no I/O here, only a registry lookup.
    constructor(nextOptions?: NextHandlerOptions) {
      this.runtime = runtimeOf(typeof nextOptions?.serverDistDir === 'string' ? nextOptions.serverDistDir : undefined);
    }

    get(key: string, ctx?: GetContext): Promise<CacheHandlerValue | null> {
      return getEntry(this.runtime, key, ctx);
    }

    set(key: string, data: CachedValue | null, ctx?: SetContext): Promise<void> {
      return setEntry(this.runtime, key, data, ctx);
    }

    revalidateTag(tags: string | string[], durations?: TagDurations): Promise<void> {
      return revalidateTags(this.runtime, tags, durations);
    }

    resetRequestCache(): void {}
  };
}

/** Never throws: every failure is a miss, logged once per cause. */
async function getEntry(rt: Runtime, key: string, ctx: GetContext | undefined): Promise<CacheHandlerValue | null> {
  rt.metrics.gets++;
  const miss = (reason: string): null => {
    countMiss(rt.metrics, reason);
    return null;
  };
  if (typeof key !== 'string') return miss('bad-key');
  let hash: string | undefined;
  try {
    if (!(await rt.ready())) return miss('unavailable');
    if (ctx?.kind === 'IMAGE') return await getImage(rt, key, miss);
    const started = performance.now();
    const tagView = rt.tagViewReady(rt.settings.timeoutMs);
    const outcome = await rt.gate.run(() => rt.store.read(key, rt.namespaceFor(ctx?.kind === 'FETCH' ? 'fetch' : 'page')));
    hash = outcome.hash;
    if (!(await tagView)) {
      rt.log.onceWarn('tags-loading', `the tag view is still loading (${Math.round(performance.now() - started)} ms); answering misses until it is`);
      return miss('tags-loading');
    }
    if (!outcome.found) {
      if (outcome.reason !== 'absent') {
        rt.log.onceWarn(`entry-${outcome.reason}`, `treating entry with key hash ${outcome.hash} as a miss: ${outcome.reason}`);
      }
      return miss(outcome.reason);
    }
    const record = outcome.record;
    const tags = [...record.tags, ...(ctx?.tags ?? []), ...(ctx?.softTags ?? [])];
    const verdict = rt.tags.verdict(tags, record.writtenAt);
    if (verdict === 'expired') return miss('invalidated');
    const result = present(record, verdict, Math.max(0, rt.clock.now() - record.writtenAt), ctx);
    if (!result) return miss('invalidated');
    if (verdict === 'stale') rt.metrics.staleServed++;
    else rt.metrics.hits++;
    return result;
  } catch (error) {
    rt.reportIoError('get', 'reading an entry', error, hash);
    return miss(error instanceof GateError ? error.reason : 'io-error');
  }
}

/** Images carry no tags: no tag view needed, two opens (sidecar, raw file). */
async function getImage(rt: Runtime, key: string, miss: (reason: string) => null): Promise<CacheHandlerValue | null> {
  const outcome = await rt.gate.run(() => rt.images.read(key, rt.namespaceFor('image')));
  if (!outcome.found) {
    if (outcome.reason !== 'absent') {
      rt.log.onceWarn(`image-${outcome.reason}`, `treating image with key hash ${outcome.hash} as a miss: ${outcome.reason}`);
    }
    return miss(outcome.reason);
  }
  rt.metrics.hits++;
  rt.noteImageUse(outcome.rawPath);
  const s = outcome.sidecar;
  const value: CachedValue = { kind: 'IMAGE', buffer: outcome.buffer, etag: s.etag, upstreamEtag: s.upstreamEtag, extension: s.extension, revalidate: s.revalidate };
  const result: CacheHandlerValue = { lastModified: Date.now() - Math.max(0, rt.clock.now() - s.lastModified), value };
  if (s.cacheControl) result.cacheControl = s.cacheControl;
  return result;
}

/** Never rejects into Next: a failed write is logged and counted, and leaves no temp file. */
async function setEntry(rt: Runtime, key: string, data: CachedValue | null, ctx: SetContext | undefined): Promise<void> {
  rt.metrics.sets++;
  let hash: string | undefined;
  try {
    if (typeof key !== 'string' || !(await rt.ready())) {
      rt.metrics.setFailures++;
      return;
    }
    if (data?.kind === 'IMAGE') {
      const image = data as ImageValue;
      await rt.gate.run(() => rt.images.write(key, image, ctx?.cacheControl, rt.clock.now(), rt.namespaceFor('image')));
      return;
    }
    const record = toRecord(key, data ?? null, ctx, rt.clock.now());
    const namespace = rt.namespaceFor(data?.kind === 'FETCH' ? 'fetch' : 'page');
    hash = await rt.gate.run(() => rt.store.write(record, namespace));
    rt.recordMembership({ hash, ns: namespace, tags: record.tags });
  } catch (error) {
    rt.metrics.setFailures++;
    rt.reportIoError('set', 'writing an entry', error, hash);
  }
}

/** Next passes an array; older callers a single tag. See Runtime.invalidate for the guarantees. */
function revalidateTags(rt: Runtime, tags: string | string[], durations: TagDurations | undefined): Promise<void> {
  return rt.invalidate(Array.isArray(tags) ? tags : [tags], durations);
}

function toRecord(key: string, value: CachedValue | null, ctx: SetContext | undefined, writtenAt: number): EntryRecord {
  return {
    key,
    kind: value === null ? 'NULL' : String(value.kind),
    writtenAt,
    cacheControl: ctx?.cacheControl,
    tags: tagsOf(value, ctx),
    value,
  };
}
