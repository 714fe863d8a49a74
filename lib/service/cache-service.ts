import type { EntryRecord } from '../store/codec';
import type { VolumeClock } from '../store/clock';
import { sameIdentity, type EntryStore, type FileIdentity } from '../store/entry-store';
import { hashKey } from '../store/hash';
import type { ImageSidecar, ImageStore, ImageValue } from '../store/image-store';
import { USE_CACHE_NAMESPACE } from '../store/layout';
import type { CacheControl } from '../store/codec';
import type { TagLog, Durations } from '../tags/tag-log';
import { detached } from '../util/detached';
import { describe } from '../util/errors';
import { GateError, type FsGate } from '../util/gate';
import type { CacheLog } from '../util/log';
import { countMiss, type Metrics } from '../util/metrics';
import { servedRecord, type MemoryTier, type MemoryCopy } from './memory-tier';
import type { Regeneration } from './regeneration';
import type { TagView } from './tag-view';
import type { ServiceTelemetry, SetResult } from './telemetry';

/**
 * The store service: the one narrow surface the Next.js adapters (and
 * seeding) use. It owns what every call needs, so adapters only translate
 * shapes: the gate (every volume call bounded in time and concurrency), the
 * tag verdict, the volume clock, the counters and the once-per-cause log.
 * No method throws into a request: reads answer a miss with its cause,
 * writes log and count their failures. Only `invalidate` rejects, because
 * its caller must not believe an invalidation was recorded when it was not.
 */
export interface ServiceSettings {
  timeoutMs: number;
  /** A miss for a key another process is rendering waits this long for it (0: never). */
  coalesceMissesMs: number;
  /** A write time later than the volume's now plus this marks an entry as damaged (it would be immune to invalidation). */
  maxClockSkewMs: number;
}

export interface ServiceParts {
  settings: ServiceSettings;
  clock: VolumeClock;
  log: CacheLog;
  metrics: Metrics;
  gate: FsGate;
  entries: EntryStore;
  images: ImageStore;
  tags: TagLog;
  tagView: TagView;
  memory: MemoryTier;
  regeneration: Regeneration;
  /** OpenTelemetry spans and metrics (a no-op without @opentelemetry/api). */
  telemetry: ServiceTelemetry;
  /** Whether the volume is open (opening it if due); never throws. */
  ready(): Promise<boolean>;
  /** Whether the volume is open now (no waiting, no opening). */
  isReady(): boolean;
  /** Told when an image was served, to record its use (throttled there). */
  noteImageUse(rawPath: string): void;
}

export interface ReadOptions {
  /** Tags to judge besides the entry's own (a fetch's tags and the page's implicit soft tags). */
  extraTags?: readonly string[] | undefined;
  /** Rejects a decoded record of the wrong shape for the caller (counted as corrupt). */
  accept?: (record: EntryRecord) => boolean;
  /** Whether a stale record can be served stale at all (else a stale one is a miss, counted as invalidated). */
  servableStale?: (record: EntryRecord) => boolean;
  /**
   * How long after it was written the record is fresh by time (its revalidate window, ms; Infinity
   * for never). Only a record fresh by time is served from memory: a stale one is read from the
   * volume again, where another pod may already have put a fresh version. Without it, nothing of
   * this read is kept in memory.
   */
  freshForMs?: (record: EntryRecord) => number;
  /** Next's kind of what is asked for (APP_PAGE, FETCH, ...): a label of the get's metrics, nothing else. */
  kind?: string | undefined;
}

export type { EntryRecord, CacheControl, ImageValue };

/** How a served entry stands: fresh, or stale (served once while it is regenerated). */
export type HitVerdict = 'fresh' | 'stale';

export type EntryOutcome = { status: 'hit'; record: EntryRecord; verdict: HitVerdict; ageMs: number; /** Served from this process's memory tier. */ fromMemory?: boolean } | { status: 'miss'; reason: string };

export type EntryHit = Extract<EntryOutcome, { status: 'hit' }>;

export type ImageOutcome = { status: 'hit'; sidecar: ImageSidecar; buffer: Buffer; ageMs: number } | { status: 'miss'; reason: string };

/** A record to write: the service stamps it on the volume clock, `ageMs` before now (a value computed earlier). */
export type EntryDraft = Omit<EntryRecord, 'writtenAt'> & { ageMs?: number };

