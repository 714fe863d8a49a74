import type { ConfinedFs } from '../fs/confined';
import type { VolumeClock } from '../store/clock';
import { parseSegmentName, type Layout } from '../store/layout';
import { describe, errorCode } from '../util/errors';
import type { CacheLog } from '../util/log';
import type { Metrics } from '../util/metrics';
import { MAX_LINE_BYTES } from './lines';
import { listSegments, readSegment, readSnapshot, type Damage, type TagSeals } from './files';
import { encodeInvalidation, encodeMembership, parseInvalidation, type Membership } from './record';
import { SegmentWriter, type Lease } from './segment-writer';
import { ALL_ENTRIES, TagState, type Invalidation, type Verdict } from './tag-state';
import { randomBytes } from 'node:crypto';

/** Even when the change marker says nothing changed, re-list the segments this often (a lost marker bump heals). */
const FULL_SCAN_MS = 30_000;
/** Identical invalidations closer than this share one record. */
const DEDUPE_MS = 100;
/** The head is one short line. */
const MAX_HEAD_BYTES = 256;

/** `revalidateTag(tags, {expire})` takes seconds; Next's 'max' profile is one year. */
export interface Durations {
  expire?: number | undefined;
}

export interface TagLogOptions {
  fs: ConfinedFs;
  layout: Layout;
  clock: VolumeClock;
  log: CacheLog;
  metrics: Metrics;
  lease: Lease;
  leaseTimeoutMs: number;
  /** A record stamped later than the volume's now plus this is clamped to it (a bad clock cannot make marks that outlive it). */
  maxClockSkewMs: number;
  seals: TagSeals;
  /** Told about invalidations recorded here and read from other writers (telemetry). */
  observer?: TagLogObserver;
}

export interface TagLogObserver {
  /** An invalidation was recorded durably by this process (a deduplicated twin is not). */
  recorded(): void;
  /**
   * Invalidations another writer recorded were read from its segment and applied, each `lagsMs`
   * after it was made (volume clock: its stale time to now). Records read by the first load
   * are not reported: they were made before this process was there to see them.
   */
  applied(lagsMs: readonly number[]): void;
}

/**
 * This process's view of the shared tag state, and its writer.
 *
 * Reading (on the request path, at most once per refresh interval): open and
 * read the small `head` file that every writer rewrites after appending. If
 * it is unchanged, that is the whole refresh, whatever the number of writers.
 * If it changed: reload the snapshot when the compactor replaced it, list the
 * segments and read only the bytes appended since the last read of each.
 *
 * What it cannot use, it does not let stop the rest:
 *  - a name in the segment folder that is not a segment, or a segment that
 *    is not a regular file (a link, a folder, a FIFO), cannot hold records
 *    any writer made: skipped and reported;
 *  - a line that is damaged, forged or too long: skipped and counted;
 *  - a segment or snapshot that is a regular file but cannot be read (another
 *    UID's 0600 file, EIO) or fails its check may hold real invalidations:
 *    every entry older than its mtime is judged expired (the ALL_ENTRIES
 *    mark), on new and running replicas alike. Fail closed, but bounded: the
 *    entries written since are served, and `check` reports the cause;
 *  - a head that is not a regular file: every refresh scans.
 *
 * Writing: an invalidation is applied to this process's view at once, then
 * appended to this process's own segment, synced, and the head is bumped;
 * only then does the call resolve. Membership records (which entries carry
 * which tags, for the CLI's tag index) go to separate segments that the
 * request path never reads.
 */
export class TagLog {
  readonly state = new TagState();
  private readonly offsets = new Map<string, number>();
  private headToken: string | undefined;
  private snapshotIdentity: string | undefined;
  private lastFullScan = -Infinity;
  /** Set once the first refresh completed: records read later are news to this process. */
  private caughtUp = false;
  /** Files that could not be used in the last scan, by name: what `check` and `verify` report. */
  readonly damaged = new Map<string, Damage>();
  private readonly recentInvalidations = new Map<string, { at: number; done: Promise<void> | undefined }>();
  private readonly invalidations: SegmentWriter;
  private readonly memberships: SegmentWriter;

