import type { EntryRecord } from '../store/codec';
import type { VolumeClock } from '../store/clock';
import type { EntryStore } from '../store/entry-store';
import { hashKey } from '../store/hash';
import type { ImageSidecar, ImageStore, ImageValue } from '../store/image-store';
import type { CacheControl } from '../store/codec';
import type { TagLog, Durations } from '../tags/tag-log';
import { describe } from '../util/errors';
import { GateError, type FsGate } from '../util/gate';
import type { CacheLog } from '../util/log';
import { countMiss, type Metrics } from '../util/metrics';
import type { TagView } from './tag-view';

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
  /** Whether the volume is open (opening it if due); never throws. */
  ready(): Promise<boolean>;
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
}

export type { EntryRecord, CacheControl, ImageValue };

/** How a served entry stands: fresh, or stale (served once while it is regenerated). */
export type HitVerdict = 'fresh' | 'stale';

export type EntryOutcome = { status: 'hit'; record: EntryRecord; verdict: HitVerdict; ageMs: number } | { status: 'miss'; reason: string };

export type ImageOutcome = { status: 'hit'; sidecar: ImageSidecar; buffer: Buffer; ageMs: number } | { status: 'miss'; reason: string };

/** A record to write: the service stamps it on the volume clock, `ageMs` before now (a value computed earlier). */
export type EntryDraft = Omit<EntryRecord, 'writtenAt'> & { ageMs?: number };

export class CacheService {
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
   * stale. Never throws.
   */
  async read(key: string, namespace: string, options: ReadOptions = {}): Promise<EntryOutcome> {
    const { metrics, gate, entries, tagView, log } = this.parts;
    metrics.gets++;
    if (typeof key !== 'string') return this.miss('bad-key');
    let hash: string | undefined;
    try {
      if (!(await this.parts.ready())) return this.miss('unavailable');
      const started = performance.now();
      const viewReady = tagView.ready();
      const outcome = await gate.run(() => entries.read(key, namespace));
      hash = outcome.hash;
      if (!(await viewReady)) {
        log.onceWarn('tags-loading', `the tag view is still loading (${Math.round(performance.now() - started)} ms); answering misses until it is`);
        return this.miss(tagView.unusable ? 'tags-unavailable' : 'tags-loading');
      }
      if (!outcome.found) {
        if (outcome.reason !== 'absent' && !outcome.remembered) log.onceWarn(`entry-${outcome.reason}`, `treating entry with key hash ${outcome.hash} as a miss: ${outcome.reason}`);
        return this.miss(outcome.reason);
      }
      return this.judge(outcome.record, options, outcome.hash);
    } catch (error) {
      this.reportIoError('get', 'reading an entry', error, hash);
      return this.miss(error instanceof GateError ? error.reason : 'io-error');
    }
  }

