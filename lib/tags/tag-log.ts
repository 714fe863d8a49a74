import path from 'node:path';
import { errorCode, listDir, READ_FLAGS, readToEnd, readWhole, type VolumeFs } from '../store/fs';
import { parseSegmentName, type Layout } from '../store/layout';
import { writeAtomic } from '../store/atomic';
import type { VolumeClock } from '../store/clock';
import type { CacheLog } from '../util/log';
import type { Metrics } from '../util/metrics';
import { encodeInvalidation, encodeMembership, MAX_LINE_BYTES, parseInvalidations, type Membership } from './record';
import { SegmentWriter, type Lease } from './segment-writer';
import { decodeSnapshot } from './snapshot';
import { TagState, type Invalidation, type Verdict } from './tag-state';

/** Even when the change marker says nothing changed, re-list the segments this often (a lost marker bump heals). */
const FULL_SCAN_MS = 30_000;
/** Identical invalidations closer than this share one record. */
const DEDUPE_MS = 100;
/** `revalidateTag(tags, {expire})` takes seconds; Next's 'max' profile is one year. */
export interface Durations {
  expire?: number | undefined;
}

export interface TagLogOptions {
  writer: string;
  leaseTimeoutMs: number;
  fileMode?: number | undefined;
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
  private readonly recentInvalidations = new Map<string, Promise<void>>();
  private readonly invalidations: SegmentWriter;
  private readonly memberships: SegmentWriter;

  constructor(
    private readonly fs: VolumeFs,
    private readonly layout: Layout,
    private readonly clock: VolumeClock,
    private readonly log: CacheLog,
    private readonly metrics: Metrics,
    lease: Lease,
    private readonly options: TagLogOptions,
  ) {
    this.invalidations = new SegmentWriter(fs, layout.invalidationsDir, options.writer, lease, options.leaseTimeoutMs, true, options.fileMode);
    this.memberships = new SegmentWriter(fs, layout.membersDir, options.writer, lease, options.leaseTimeoutMs, false, options.fileMode);
  }

  verdict(tags: Iterable<string>, writtenAt: number): Verdict {
    return this.state.verdict(tags, writtenAt, this.clock.now());
  }

  /**
   * Brings the view up to date. Cheap when nothing changed: one open, one
   * read and one close of `head`. Throws on I/O errors; callers on the
   * request path go through `TagRefresher`, which never throws.
   */
  async refresh(): Promise<void> {
    const token = await this.readHead();
    const now = performance.now();
    if (token === this.headToken && now - this.lastFullScan < FULL_SCAN_MS) return;
    await this.scan();
    // Re-check once: a compactor that replaced the snapshot and deleted
    // segments between our snapshot read and our listing has bumped the head.
    const after = await this.readHead();
    if (after !== token) await this.scan();
    this.headToken = token;
    this.lastFullScan = now;
    this.metrics.tagRefreshes++;
  }

  /**
   * Records an invalidation durably; this process sees it at once, others at
   * their next refresh. Next calls both the page handler's revalidateTag and
   * every 'use cache' handler's updateTags for one app call: an identical
   * call within DEDUPE_MS shares the first one's record.
   */
  invalidate(tags: string[], durations?: Durations): Promise<void> {
    const id = JSON.stringify([tags, durations?.expire ?? null]);
    const recent = this.recentInvalidations.get(id);
    if (recent) return recent;
    const run = this.record(tags, durations);
    this.recentInvalidations.set(id, run);
    setTimeout(() => this.recentInvalidations.delete(id), DEDUPE_MS).unref();
    return run;
  }

  private async record(tags: string[], durations?: Durations): Promise<void> {
    const record = this.applyLocally(tags, durations);
    this.metrics.invalidations++;
    // Readers skip any line longer than MAX_LINE_BYTES as garbage: a huge tag list is split
    // into records that each fit, so none of it is acknowledged and then lost.
    for (const line of linesFor(record)) await this.invalidations.append(line);
    await this.bumpHead();
  }

  /**
   * Marks the tags in this process's view only. `expire` in seconds:
   * stale now and expired after it; without it (updateTag, revalidatePath),
   * expired now.
   */
  applyLocally(tags: string[], durations?: Durations): Invalidation {
    const now = this.clock.now();
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
    return this.memberships.append(encodeMembership(record)).catch((error: unknown) => {
      this.log.onceWarn('membership-append', `could not append to the tag index: ${describe(error)}`);
    });
  }

