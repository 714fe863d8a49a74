import { randomBytes } from 'node:crypto';
import { errorCode } from '../util/errors';
import type { ConfinedFs } from '../fs/confined';
import type { LockGuard } from '../fs/lock';
import type { VolumeClock } from '../store/clock';
import { isKeyHash, isSafeName, parseSegmentName, type Layout } from '../store/layout';
import { freshMtime, listNames, listSegments, MAX_SNAPSHOT_BYTES, readMembersSnapshot, readSegment, readSnapshot, readWatermark, type TagSeals } from './files';
import { emptyMembers, encodeMembers, foldMemberships, type MemberIndex } from './members';
import { parseInvalidation, parseMembership } from './record';
import { encodeSnapshot, type TagSnapshot } from './snapshot';
import { bumpHead } from './tag-log';
import { ALL_ENTRIES, TagState } from './tag-state';

export interface CompactContext {
  fs: ConfinedFs;
  layout: Layout;
  clock: VolumeClock;
  seals: TagSeals;
  settings: { leaseTimeoutMs: number };
}

export interface CompactResult {
  segmentsRead: number;
  recordsFolded: number;
  linesSkipped: number;
  segmentsDeleted: number;
  /** Segments that could not be read (left in place, never deleted). */
  segmentsUnreadable: number;
  /** Names in the segment folders the library did not write (left alone). */
  strangers: number;
  tags: number;
  tagsDropped: number;
  /** The previous snapshot could not be used: entries older than it are expired by the new one. */
  snapshotReplaced: boolean;
  memberSegmentsRead: number;
  memberSegmentsDeleted: number;
  members: number;
  membersDropped: number;
  leasesRemoved: number;
}

/**
 * Folds the per-writer invalidation segments into the snapshot and deletes
 * the segments nobody will append to again.
 *
 * Safe to run while every replica reads and writes, safe to kill at any
 * point, and safe to run twice at once (should the lock ever be held twice):
 *  - the state only grows by an idempotent merge, and each new snapshot is
 *    merged with the snapshot on disk right before it replaces it, so a
 *    concurrent compactor's work is never overwritten;
 *  - a segment is deleted only after a snapshot holding all of it is
 *    published, and only if its writer can no longer append to it: it is not
 *    the writer's newest generation, or the writer's lease had expired
 *    before the segment was read (see SegmentWriter for the writer's half of
 *    that rule). Only a lease known absent or known expired counts: an
 *    unreadable lease is a live writer;
 *  - readers re-check the head after listing (see TagLog.refresh), and the
 *    head is bumped after the snapshot is published and before any deletion;
 *  - a previous snapshot that cannot be used (damaged, over its cap, forged)
 *    may have held invalidations whose segments are gone: the new snapshot
 *    expires every entry older than it, so nothing it hid is served again.
 */
export interface CompactOptions {
  /**
   * Expire every entry written before this volume time (verify --repair
   * passes the time a link was planted in place of a tag folder: what that
   * folder held, and no longer holds, may have invalidated them).
   */
  expireBefore?: number | undefined;
}

