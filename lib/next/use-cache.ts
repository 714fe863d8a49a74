import { resolveOptions, type CacheOptions } from '../config';
import type { EntryRecord } from '../store/codec';
import { USE_CACHE_NAMESPACE } from '../store/layout';
import { runtimeFor, type Runtime } from '../runtime';
import { GateError } from '../util/gate';
import { countMiss } from '../util/metrics';

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
  /** How old the entry already was when it was stored (writer's clock): keeps `timestamp` right across clocks. */
  ageAtWrite: number;
}

/** Builds the handler object for a wrapper module; options as for the page handler. */
export function createUseCacheHandler(options: CacheOptions = {}): UseCacheHandler {
  const resolved = resolveOptions(options);
  // The runtime is looked up on each call (a Map lookup, no I/O), so a module loaded at start-up does nothing yet.
  return bindUseCacheHandler(() => runtimeFor(resolved));
}

/** The handler over a runtime source; tests pass their own runtime. */
export function bindUseCacheHandler(runtimeOf: () => Runtime): UseCacheHandler {
  return {
    get: (key, softTags) => getEntry(runtimeOf(), key, softTags),
    set: (key, pending) => setEntry(runtimeOf(), key, pending),
    refreshTags: async () => {
      const rt = runtimeOf();
      if (await rt.ready()) await rt.refreshTagsIfDue();
    },
    // Infinity tells Next that `get` itself checks the implicit (soft) tags it is given. It does, with
    // the shared tag view, and it can also express "stale" (revalidate -1), which an expiration time
    // cannot. It also costs nothing: no second lookup.
    getExpiration: async () => Infinity,
    updateTags: (tags, durations) => runtimeOf().invalidate(tags, durations),
  };
}

/** Per process: sets still running, so that a get for the same key waits for them. */
const PENDING = Symbol.for('next-volume-cache.use-cache.pending.v1');
function pendingSets(): Map<string, Promise<void>> {
  const scope = globalThis as unknown as Record<symbol, Map<string, Promise<void>> | undefined>;
  return (scope[PENDING] ??= new Map());
}

async function getEntry(rt: Runtime, key: string, softTags: string[] | undefined): Promise<UseCacheEntry | undefined> {
  rt.metrics.gets++;
  const miss = (reason: string): undefined => {
    countMiss(rt.metrics, reason);
    return undefined;
  };
  try {
    await pendingSets().get(key);
    if (!(await rt.ready())) return miss('unavailable');
    const tagView = rt.tagViewReady(rt.settings.timeoutMs);
    const outcome = await rt.gate.run(() => rt.store.read(key, USE_CACHE_NAMESPACE));
    if (!(await tagView)) return miss('tags-loading');
    if (!outcome.found) {
      if (outcome.reason !== 'absent') rt.log.onceWarn(`use-cache-${outcome.reason}`, `treating 'use cache' entry ${outcome.hash} as a miss: ${outcome.reason}`);
      return miss(outcome.reason);
    }
    const { record } = outcome;
    const stored = record.value as StoredUseCache;
    if (record.kind !== KIND || !Buffer.isBuffer(stored?.body)) return miss('corrupt');
    const ageMs = Math.max(0, rt.clock.now() - record.writtenAt) + stored.ageAtWrite;
    if (ageMs > stored.expire * 1000) return miss('expired');
    const verdict = rt.tags.verdict([...record.tags, ...(softTags ?? [])], record.writtenAt);
    if (verdict === 'expired') return miss('invalidated');
    if (verdict === 'stale') rt.metrics.staleServed++;
    else rt.metrics.hits++;
    return {
      value: streamOf(stored.body),
      tags: record.tags,
      stale: stored.stale,
      timestamp: Date.now() - ageMs,
      expire: stored.expire,
      // -1: Next serves it and regenerates in the background.
      revalidate: verdict === 'stale' ? -1 : stored.revalidate,
    };
  } catch (error) {
    rt.reportIoError('use-cache-get', "reading a 'use cache' entry", error);
    return miss(error instanceof GateError ? error.reason : 'io-error');
  }
}

/** Never rejects into Next. A stream that errors mid-way is not stored; `expire: 0` entries are not stored. */
async function setEntry(rt: Runtime, key: string, pendingEntry: Promise<UseCacheEntry>): Promise<void> {
  rt.metrics.sets++;
  let done: () => void = () => {};
  const pending = pendingSets();
  const marker = new Promise<void>((resolve) => (done = resolve));
  pending.set(key, marker);
  try {
    const entry = await pendingEntry;
    if (entry.expire === 0) return;
    const body = await bufferOf(entry.value);
    if (!(await rt.ready())) {
      rt.metrics.setFailures++;
      return;
    }
    const value: StoredUseCache = {
      kind: KIND,
      body,
      stale: entry.stale,
      expire: entry.expire,
      revalidate: entry.revalidate,
      ageAtWrite: Math.max(0, Date.now() - entry.timestamp),
    };
    const record: EntryRecord = {
      key,
      kind: KIND,
      writtenAt: rt.clock.now(),
      // gc deletes entries past `expire` from this.
      cacheControl: { revalidate: entry.revalidate, expire: entry.expire },
      tags: entry.tags.filter((t) => typeof t === 'string'),
      value,
    };
    const hash = await rt.gate.run(() => rt.store.write(record, USE_CACHE_NAMESPACE));
    rt.recordMembership({ hash, ns: USE_CACHE_NAMESPACE, tags: record.tags });
  } catch (error) {
    rt.metrics.setFailures++;
    rt.reportIoError('use-cache-set', "writing a 'use cache' entry", error);
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

async function bufferOf(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}