  async close(): Promise<void> {
    await Promise.all([this.invalidations.close(), this.memberships.close()]);
  }

  private async readHead(): Promise<string> {
    try {
      return (await readWhole(this.fs, this.layout.tagHead, 0, lineLength, 256)).toString('utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return '';
      throw error;
    }
  }

  private bumpHead(): Promise<void> {
    return bumpHead(this.fs, this.layout, this.options.writer, this.options.fileMode);
  }

  private async scan(): Promise<void> {
    await this.loadSnapshotIfReplaced();
    const names = await listDir(this.fs, this.layout.invalidationsDir);
    const segments = names.filter((name) => parseSegmentName(name) !== undefined);
    for (const name of segments) await this.readSegmentTail(name);
    const listed = new Set(segments);
    for (const name of this.offsets.keys()) if (!listed.has(name)) this.offsets.delete(name);
  }

  /** The snapshot is replaced by rename, so a new inode (or size, or mtime) means a new snapshot. */
  private async loadSnapshotIfReplaced(): Promise<void> {
    let handle;
    try {
      handle = await this.fs.open(this.layout.tagSnapshot, READ_FLAGS);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return;
      throw error;
    }
    try {
      const stats = await handle.stat();
      const identity = `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
      if (identity === this.snapshotIdentity) return;
      const now = this.clock.now();
      const snapshot = decodeSnapshot(await readToEnd(handle, 0), now);
      if (!snapshot) {
        this.log.onceWarn('snapshot-corrupt', `ignoring a corrupt tag snapshot at ${this.layout.tagSnapshot}; reading every segment from the start`);
        this.snapshotIdentity = identity;
        return;
      }
      this.state.merge(snapshot.state, now);
      for (const [name, offset] of snapshot.folded) {
        if (offset > (this.offsets.get(name) ?? 0)) this.offsets.set(name, offset);
      }
      this.snapshotIdentity = identity;
    } finally {
      await handle.close();
    }
  }

  private async readSegmentTail(name: string): Promise<void> {
    const offset = this.offsets.get(name) ?? 0;
    let bytes: Buffer;
    try {
      bytes = await readWhole(this.fs, path.join(this.layout.invalidationsDir, name), offset);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ESTALE') return;
      throw error;
    }
    if (bytes.length === 0) return;
    const parsed = parseInvalidations(bytes);
    const now = this.clock.now();
    for (const record of parsed.records) this.state.apply(record, now);
    this.metrics.tagRecordsRead += parsed.records.length;
    if (parsed.skipped > 0) {
      this.metrics.tagRecordsSkipped += parsed.skipped;
      this.log.onceWarn(`segment-garbage:${name}`, `skipped ${parsed.skipped} unreadable line(s) in tag log segment ${name}`);
    }
    this.offsets.set(name, offset + parsed.consumed);
  }
}

function linesFor(record: Invalidation): string[] {
  const line = encodeInvalidation(record);
  if (Buffer.byteLength(line) <= MAX_LINE_BYTES) return [line];
  if (record.tags.length === 1) throw new Error(`next-volume-cache: a tag of ${Buffer.byteLength(record.tags[0]!)} bytes is too long to record`);
  const half = Math.ceil(record.tags.length / 2);
  return [...linesFor({ ...record, tags: record.tags.slice(0, half) }), ...linesFor({ ...record, tags: record.tags.slice(half) })];
}

/**
 * Rewrites the change marker with a new unique token (by rename): every
 * reader's next refresh sees a different head and rescans. Writers bump it
 * after each durable append, the compactor after each new snapshot.
 */
export async function bumpHead(fs: VolumeFs, layout: Layout, writer: string, fileMode?: number): Promise<void> {
  const token = `${writer} ${Date.now().toString(36)} ${Math.random().toString(36).slice(2)}\n`;
  await writeAtomic(fs, layout.tagHead, [Buffer.from(token)], { writer, fsync: false, mode: fileMode });
}

/** The head is one line: its newline ends the read without a final empty read. */
export function lineLength(head: Buffer): number | undefined {
  const newline = head.indexOf(0x0a);
  return newline === -1 ? undefined : newline + 1;
}

export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = errorCode(error);
    return code && !error.message.startsWith(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}