export async function compactTags(c: CompactContext, guard: LockGuard, options: CompactOptions = {}): Promise<CompactResult> {
  const result: CompactResult = {
    segmentsRead: 0,
    recordsFolded: 0,
    linesSkipped: 0,
    segmentsDeleted: 0,
    segmentsUnreadable: 0,
    strangers: 0,
    tags: 0,
    tagsDropped: 0,
    snapshotReplaced: false,
    memberSegmentsRead: 0,
    memberSegmentsDeleted: 0,
    members: 0,
    membersDropped: 0,
    leasesRemoved: 0,
  };
  const { fs, layout, clock } = c;
  // Order matters: list, then judge leases, then read. A writer judged gone
  // rotates before its next append, so the listed segments are complete when read.
  const listed = await listSegments(fs, layout.invalidationsDir);
  const memberListed = await listSegments(fs, layout.membersDir);
  result.strangers = listed.strangers.length + memberListed.strangers.length;
  const gone = await goneWriters(c, [...listed.segments, ...memberListed.segments]);

  const previous = await previousSnapshot(c, result);
  const state = new TagState();
  state.merge(previous.state, clock.now());
  if (options.expireBefore !== undefined) failClosed(state, options.expireBefore, clock.now());
  const folded = new Map<string, number>();
  let records = previous.records;
  for (const name of listed.segments) {
    const read = await readSegment(c, layout.invalidationsDir, name, previous.folded.get(name) ?? 0, (line) => parseInvalidation(line, c.seals.invalidations));
    if (read.status !== 'ok') {
      if (read.status === 'damaged') result.segmentsUnreadable++;
      if (read.status === 'stranger') result.strangers++;
      continue;
    }
    for (const record of read.records) state.apply(record, clock.now());
    folded.set(name, read.consumed);
    records += read.records.length;
    result.segmentsRead++;
    result.recordsFolded += read.records.length;
    result.linesSkipped += read.skipped;
  }
  const watermark = await readWatermark(c);
  if (watermark !== undefined) result.tagsDropped = state.dropOlderThan(watermark, clock.now());

  const deletable = listed.segments.filter((name) => folded.has(name) && isClosed(name, listed.segments, gone));
  for (const name of deletable) folded.delete(name);
  guard.check();
  const written = await publishSnapshot(c, previous.id, { id: randomId(), createdAt: clock.now(), state, folded, records });
  result.tags = written.state.size;
  await bumpHead(fs, layout);
  guard.check();
  for (const name of deletable) {
    if (await fs.unlink(layout.segmentPath(layout.invalidationsDir, name))) result.segmentsDeleted++;
  }

  await compactMembers(c, guard, memberListed.segments, gone, result);
  result.leasesRemoved = await removeDeadLeases(c, gone, [...listed.segments, ...memberListed.segments], deletable);
  return result;
}

async function previousSnapshot(c: CompactContext, result: CompactResult): Promise<TagSnapshot> {
  const now = c.clock.now();
  const read = await readSnapshot(c, now);
  if (read.status === 'ok') return read.snapshot;
  const empty: TagSnapshot = { id: 'empty', createdAt: now, state: new TagState(), folded: new Map(), records: 0 };
  if (read.status === 'damaged') {
    result.snapshotReplaced = true;
    failClosed(empty.state, read.mtimeMs ?? now, now);
  }
  return empty;
}

/** Every entry written up to `upTo` (never later than now) is judged expired. */
function failClosed(state: TagState, upTo: number, now: number): void {
  const at = Math.min(upTo, now);
  state.apply({ tags: [ALL_ENTRIES], stale: at, expired: at }, now);
}

async function compactMembers(c: CompactContext, guard: LockGuard, listed: string[], gone: Set<string>, result: CompactResult): Promise<void> {
  const { fs, layout } = c;
  const previous = await readMembersSnapshot(c);
  const index: MemberIndex = previous.status === 'ok' ? previous.index : emptyMembers();
  const folded = new Map<string, number>();
  for (const name of listed) {
    const read = await readSegment(c, layout.membersDir, name, index.folded.get(name) ?? 0, (line) => parseMembership(line, c.seals.memberships));
    if (read.status !== 'ok') continue;
    foldMemberships(index, read.records);
    folded.set(name, read.consumed);
    result.memberSegmentsRead++;
  }
  // Membership of entries known to be gone is dropped: the index stays the size of the store.
  for (const id of [...index.members.keys()]) {
    const [ns, hash] = id.split('/') as [string, string];
    if (isSafeName(ns) && isKeyHash(hash) && (await isKnownAbsent(fs, layout.entryPath(hash, ns)))) {
      index.members.delete(id);
      result.membersDropped++;
    }
  }
  const deletable = listed.filter((name) => folded.has(name) && isClosed(name, listed, gone));
  for (const name of deletable) folded.delete(name);
  guard.check();
  const current = await readMembersSnapshot(c);
  if (current.status === 'ok') {
    // A concurrent compactor's additions are kept (the index is advisory, a union is always safe).
    for (const [id, tags] of current.index.members) if (!index.members.has(id)) index.members.set(id, tags);
    for (const [name, offset] of current.index.folded) if (offset > (folded.get(name) ?? -1) && listed.includes(name) && !deletable.includes(name)) folded.set(name, offset);
  }
  await fs.writeAtomic(layout.membersSnapshot, [encodeMembers({ members: index.members, folded }, c.seals.membersSnapshot)], { fsync: true });
  result.members = index.members.size;
  guard.check();
  for (const name of deletable) {
    if (await fs.unlink(layout.segmentPath(layout.membersDir, name))) result.memberSegmentsDeleted++;
  }
}