  constructor(private readonly options: TagLogOptions) {
    const { fs, layout, lease, leaseTimeoutMs } = options;
    this.invalidations = new SegmentWriter({ fs, dir: layout.invalidationsDir, lease, leaseTimeoutMs, durable: true });
    this.memberships = new SegmentWriter({ fs, dir: layout.membersDir, lease, leaseTimeoutMs, durable: false });
  }

  verdict(tags: Iterable<string>, writtenAt: number): Verdict {
    return this.state.verdict(tags, writtenAt, this.options.clock.now());
  }

  /** Whether every file of the tag state could be used in the last scan (gc deletes by tag only then). */
  get complete(): boolean {
    return this.damaged.size === 0;
  }

  /**
   * Brings the view up to date. Cheap when nothing changed: one open, one
   * read and one close of `head`. Throws only when the segment folder itself
   * cannot be listed; callers on the request path never let it escape.
   */
  async refresh(): Promise<void> {
    const token = await this.readHead();
    const now = performance.now();
    if (token !== undefined && token === this.headToken && now - this.lastFullScan < FULL_SCAN_MS) return;
    await this.scan();
    // Re-check once: a compactor that replaced the snapshot and deleted
    // segments between our snapshot read and our listing has bumped the head.
    const after = await this.readHead();
    if (after !== token) await this.scan();
    this.headToken = token;
    this.lastFullScan = now;
    this.caughtUp = true;
    this.options.metrics.tagRefreshes++;
  }

  /**
   * Records an invalidation durably; this process sees it at once, others at
   * their next refresh. Next calls both the page handler's revalidateTag and
   * every 'use cache' handler's updateTags for one app call: an identical
   * call within DEDUPE_MS shares the first one's record. Tags starting with
   * NUL are the library's own (ALL_ENTRIES) and are ignored.
   */
  invalidate(tags: string[], durations?: Durations): Promise<void> {
    const own = tags.filter((t) => !t.startsWith('\u0000'));
    if (own.length === 0) return Promise.resolve();
    const id = JSON.stringify([own, durations?.expire ?? null]);
    const at = performance.now();
    for (const [key, recent] of this.recentInvalidations) if (at - recent.at > DEDUPE_MS) this.recentInvalidations.delete(key);
    const recent = this.recentInvalidations.get(id);
    if (recent) return recent.done ?? Promise.resolve();
    const entry: { at: number; done: Promise<void> | undefined } = { at, done: undefined };
    const done = this.record(own, durations);
    entry.done = done;
    this.recentInvalidations.set(id, entry);
    // Once settled, the promise (and the caller's context it carries) is not kept: a later twin resolves at once.
    done.then(
      () => (entry.done = undefined),
      () => this.recentInvalidations.delete(id),
    );
    return done;
  }

  private async record(tags: string[], durations?: Durations): Promise<void> {
    const record = this.applyLocally(tags, durations);
    this.options.metrics.invalidations++;
    // Readers skip any line longer than MAX_LINE_BYTES as garbage: a huge tag list is split
    // into records that each fit, so none of it is acknowledged and then lost.
    for (const line of this.linesFor(record)) await this.invalidations.append(line);
    this.options.observer?.recorded();
    await this.bumpHead();
  }

  /**
   * Marks the tags in this process's view only. `expire` in seconds:
   * stale now and expired after it; without it (updateTag, revalidatePath),
   * expired now.
   */
  applyLocally(tags: string[], durations?: Durations): Invalidation {
    const now = this.options.clock.now();
    const expire = durations?.expire;
    const record: Invalidation = {
      tags,
      stale: now,
      expired: typeof expire === 'number' && Number.isFinite(expire) && expire > 0 ? now + expire * 1000 : now,
    };
    this.state.apply(record, now);
    return record;
  }