  /** Writes an entry, stamped on the volume clock, and records its tags in the tag index. Never throws. */
  async write(draft: EntryDraft, namespace: string): Promise<void> {
    const { metrics, gate, entries } = this.parts;
    metrics.sets++;
    let hash: string | undefined;
    try {
      if (!(await this.parts.ready())) {
        metrics.setFailures++;
        return;
      }
      const record = this.stamp(draft);
      hash = await gate.run(() => entries.write(record, namespace));
      this.recordMembership(hash, namespace, record.tags);
    } catch (error) {
      metrics.setFailures++;
      this.reportIoError('set', 'writing an entry', error, hash);
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
  async readImage(key: string, namespace: string): Promise<ImageOutcome> {
    const { metrics, gate, images, log, clock } = this.parts;
    metrics.gets++;
    let hash: string | undefined;
    try {
      if (!(await this.parts.ready())) return this.miss('unavailable');
      const outcome = await gate.run(() => images.read(key, namespace));
      hash = outcome.hash;
      if (!outcome.found) {
        if (outcome.reason !== 'absent') log.onceWarn(`image-${outcome.reason}`, `treating image with key hash ${outcome.hash} as a miss: ${outcome.reason}`);
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
  async writeImage(key: string, value: ImageValue, cacheControl: CacheControl | undefined, namespace: string): Promise<void> {
    const { metrics, gate, images, clock } = this.parts;
    metrics.sets++;
    try {
      if (!(await this.parts.ready())) {
        metrics.setFailures++;
        return;
      }
      await gate.run(() => images.write(key, value, cacheControl, clock.now(), namespace));
    } catch (error) {
      metrics.setFailures++;
      this.reportIoError('set', 'writing an image', error);
    }
  }

  /**
   * Records an invalidation for every process sharing the volume. Rejects
   * when it could not be recorded: the caller must not believe other
   * replicas stopped serving the old content. This process's own view is
   * updated either way.
   */
  async invalidate(tags: readonly unknown[], durations?: Durations): Promise<void> {
    const list = tags.filter((t): t is string => typeof t === 'string' && t.length > 0);
    if (list.length === 0) return;
    if (!(await this.parts.ready())) {
      this.parts.tags.applyLocally(list, durations);
      throw new Error(`next-volume-cache: cannot record the invalidation of ${list.join(', ')}: the cache root is not usable`);
    }
    await this.parts.gate.run(() => this.parts.tags.invalidate(list, durations));
  }

  /** Brings the tag view up to date if its interval has passed ('use cache' refreshTags). Never throws. */
  async refreshTags(): Promise<void> {
    if (await this.parts.ready()) await this.parts.tagView.refreshIfDue();
  }

  /** Counts and logs a set that failed before it reached the store (the value itself could not be produced). */
  failedSet(action: string, error: unknown): void {
    this.parts.metrics.sets++;
    this.parts.metrics.setFailures++;
    this.reportIoError('set', action, error);
  }

  /** Logs an I/O failure once per cause and counts timeouts. */
  reportIoError(cause: string, action: string, error: unknown, hash?: string): void {
    if (error instanceof GateError) this.parts.metrics.timeouts++;
    const where = hash ? ` (key hash ${hash})` : '';
    const kind = error instanceof GateError ? error.reason : (describe(error).split(':')[0] ?? '');
    this.parts.log.onceWarn(`${cause}:${kind}`, `${action} failed${where}: ${describe(error)}`);
  }

  private judge(record: EntryRecord, options: ReadOptions, hash: string): EntryOutcome {
    const { clock, tags, metrics, log, settings } = this.parts;
    if (options.accept && !options.accept(record)) return this.miss('corrupt');
    const now = clock.now();
    if (record.writtenAt > now + settings.maxClockSkewMs) {
      log.onceWarn('entry-future-dated', `treating entry with key hash ${hash} as a miss: written ${Math.round((record.writtenAt - now) / 1000)} s in the future (a writer's clock is off, or the file is forged)`);
      return this.miss('future-dated');
    }
    const ageMs = Math.max(0, now - record.writtenAt);
    const expire = record.cacheControl?.expire;
    if (typeof expire === 'number' && ageMs > expire * 1000) return this.miss('expired');
    const verdict = tags.verdict(options.extraTags ? [...record.tags, ...options.extraTags] : record.tags, record.writtenAt);
    if (verdict === 'expired' || (verdict === 'stale' && options.servableStale?.(record) === false)) return this.miss('invalidated');
    if (verdict === 'stale') metrics.staleServed++;
    else metrics.hits++;
    return { status: 'hit', record, verdict, ageMs };
  }

  private stamp(draft: EntryDraft): EntryRecord {
    const { ageMs = 0, ...rest } = draft;
    return { ...rest, writtenAt: this.parts.clock.now() - Math.max(0, ageMs) };
  }

  /**
   * Appends to the tag index in the background, through the gate like every
   * other filesystem call (a hung mount must not hold a thread outside it);
   * dropped when the gate is saturated (the index is advisory).
   */
  private recordMembership(hash: string, ns: string, tags: string[]): void {
    if (tags.length === 0) return;
    this.parts.gate.run(() => this.parts.tags.recordMembership({ hash, ns, tags })).catch((error: unknown) => this.reportIoError('membership', 'appending to the tag index', error));
  }

  private miss(reason: string): { status: 'miss'; reason: string } {
    countMiss(this.parts.metrics, reason);
    return { status: 'miss', reason };
  }
}
