import path from 'node:path';
import { writeAtomic } from '../store/atomic';
import { errorCode, exists, listDir, READ_FLAGS, readWhole, unlinkIfExists, type VolumeFs } from '../store/fs';
import { parseSegmentName, type Layout } from '../store/layout';
import type { Maintenance } from '../maintenance/context';
import type { LockGuard } from '../maintenance/lock';
import { parseInvalidations, parseMemberships } from './record';
import { decodeSnapshot, encodeSnapshot, type TagSnapshot } from './snapshot';
import { TagState } from './tag-state';
import { bumpHead } from './tag-log';
import { decodeMembers, encodeMembers, type MemberIndex } from './members';

export interface CompactResult {
  segmentsRead: number;
  recordsFolded: number;
  linesSkipped: number;
  segmentsDeleted: number;
  tags: number;
  tagsDropped: number;
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
 *    that rule);
 *  - readers re-check the head after listing (see TagLog.refresh), and the
 *    head is bumped after the snapshot is published and before any deletion.
 */
export async function compactTags(m: Maintenance, guard: LockGuard): Promise<CompactResult> {
  const result: CompactResult = {
    segmentsRead: 0,
    recordsFolded: 0,
    linesSkipped: 0,
    segmentsDeleted: 0,
    tags: 0,
    tagsDropped: 0,
    memberSegmentsRead: 0,
    memberSegmentsDeleted: 0,
    members: 0,
    membersDropped: 0,
    leasesRemoved: 0,
  };
  const { fs, layout } = m;
  // Order matters: list, then judge leases, then read. A writer judged gone
  // rotates before its next append, so the listed segments are complete when read.
  const listed = await listSegments(fs, layout.invalidationsDir);
  const memberListed = await listSegments(fs, layout.membersDir);
  const gone = await goneWriters(m, [...listed, ...memberListed]);

  const previous = (await readSnapshot(fs, layout, m.clock.now())) ?? emptySnapshot(m.clock.now());
  const state = new TagState();
  state.merge(previous.state, m.clock.now());
  const folded = new Map<string, number>();
  let records = previous.records;
  for (const name of listed) {
    const start = previous.folded.get(name) ?? 0;
    const bytes = await readFrom(fs, path.join(layout.invalidationsDir, name), start);
    if (bytes === undefined) continue;
    const parsed = parseInvalidations(bytes);
    for (const record of parsed.records) state.apply(record, m.clock.now());
    folded.set(name, start + parsed.consumed);
    records += parsed.records.length;
    result.segmentsRead++;
    result.recordsFolded += parsed.records.length;
    result.linesSkipped += parsed.skipped;
  }
  const watermark = await readWatermark(fs, layout);
  if (watermark !== undefined) result.tagsDropped = state.dropOlderThan(watermark, m.clock.now());

  const deletable = listed.filter((name) => folded.has(name) && isClosed(name, listed, gone));
  for (const name of deletable) folded.delete(name);
  guard.check();
  const written = await publishSnapshot(m, previous.id, { id: randomId(), createdAt: m.clock.now(), state, folded, records });
  result.tags = written.state.size;
  await bumpHead(m.fs, m.layout, m.writer, m.settings.fileMode);
  guard.check();
  for (const name of deletable) {
    if (await unlinkIfExists(fs, path.join(layout.invalidationsDir, name))) result.segmentsDeleted++;
  }

  await compactMembers(m, guard, memberListed, gone, result);
  result.leasesRemoved = await removeDeadLeases(m, gone, [...listed, ...memberListed], deletable);
  return result;
}

async function compactMembers(m: Maintenance, guard: LockGuard, listed: string[], gone: Set<string>, result: CompactResult): Promise<void> {
  const { fs, layout } = m;
  const index: MemberIndex = (await readMembers(fs, layout)) ?? { members: new Map(), folded: new Map() };
  const folded = new Map<string, number>();
  for (const name of listed) {
    const start = index.folded.get(name) ?? 0;
    const bytes = await readFrom(fs, path.join(layout.membersDir, name), start);
    if (bytes === undefined) continue;
    const parsed = parseMemberships(bytes);
    for (const record of parsed.records) {
      const id = `${record.ns}/${record.hash}`;
      const tags = index.members.get(id) ?? new Set<string>();
      for (const tag of record.tags) tags.add(tag);
      index.members.set(id, tags);
    }
    folded.set(name, start + parsed.consumed);
    result.memberSegmentsRead++;
  }
  // Membership of entries that no longer exist is dropped: the index stays the size of the store.
  for (const id of [...index.members.keys()]) {
    const [ns, hash] = id.split('/') as [string, string];
    if (!(await exists(fs, layout.entryPath(hash, ns)))) {
      index.members.delete(id);
      result.membersDropped++;
    }
  }
  const deletable = listed.filter((name) => folded.has(name) && isClosed(name, listed, gone));
  for (const name of deletable) folded.delete(name);
  guard.check();
  const current = await readMembers(fs, layout);
  if (current) {
    // A concurrent compactor's additions are kept (the index is advisory, a union is always safe).
    for (const [id, tags] of current.members) if (!index.members.has(id)) index.members.set(id, tags);
    for (const [name, offset] of current.folded) if (offset > (folded.get(name) ?? -1) && listed.includes(name) && !deletable.includes(name)) folded.set(name, offset);
  }
  await writeAtomic(fs, layout.membersSnapshot, [encodeMembers({ members: index.members, folded })], { writer: m.writer, fsync: true });
  result.members = index.members.size;
  guard.check();
  for (const name of deletable) {
    if (await unlinkIfExists(fs, path.join(layout.membersDir, name))) result.memberSegmentsDeleted++;
  }
}