  /**
   * Advisory (the tag index for the CLI): a lost record only means the CLI's
   * full walk finds the entry. Never rejects; failures are logged once.
   */
  recordMembership(record: Membership): Promise<void> {
    if (record.tags.length === 0) return Promise.resolve();
    return this.memberships.append(encodeMembership(record, this.options.seals.memberships)).catch((error: unknown) => {
      this.options.log.onceWarn('membership-append', `could not append to the tag index: ${describe(error)}`);
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.invalidations.close(), this.memberships.close()]);
  }

  /**
   * Rewrites the change marker with a new unique token (by rename): every
   * reader's next refresh sees a different head and rescans. A failure here
   * does not undo the record, which is durable already: readers find it at
   * their next full scan, so it is logged, not thrown.
   */
  async bumpHead(): Promise<void> {
    try {
      await bumpHead(this.options.fs, this.options.layout);
    } catch (error) {
      this.options.log.onceWarn('head-bump', `could not rewrite ${this.options.layout.tagHead} (${describe(error)}); other replicas see new invalidations within ${FULL_SCAN_MS / 1000} s instead of at their next refresh`);
    }
  }

  /** The head's token: '' when there is none yet, undefined when it is not a usable file (then every refresh scans). */
  private async readHead(): Promise<string | undefined> {
    try {
      return (await this.options.fs.readFile(this.options.layout.tagHead, { maxBytes: MAX_HEAD_BYTES, firstRead: MAX_HEAD_BYTES, declared: lineLength })).toString('utf8');
    } catch (error) {
      return errorCode(error) === 'ENOENT' ? '' : undefined;
    }
  }

  private async scan(): Promise<void> {
    const { fs, layout, log } = this.options;
    await this.loadSnapshotIfReplaced();
    const { segments, strangers } = await listSegments(fs, layout.invalidationsDir);
    if (strangers.length > 0) log.onceWarn('segment-strangers', `ignoring ${strangers.length} name(s) in ${layout.invalidationsDir} that are not log segments (e.g. ${JSON.stringify(strangers[0])})`);
    for (const name of segments) await this.readSegmentTail(name);
    const listed = new Set(segments);
    for (const name of this.offsets.keys()) if (!listed.has(name)) this.offsets.delete(name);
    for (const name of this.damaged.keys()) if (name !== SNAPSHOT && !listed.has(name)) this.damaged.delete(name);
  }

  /** The snapshot is replaced by rename, so a new inode (or size, or mtime) means a new snapshot. */
  private async loadSnapshotIfReplaced(): Promise<void> {
    const now = this.options.clock.now();
    const read = await readSnapshot(this.options, now, this.snapshotIdentity);
    if (read.status === 'unchanged') return;
    if (read.status === 'absent') {
      this.damaged.delete(SNAPSHOT);
      return;
    }
    this.snapshotIdentity = read.identity;
    if (read.status === 'damaged') {
      this.failClosed(SNAPSHOT, read);
      return;
    }
    this.damaged.delete(SNAPSHOT);
    this.state.merge(read.snapshot.state, now);
    for (const [name, offset] of read.snapshot.folded) {
      if (offset > (this.offsets.get(name) ?? 0)) this.offsets.set(name, offset);
    }
  }