/** How often a coalescing miss looks for the render it waits on. */
const COALESCE_POLL_MS = 100;
/** How much younger than its window a fresh hit is said to be at most (see withAgreedAge). */
const FRESH_MARGIN_MS = 1000;

export class CacheService {
  /** Identity checks in flight, by namespace and key: concurrent hits on one key share one. */
  private readonly confirming = new Map<string, Promise<boolean>>();

  constructor(private readonly parts: ServiceParts) {}

  get metrics(): Metrics {
    return this.parts.metrics;
  }

  /** The gate's slots: in use, held by calls that missed their deadline (a hung mount), and in all. */
  gateSlots(): { active: number; stuck: number; limit: number } {
    const { gate } = this.parts;
    return { active: gate.activeCalls, stuck: gate.stuckCalls, limit: gate.limit };
  }

  /** How the tag view judges an entry with these tags written at `writtenAt` (volume clock): what `read` would do. */
  tagVerdict(tags: Iterable<string>, writtenAt: number): 'fresh' | 'stale' | 'expired' {
    return this.parts.tags.verdict(tags, writtenAt);
  }

  /** Tags this process's view holds marks for. */
  tagViewSize(): number {
    return this.parts.tags.state.size;
  }

  /** The volume clock's now (ms): what entries are stamped with. */
  now(): number {
    return this.parts.clock.now();
  }

  /**
   * Reads an entry and judges it: absent, damaged, past its expire,
   * invalidated by a tag (its own or `extraTags`), or a hit that is fresh or
   * stale. A copy in memory is served when it is still the volume's version
   * and fresh (see memory-tier.ts); otherwise the volume is read, and a fresh
   * hit is kept in memory. Never throws.
   */
  read(key: string, namespace: string, options: ReadOptions = {}): Promise<EntryOutcome> {
    return this.parts.telemetry.get({ namespace, kind: options.kind ?? kindOfNamespace(namespace) }, key, () => this.readEntry(key, namespace, options));
  }

  private async readEntry(key: string, namespace: string, options: ReadOptions): Promise<EntryOutcome> {
    const { metrics, tagView, log } = this.parts;
    metrics.gets++;
    if (typeof key !== 'string') return this.miss('bad-key');
    let hash: string | undefined;
    try {
      if (!(await this.parts.ready())) return this.miss('unavailable');
      const started = performance.now();
      const viewReady = tagView.ready();
      const copy = this.parts.memory.get(namespace, key);
      if (copy) {
        if (!(await viewReady)) return this.notJudgeable(started);
        const served = await this.fromMemory(copy, namespace, options);
        if (served) return served;
      }
      const outcome = await this.parts.gate.run((hold) => this.parts.entries.read(key, namespace, hold));
      hash = outcome.hash;
      if (!(await viewReady)) return this.notJudgeable(started);
      if (!outcome.found) {
        if (outcome.reason !== 'absent' && !outcome.remembered) log.onceWarn(`entry-${outcome.reason}`, `treating entry with key hash ${outcome.hash} as a miss: ${outcome.reason}`, { keyHash: outcome.hash });
        return this.count((await this.coalesce(key, namespace, outcome.hash, options)) ?? { status: 'miss', reason: outcome.reason });
      }
      const judged = this.judge(outcome.record, options, outcome.hash);
      if (judged.status === 'miss') return this.count((await this.coalesce(key, namespace, outcome.hash, options)) ?? judged);
      if (judged.verdict === 'fresh' && !isStaleByTime(judged, options)) {
        if (options.freshForMs) this.parts.memory.put(namespace, outcome.record, outcome.identity);
        return this.count(withAgreedAge(judged, options));
      }
      return this.count(await this.staleOrDeferred(judged, key, namespace, outcome));
    } catch (error) {
      this.reportIoError('get', 'reading an entry', error, hash);
      return this.miss(error instanceof GateError ? error.reason : 'io-error');
    }
  }