/**
 * Replaces the snapshot. If another compactor replaced it since we read it,
 * its state is merged in first so that nothing it folded (and may already
 * have deleted the segments of) is lost.
 */
async function publishSnapshot(m: Maintenance, previousId: string, next: TagSnapshot): Promise<TagSnapshot> {
  const current = await readSnapshot(m.fs, m.layout, m.clock.now());
  if (current && current.id !== previousId) {
    next.state.merge(current.state, m.clock.now());
    next.records = Math.max(next.records, current.records);
  }
  await writeAtomic(m.fs, m.layout.tagSnapshot, [encodeSnapshot(next)], { writer: m.writer, fsync: true });
  return next;
}

export async function readSnapshot(fs: VolumeFs, layout: Layout, now: number): Promise<TagSnapshot | undefined> {
  const bytes = await readFrom(fs, layout.tagSnapshot, 0);
  return bytes === undefined ? undefined : decodeSnapshot(bytes, now);
}

export async function readMembers(fs: VolumeFs, layout: Layout): Promise<MemberIndex | undefined> {
  const bytes = await readFrom(fs, layout.membersSnapshot, 0);
  return bytes === undefined ? undefined : decodeMembers(bytes);
}

function emptySnapshot(now: number): TagSnapshot {
  return { id: 'empty', createdAt: now, state: new TagState(), folded: new Map(), records: 0 };
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
 * clock is trusted.
 */
async function goneWriters(m: Maintenance, segments: string[]): Promise<Set<string>> {
  const writers = new Set(segments.map((name) => parseSegmentName(name)!.writer));
  const gone = new Set<string>();
  for (const writer of writers) {
    if (writer === m.writer) continue;
    const mtime = await leaseMtime(m.fs, m.layout.writerLease(writer));
    if (mtime === undefined || m.clock.now() - mtime > m.settings.leaseTimeoutMs) gone.add(writer);
  }
  return gone;
}

/** Open then fstat: a fresh open revalidates attributes on NFS, a bare stat may not. */
export async function leaseMtime(fs: VolumeFs, file: string): Promise<number | undefined> {
  let handle;
  try {
    handle = await fs.open(file, READ_FLAGS);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return (await handle.stat()).mtimeMs;
  } finally {
    await handle.close();
  }
}

/** Removes the leases of gone writers that have no segment left. */
async function removeDeadLeases(m: Maintenance, gone: Set<string>, listed: string[], deleted: string[]): Promise<number> {
  let removed = 0;
  const names = await listDir(m.fs, m.layout.writersDir).catch(() => [] as string[]);
  const stillHasSegments = new Set(listed.filter((n) => !deleted.includes(n)).map((n) => parseSegmentName(n)!.writer));
  for (const writer of names) {
    if (writer === m.writer || stillHasSegments.has(writer)) continue;
    const mtime = await leaseMtime(m.fs, m.layout.writerLease(writer)).catch(() => undefined);
    const expired = mtime !== undefined && m.clock.now() - mtime > m.settings.leaseTimeoutMs;
    if ((gone.has(writer) || expired) && (await unlinkIfExists(m.fs, m.layout.writerLease(writer)))) removed++;
  }
  return removed;
}

async function listSegments(fs: VolumeFs, dir: string): Promise<string[]> {
  return (await listDir(fs, dir)).filter((name) => parseSegmentName(name) !== undefined).sort();
}

async function readFrom(fs: VolumeFs, file: string, position: number): Promise<Buffer | undefined> {
  try {
    return await readWhole(fs, file, position);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

async function readWatermark(fs: VolumeFs, layout: Layout): Promise<number | undefined> {
  const bytes = await readFrom(fs, path.join(layout.tagsDir, 'watermark'), 0);
  if (!bytes) return undefined;
  const value = Number(bytes.toString('utf8').trim());
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

function randomId(): string {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