/** true only when lstat says ENOENT: any other answer (a file, EACCES, EIO) is not proof of absence. */
async function isKnownAbsent(fs: ConfinedFs, file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return false;
  } catch (error) {
    return errorCode(error) === 'ENOENT';
  }
}

/**
 * Replaces the snapshot. If another compactor replaced it since we read it,
 * its state is merged in first so that nothing it folded (and may already
 * have deleted the segments of) is lost. A snapshot readers would refuse as
 * too large is not published: the segments stay, nothing is lost.
 */
async function publishSnapshot(c: CompactContext, previousId: string, next: TagSnapshot): Promise<TagSnapshot> {
  const current = await readSnapshot(c, c.clock.now());
  if (current.status === 'ok' && current.snapshot.id !== previousId) {
    next.state.merge(current.snapshot.state, c.clock.now());
    next.records = Math.max(next.records, current.snapshot.records);
  }
  const bytes = encodeSnapshot(next, c.seals.snapshot);
  if (bytes.length > MAX_SNAPSHOT_BYTES) {
    throw Object.assign(new Error(`the compacted tag state would be ${bytes.length} bytes, over the ${MAX_SNAPSHOT_BYTES} readers accept; run gc first (its watermark lets compaction drop old tags)`), { code: 'EFBIG' });
  }
  await c.fs.writeAtomic(c.layout.tagSnapshot, [bytes], { fsync: true });
  return next;
}

/** A segment no one will append to again: not its writer's newest generation, or its writer is gone. */
function isClosed(name: string, listed: string[], gone: Set<string>): boolean {
  const parsed = parseSegmentName(name)!;
  if (gone.has(parsed.writer)) return true;
  return listed.some((other) => {
    const o = parseSegmentName(other)!;
    return o.writer === parsed.writer && o.generation > parsed.generation;
  });
}

/**
 * Writers whose lease (a file they rewrite every lease/10) is older than the
 * lease timeout on the volume clock, or missing. Judged by the volume's own
 * mtimes against this process's calibrated volume clock: no replica's local
 * clock is trusted. A lease that cannot be read is a live writer.
 */
async function goneWriters(c: CompactContext, segments: string[]): Promise<Set<string>> {
  const writers = new Set(segments.map((name) => parseSegmentName(name)!.writer));
  const gone = new Set<string>();
  for (const writer of writers) {
    if (writer === c.fs.writes.writer) continue;
    const mtime = await freshMtime(c.fs, c.layout.writerLease(writer)).then(
      (m) => m ?? 'absent',
      () => 'unknown' as const,
    );
    if (mtime === 'absent' || (mtime !== 'unknown' && c.clock.now() - mtime > c.settings.leaseTimeoutMs)) gone.add(writer);
  }
  return gone;
}

/** Removes the leases of gone writers that have no segment left. */
async function removeDeadLeases(c: CompactContext, gone: Set<string>, listed: string[], deleted: string[]): Promise<number> {
  let removed = 0;
  const stillHasSegments = new Set(listed.filter((n) => !deleted.includes(n)).map((n) => parseSegmentName(n)!.writer));
  for (const writer of await listNames(c.fs, c.layout.writersDir)) {
    if (!isSafeName(writer) || writer === c.fs.writes.writer || stillHasSegments.has(writer)) continue;
    const mtime = await freshMtime(c.fs, c.layout.writerLease(writer)).catch(() => undefined);
    const expired = mtime !== undefined && c.clock.now() - mtime > c.settings.leaseTimeoutMs;
    if ((gone.has(writer) || expired) && (await c.fs.unlink(c.layout.writerLease(writer)))) removed++;
  }
  return removed;
}

function randomId(): string {
  return `${Date.now().toString(36)}-${randomBytes(5).toString('hex')}`;
}