  /**
   * read()'s answer when it needs no I/O and no wait: a fresh copy from
   * memory while the volume is open, the tag view current and the copy within
   * its trust window, with no telemetry observing gets. Judged and counted as
   * read() judges and counts a memory hit. Undefined in every other case (and
   * should anything here throw): read() then decides, by the same rules.
   * Why: under Next's AsyncLocalStorage every promise runs async hooks;
   * answered this way, a hot get of a 4 KB fetch in such a context takes
   * about 4.7 µs instead of 6.7.
   */
  readFromMemoryNow(key: string, namespace: string, options: ReadOptions = {}): EntryHit | undefined {
    const { memory, tagView, telemetry } = this.parts;
    try {
      // A key that is not a string is read()'s bad-key miss (the tier's ids are built by string concatenation).
      if (typeof key !== 'string' || !this.parts.isReady() || !tagView.isCurrent() || telemetry.observesGets()) return undefined;
      const copy = memory.get(namespace, key);
      if (!copy || performance.now() > copy.trustedUntil) return undefined;
      const judged = this.freshFromMemory(copy, options);
      if (!judged) return undefined;
      const served = this.servedFromMemory(copy, judged, options);
      this.parts.metrics.gets++;
      return served;
    } catch {
      return undefined;
    }
  }

  /**
   * A copy from memory, if it may be served: judged like a read from the
   * volume, and served only when fresh (by tag and by time) and still the
   * volume's version (confirmed by identity once its trust window is over).
   * Otherwise it is dropped and undefined tells the caller to read the volume.
   */
  private async fromMemory(copy: MemoryCopy, namespace: string, options: ReadOptions): Promise<EntryOutcome | undefined> {
    let judged = this.freshFromMemory(copy, options);
    if (judged && performance.now() > copy.trustedUntil) {
      const confirmed = await this.confirm(copy, namespace);
      if (confirmed) this.parts.memory.confirmed(copy);
      // Judged again: the check took time (a queue, a slow volume), and the copy may have gone stale meanwhile.
      judged = confirmed ? this.freshFromMemory(copy, options) : undefined;
    }
    if (!judged) {
      this.parts.memory.drop(namespace, copy.record.key);
      return undefined;
    }
    return this.servedFromMemory(copy, judged, options);
  }

  /** The copy judged as a read from the volume would be, if that makes it a fresh hit (by tag and by time). */
  private freshFromMemory(copy: MemoryCopy, options: ReadOptions): EntryHit | undefined {
    const judged = this.judge(copy.record, options, '');
    return judged.status === 'hit' && judged.verdict === 'fresh' && isFreshByTime(judged, options) ? judged : undefined;
  }

  /** The hit a copy serves, counted once it is made (a failure to make it counts nothing: read() then decides). */
  private servedFromMemory(copy: MemoryCopy, judged: EntryHit, options: ReadOptions): EntryHit {
    const served: EntryHit = { status: 'hit', record: servedRecord(copy), verdict: judged.verdict, ageMs: agreedAge(judged, options), fromMemory: true };
    this.parts.metrics.memoryHits++;
    this.count(judged);
    return served;
  }

  /**
   * A stale hit (by tag, or by time): answered stale only by the process
   * that takes the key's regeneration lease (Next then regenerates it);
   * answered fresh by the others while the lease holds, so that one pod
   * renders per staleness.
   */
  private async staleOrDeferred(judged: EntryHit, key: string, namespace: string, read: { hash: string; identity: FileIdentity }): Promise<EntryOutcome> {
    const { regeneration, metrics } = this.parts;
    if (!regeneration.enabled) return judged;
    if (await regeneration.claim(read.hash, namespace, judged.record.writtenAt)) {
      if (await this.stillCurrent(key, namespace, read.identity)) {
        metrics.regenerationsClaimed++;
        return judged;
      }
      // Replaced between the read and the claim (its previous holder wrote it and gave the lease
      // back meanwhile): nothing to regenerate, the new version is read next time.
      await regeneration.release(read.hash, namespace);
    }
    metrics.regenerationsDeferred++;
    return { ...judged, verdict: 'fresh', ageMs: 0 };
  }

  /** Whether the key's file is still the one read (one open, fstat, close; once per lease won). When it cannot tell: yes. */
  private async stillCurrent(key: string, namespace: string, identity: FileIdentity): Promise<boolean> {
    const now = await this.parts.gate.run((hold) => this.parts.entries.identify(key, namespace, hold)).catch(() => undefined);
    return now === undefined || sameIdentity(now, identity);
  }

