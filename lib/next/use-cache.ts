import { buffer as bufferOf } from 'node:stream/consumers';
import { resolveOptions, type CacheOptions, type ResolvedOptions } from '../config';
import type { EntryDraft, EntryRecord } from '../service/cache-service';
import { runtimeFor } from '../service/registry';
import type { Runtime } from '../service/runtime';
import { USE_CACHE_NAMESPACE } from '../store/layout';

/**
 * A `'use cache'` handler (Next 16's `cacheHandlers`) on the same volume and
 * the same tag state as the page cache:
 *
 *   cacheHandlers: { default: require.resolve('next-volume-cache/use-cache') }
 *
 * Entries go through the same sharded, atomic, checksummed store, in their
 * own namespace. Invalidations go to the same tag log: a `revalidateTag`
 * made through either API invalidates entries of both kinds on every pod.
 */
export interface UseCacheEntry {
  value: ReadableStream<Uint8Array>;
  tags: string[];
  stale: number;
  /** ms since the epoch, on the reader's clock. */
  timestamp: number;
  expire: number;
  revalidate: number;
}

export interface UseCacheHandler {
  get(cacheKey: string, softTags: string[]): Promise<UseCacheEntry | undefined>;
  set(cacheKey: string, pendingEntry: Promise<UseCacheEntry>): Promise<void>;
  refreshTags(): Promise<void>;
  getExpiration(tags: string[]): Promise<number>;
  updateTags(tags: string[], durations?: { expire?: number }): Promise<void>;
}

const KIND = 'USE_CACHE';

interface StoredUseCache {
  kind: typeof KIND;
  body: Buffer;
  stale: number;
  expire: number;
  revalidate: number;
  /**
   * How old the entry already was when it was stored. Entries are now stamped with their own
   * time (the service's `ageMs`), so new ones store 0; entries written by 0.1 stored the age here.
   */
  ageAtWrite: number;
}

/** Builds the handler object for a wrapper module; options as for the page handler. */
export function createUseCacheHandler(options: CacheOptions = {}): UseCacheHandler {
  const resolved = resolveOptions(options);
  // The runtime is looked up on each call (a Map lookup, no I/O), so a module loaded at start-up does nothing yet.
  return bindUseCacheHandler(() => runtimeFor(resolved));
}

/** The default export's handler: options from the environment, resolved at its first call (no work at import). */
export function createEnvUseCacheHandler(): UseCacheHandler {
  let resolved: ResolvedOptions | undefined;
  return bindUseCacheHandler(() => runtimeFor((resolved ??= resolveOptions())));
}

/** The handler over a runtime source; tests pass their own runtime. */
export function bindUseCacheHandler(runtimeOf: () => Runtime): UseCacheHandler {
  return {
    get: (key, softTags) => getEntry(runtimeOf(), key, softTags),
    set: (key, pending) => setEntry(runtimeOf(), key, pending),
    refreshTags: () => runtimeOf().service.refreshTags(),
    // Infinity tells Next that `get` itself checks the implicit (soft) tags it is given. It does, with
    // the shared tag view, and it can also express "stale" (revalidate -1), which an expiration time
    // cannot. It also costs nothing: no second lookup.
    getExpiration: () => Promise.resolve(Infinity),
    updateTags: (tags, durations) => runtimeOf().service.invalidate(tags, durations),
  };
}

/** Per process: sets still running, so that a get for the same key waits for them. */
const PENDING = Symbol.for('next-volume-cache.use-cache.pending.v1');
function pendingSets(): Map<string, Promise<void>> {
  const scope = globalThis as unknown as Record<symbol, Map<string, Promise<void>> | undefined>;
  return (scope[PENDING] ??= new Map<string, Promise<void>>());
}

function isUseCache(record: EntryRecord): boolean {
  const stored = record.value as Partial<StoredUseCache> | null;
  return record.kind === KIND && Buffer.isBuffer(stored?.body) && typeof stored?.expire === 'number';
}

async function getEntry(rt: Runtime, key: string, softTags: string[] | undefined): Promise<UseCacheEntry | undefined> {
  await pendingSets().get(key);
  const outcome = await rt.service.read(key, USE_CACHE_NAMESPACE, {
    extraTags: softTags,
    accept: isUseCache,
    freshForMs: (record) => (record.value as StoredUseCache).revalidate * 1000,
  });
  if (outcome.status === 'miss') return undefined;
  const stored = outcome.record.value as StoredUseCache;
  const ageMs = outcome.ageMs + (stored.ageAtWrite || 0);
  return {
    value: streamOf(stored.body),
    tags: outcome.record.tags,
    stale: stored.stale,
    timestamp: Date.now() - ageMs,
    expire: stored.expire,
    // -1: Next serves it and regenerates in the background.
    revalidate: outcome.verdict === 'stale' ? -1 : stored.revalidate,
  };
}

/** Never rejects into Next. A stream that errors mid-way is not stored; `expire: 0` entries are not stored. */
async function setEntry(rt: Runtime, key: string, pendingEntry: Promise<UseCacheEntry>): Promise<void> {
  let done: () => void = () => {};
  const pending = pendingSets();
  const marker = new Promise<void>((resolve) => (done = resolve));
  pending.set(key, marker);
  try {
    const entry = await pendingEntry;
    if (entry.expire === 0) return;
    const body = await bufferOf(entry.value);
    const value: StoredUseCache = { kind: KIND, body, stale: entry.stale, expire: entry.expire, revalidate: entry.revalidate, ageAtWrite: 0 };
    const draft: EntryDraft = {
      key,
      kind: KIND,
      // The entry's own time: an invalidation made while it was being computed applies to it.
      ageMs: Math.max(0, Date.now() - entry.timestamp),
      // The service and gc judge `expire` from this.
      cacheControl: { revalidate: entry.revalidate, expire: entry.expire },
      tags: entry.tags.filter((t) => typeof t === 'string'),
      value,
    };
    await rt.service.write(draft, USE_CACHE_NAMESPACE);
  } catch (error) {
    // The entry's own promise or stream failed: nothing to store.
    rt.service.failedSet("computing a 'use cache' entry", error);
  } finally {
    if (pending.get(key) === marker) pending.delete(key);
    done();
  }
}

function streamOf(bytes: Buffer): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      controller.close();
    },
  });
}