  private async readSegmentTail(name: string): Promise<void> {
    const { metrics, log, seals, clock, maxClockSkewMs, layout } = this.options;
    const offset = this.offsets.get(name) ?? 0;
    const read = await readSegment(this.options, layout.invalidationsDir, name, offset, (line) => parseInvalidation(line, seals.invalidations));
    if (read.status === 'absent') return;
    if (read.status === 'stranger') {
      this.damaged.delete(name);
      log.onceWarn(`segment-stranger:${name}`, `ignoring ${name} in ${layout.invalidationsDir}: named like a log segment but not a regular file (${read.reason}); \`next-volume-cache verify --repair\` quarantines it`);
      return;
    }
    if (read.status === 'damaged') {
      this.failClosed(name, read);
      return;
    }
    this.damaged.delete(name);
    const now = clock.now();
    for (const record of read.records) this.state.apply(clampToNow(record, now + maxClockSkewMs), now);
    metrics.tagRecordsRead += read.records.length;
    if (this.options.observer && this.caughtUp && read.records.length > 0 && !this.isOwnSegment(name)) this.options.observer.applied(lagsOf(read.records, now));
    if (read.skipped > 0) {
      metrics.tagRecordsSkipped += read.skipped;
      log.onceWarn(`segment-garbage:${name}`, `skipped ${read.skipped} unreadable line(s) in tag log segment ${name}`);
    }
    this.offsets.set(name, read.consumed);
  }

  /** This process's own records were applied when they were made, not when read back. */
  private isOwnSegment(name: string): boolean {
    return parseSegmentName(name)?.writer === this.options.fs.writes.writer;
  }

  /**
   * A tag file that may hold invalidations could not be used: every entry
   * older than what it may hold (its mtime; now if unknown) is expired.
   * Judged again at every scan, so a file fixed later is read in full.
   */
  private failClosed(name: string, damage: Damage): void {
    const { clock, log, metrics } = this.options;
    const now = clock.now();
    const upTo = Math.min(damage.mtimeMs ?? now, now);
    if (!this.damaged.has(name)) metrics.tagFilesUnusable++;
    this.damaged.set(name, damage);
    this.state.apply({ tags: [ALL_ENTRIES], stale: upTo, expired: upTo }, now);
    log.onceWarn(
      `tag-file-unusable:${name}`,
      `cannot use tag log file ${name} (${damage.reason}): entries written before ${new Date(clock.toLocal(upTo)).toISOString()} are treated as invalidated until it can be read; run \`next-volume-cache check\``,
    );
  }

  private linesFor(record: Invalidation): string[] {
    const line = encodeInvalidation(record, this.options.seals.invalidations);
    if (Buffer.byteLength(line) <= MAX_LINE_BYTES) return [line];
    if (record.tags.length === 1) throw new Error(`next-volume-cache: a tag of ${Buffer.byteLength(record.tags[0]!)} bytes is too long to record`);
    const half = Math.ceil(record.tags.length / 2);
    return [...this.linesFor({ ...record, tags: record.tags.slice(0, half) }), ...this.linesFor({ ...record, tags: record.tags.slice(half) })];
  }
}

/** How long after each record was made it is applied (records without a stale time, which no writer makes, are left out). */
function lagsOf(records: readonly Invalidation[], now: number): number[] {
  const lags: number[] = [];
  for (const record of records) if (record.stale !== undefined) lags.push(Math.max(0, now - record.stale));
  return lags;
}

/** The head is one line: its newline ends the read without a final empty read. */
function lineLength(head: Buffer): number | undefined {
  const newline = head.indexOf(0x0a);
  return newline === -1 ? undefined : newline + 1;
}

/** The damage key of the snapshot in `TagLog.damaged` (segment names never look like this). */
const SNAPSHOT = 'snapshot';

/** A record's marks, no later than `latest`: a writer's bad clock cannot make marks that outlive it. */
function clampToNow(record: Invalidation, latest: number): Invalidation {
  return record.stale !== undefined && record.stale > latest ? { ...record, stale: latest } : record;
}

/**
 * Rewrites the change marker with a new unique token (by rename). Writers
 * bump it after each durable append, the compactor after each new snapshot.
 */
export async function bumpHead(fs: ConfinedFs, layout: Layout): Promise<void> {
  const token = `${fs.writes.writer} ${Date.now().toString(36)} ${randomBytes(6).toString('hex')}\n`;
  await fs.writeAtomic(layout.tagHead, [Buffer.from(token)], { fsync: false });
}