  /**
   * Opt-in miss coalescing: a miss for a key another process is rendering
   * (it holds the lease) waits up to coalesceMissesMs for that render to land
   * and answers it; otherwise (or when this process takes the lease) it is a
   * miss and Next renders here. Costs a miss with no contender one exclusive
   * create.
   */
  private async coalesce(key: string, namespace: string, hash: string, options: ReadOptions): Promise<EntryOutcome | undefined> {
    const { regeneration, settings, metrics, gate, entries } = this.parts;
    if (settings.coalesceMissesMs <= 0 || !regeneration.enabled) return undefined;
    if (await regeneration.claim(hash, namespace)) return undefined;
    metrics.coalescedWaits++;
    const deadline = performance.now() + settings.coalesceMissesMs;
    while (performance.now() < deadline && regeneration.heldByOther(hash, namespace)) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(COALESCE_POLL_MS, Math.max(0, deadline - performance.now()))));
      const outcome = await gate.run((hold) => entries.read(key, namespace, hold)).catch(() => undefined);
      if (!outcome?.found) continue;
      const judged = this.judge(outcome.record, options, hash);
      if (judged.status === 'hit' && judged.verdict === 'fresh') {
        metrics.coalescedHits++;
        return judged;
      }
    }
    return undefined;
  }

  /** Whether the volume still holds the copy's version (one open, fstat, close); one check at a time per key. */
  private confirm(copy: MemoryCopy, namespace: string): Promise<boolean> {
    const id = `${namespace}\u0000${copy.record.key}`;
    let pending = this.confirming.get(id);
    if (!pending) {
      this.parts.metrics.memoryChecks++;
      pending = this.parts.gate
        .run((hold) => this.parts.entries.identify(copy.record.key, namespace, hold))
        .then((identity) => identity !== undefined && sameIdentity(identity, copy.identity))
        .catch(() => false)
        .finally(() => this.confirming.delete(id));
      this.confirming.set(id, pending);
    }
    return pending;
  }

  private notJudgeable(started: number): EntryOutcome {
    this.parts.log.onceWarn('tags-loading', `the tag view is still loading (${Math.round(performance.now() - started)} ms); answering misses until it is`);
    return this.miss(this.parts.tagView.unusable ? 'tags-unavailable' : 'tags-loading');
  }

  /** Writes an entry, stamped on the volume clock, and records its tags in the tag index. Never throws. */
  write(draft: EntryDraft, namespace: string): Promise<void> {
    return this.parts.telemetry.set({ namespace, kind: draft.kind }, draft.key, () => this.writeEntry(draft, namespace));
  }

  private async writeEntry(draft: EntryDraft, namespace: string): Promise<SetResult> {
    const { metrics, gate, entries } = this.parts;
    metrics.sets++;
    let hash: string | undefined;
    try {
      if (!(await this.parts.ready())) {
        metrics.setFailures++;
        return { failed: 'unavailable' };
      }
      const record = this.stamp(draft);
      // Dropped before and after: a get racing the write may have kept the version being replaced.
      this.parts.memory.drop(namespace, record.key);
      hash = await gate.run(() => entries.write(record, namespace));
      this.parts.memory.drop(namespace, record.key);
      this.recordMembership(hash, namespace, record.tags);
      await this.parts.regeneration.release(hash, namespace);
    } catch (error) {
      metrics.setFailures++;
      this.reportIoError('set', 'writing an entry', error, hash);
      return { failed: error };
    }
  }

  /** Writes an entry only if none exists for its key (seeding): true if written. Throws on I/O errors (seeding reports them). */
  async writeIfAbsent(draft: EntryDraft, namespace: string): Promise<{ written: boolean; hash: string }> {
    const record = this.stamp(draft);
    const written = await this.parts.gate.run(() => this.parts.entries.writeIfAbsent(record, namespace));
    const hash = hashKey(record.key);
    if (written) this.recordMembership(hash, namespace, record.tags);
    return { written, hash };
  }

  /** Images carry no tags: no tag view needed, two opens (sidecar, raw file). Never throws. */
  readImage(key: string, namespace: string): Promise<ImageOutcome> {
    return this.parts.telemetry.get({ namespace, kind: 'IMAGE' }, key, () => this.readImageEntry(key, namespace));
  }

  private async readImageEntry(key: string, namespace: string): Promise<ImageOutcome> {
    const { metrics, gate, images, log, clock } = this.parts;
    metrics.gets++;
    let hash: string | undefined;
    try {
      if (!(await this.parts.ready())) return this.miss('unavailable');
      const outcome = await gate.run(() => images.read(key, namespace));
      hash = outcome.hash;
      if (!outcome.found) {
        if (outcome.reason !== 'absent') log.onceWarn(`image-${outcome.reason}`, `treating image with key hash ${outcome.hash} as a miss: ${outcome.reason}`, { keyHash: outcome.hash });
        return this.miss(outcome.reason);
      }
      metrics.hits++;
      this.parts.noteImageUse(outcome.rawPath);
      return { status: 'hit', sidecar: outcome.sidecar, buffer: outcome.buffer, ageMs: Math.max(0, clock.now() - outcome.sidecar.lastModified) };
    } catch (error) {
      this.reportIoError('get', 'reading an image', error, hash);
      return this.miss(error instanceof GateError ? error.reason : 'io-error');
    }
  }

  /** Never throws: a failed write is logged and counted, and leaves no temp file. */
  writeImage(key: string, value: ImageValue, cacheControl: CacheControl | undefined, namespace: string): Promise<void> {
    return this.parts.telemetry.set({ namespace, kind: 'IMAGE' }, key, () => this.writeImageEntry(key, value, cacheControl, namespace));
  }

  private async writeImageEntry(key: string, value: ImageValue, cacheControl: CacheControl | undefined, namespace: string): Promise<SetResult> {
    const { metrics, gate, images, clock } = this.parts;
    metrics.sets++;
    try {
      if (!(await this.parts.ready())) {
        metrics.setFailures++;
        return { failed: 'unavailable' };
      }
      await gate.run(() => images.write(key, value, cacheControl, clock.now(), namespace));
    } catch (error) {
      metrics.setFailures++;
      this.reportIoError('set', 'writing an image', error);
      return { failed: error };
    }
  }

  /**
   * Records an invalidation for every process sharing the volume. Rejects
   * when it could not be recorded: the caller must not believe other
   * replicas stopped serving the old content. This process's own view is
   * updated either way.
   */
  invalidate(tags: readonly unknown[], durations?: Durations): Promise<void> {
    return this.parts.telemetry.revalidateTag(tags.length, () => this.recordInvalidation(tags, durations));
  }

  private async recordInvalidation(tags: readonly unknown[], durations?: Durations): Promise<void> {
    const list = tags.filter((t): t is string => typeof t === 'string' && t.length > 0);
    if (list.length === 0) return;
    if (!(await this.parts.ready())) {
      this.parts.tags.applyLocally(list, durations);
      throw new Error(`next-volume-cache: cannot record the invalidation of ${list.join(', ')}: the cache root is not usable`);
    }
    await this.parts.gate.run(() => this.parts.tags.invalidate(list, durations));
  }

  /** Brings the tag view up to date if its interval has passed ('use cache' refreshTags). Never throws. */
  refreshTags(): Promise<void> {
    return this.parts.telemetry.refreshTags(async () => {
      if (await this.parts.ready()) await this.parts.tagView.refreshIfDue();
    });
  }

  /** Counts and logs a set that failed before it reached the store (the value itself could not be produced). */
  failedSet(action: string, error: unknown): void {
    this.parts.metrics.sets++;
    this.parts.metrics.setFailures++;
    this.reportIoError('set', action, error);
  }

  /** Logs an I/O failure once per cause and counts timeouts. */
  reportIoError(cause: string, action: string, error: unknown, hash?: string): void {
    if (error instanceof GateError) {
      this.parts.metrics.timeouts++;
      this.parts.telemetry.gateFailed(cause, error.reason);
    }
    const where = hash ? ` (key hash ${hash})` : '';
    const kind = error instanceof GateError ? error.reason : (describe(error).split(':')[0] ?? '');
    this.parts.log.onceWarn(`${cause}:${kind}`, `${action} failed${where}: ${describe(error)}`, { event: `${cause}-failed`, keyHash: hash });
  }

  /** How a record stands now (nothing counted: see count). */
  private judge(record: EntryRecord, options: ReadOptions, hash: string): EntryOutcome {
    const { clock, tags, log, settings } = this.parts;
    if (options.accept && !options.accept(record)) return { status: 'miss', reason: 'corrupt' };
    const now = clock.now();
    if (record.writtenAt > now + settings.maxClockSkewMs) {
      log.onceWarn('entry-future-dated', `treating entry with key hash ${hash} as a miss: written ${Math.round((record.writtenAt - now) / 1000)} s in the future (a writer's clock is off, or the file is forged)`, {
        keyHash: hash || undefined,
      });
      return { status: 'miss', reason: 'future-dated' };
    }
    const ageMs = Math.max(0, now - record.writtenAt);
    const expire = record.cacheControl?.expire;
    if (typeof expire === 'number' && ageMs > expire * 1000) return { status: 'miss', reason: 'expired' };
    const verdict = tags.verdict(options.extraTags?.length ? [...record.tags, ...options.extraTags] : record.tags, record.writtenAt);
    if (verdict === 'expired' || (verdict === 'stale' && options.servableStale?.(record) === false)) return { status: 'miss', reason: 'invalidated' };
    return { status: 'hit', record, verdict, ageMs };
  }

  private count(outcome: EntryOutcome): EntryOutcome {
    if (outcome.status === 'miss') return this.miss(outcome.reason);
    if (outcome.verdict === 'stale') this.parts.metrics.staleServed++;
    else this.parts.metrics.hits++;
    return outcome;
  }

  private stamp(draft: EntryDraft): EntryRecord {
    const { ageMs = 0, ...rest } = draft;
    return { ...rest, writtenAt: this.parts.clock.now() - Math.max(0, ageMs) };
  }

  /**
   * Appends to the tag index in the background, through the gate like every
   * other filesystem call (a hung mount must not hold a thread outside it);
   * dropped when the gate is saturated (the index is advisory). Detached: the
   * append outlives the set that asked for it, and would otherwise keep that
   * request's async context alive until it is written.
   */
  private recordMembership(hash: string, ns: string, tags: string[]): void {
    if (tags.length === 0) return;
    detached(() => {
      this.parts.gate.run(() => this.parts.tags.recordMembership({ hash, ns, tags })).catch((error: unknown) => this.reportIoError('membership', 'appending to the tag index', error));
    });
  }

  private miss(reason: string): { status: 'miss'; reason: string } {
    countMiss(this.parts.metrics, reason);
    return { status: 'miss', reason };
  }
}

/**
 * A hit judged fresh by time, with the age the caller hands to Next. Next judges staleness again
 * from that age, on its own clock, a moment later (its `now` is not the service's, and a read may
 * have waited in between): a hit judged fresh just before its window ends would be found stale
 * there and regenerated by every pod that served it, with no lease taken. So a fresh hit is said
 * to be at most its window minus FRESH_MARGIN_MS old: whether an entry is stale by time is
 * decided here, through the lease, and only here.
 */
function withAgreedAge<T extends { record: EntryRecord; ageMs: number }>(outcome: T, options: ReadOptions): T {
  const ageMs = agreedAge(outcome, options);
  return ageMs === outcome.ageMs ? outcome : { ...outcome, ageMs };
}

function agreedAge(outcome: { record: EntryRecord; ageMs: number }, options: ReadOptions): number {
  const windowMs = options.freshForMs?.(outcome.record) ?? Infinity;
  return Number.isFinite(windowMs) ? Math.min(outcome.ageMs, Math.max(0, windowMs - FRESH_MARGIN_MS)) : outcome.ageMs;
}

/** 'use cache' entries have one kind; the page cache's come with Next's (see ReadOptions.kind). */
function kindOfNamespace(namespace: string): string | undefined {
  return namespace === USE_CACHE_NAMESPACE ? 'USE_CACHE' : undefined;
}

/** Fresh by time, as far as the caller can tell (without freshForMs, never: nothing goes to memory). */
function isFreshByTime(outcome: { record: EntryRecord; ageMs: number }, options: ReadOptions): boolean {
  return options.freshForMs !== undefined && outcome.ageMs < options.freshForMs(outcome.record);
}

/** Past its revalidate window (known only with freshForMs): Next would regenerate it. */
function isStaleByTime(outcome: { record: EntryRecord; ageMs: number }, options: ReadOptions): boolean {
  return options.freshForMs !== undefined && outcome.ageMs >= options.freshForMs(outcome.record);
}
