import type { Stats } from 'node:fs';
import { errorCode } from '../util/errors';
import { isNotAFolder, readFailure, type ConfinedFs } from '../fs/confined';
import { readOpened } from '../fs/read';
import type { Integrity } from '../store/integrity';
import { parseSegmentName, type Layout } from '../store/layout';
import type { LineSeal } from './lines';
import { scanLines } from './lines';
import { decodeMembers, type MemberIndex } from './members';
import { decodeSnapshot, type TagSnapshot } from './snapshot';

/**
 * Reading the tag log's files, shared by the request path's view, the
 * compactor and the CLI. Every file kind has a size cap; a file that is not
 * a regular file, is over its cap or fails its check is reported as
 * damaged, never thrown at the caller as if the volume were broken, so one
 * stray file cannot stop the rest of the state from loading.
 */

/** A snapshot holds one line per compaction: a million tags is about 60 MB. */
export const MAX_SNAPSHOT_BYTES = 128 * 1024 * 1024;
/** The folded tag index: about 100 bytes per tagged entry. */
export const MAX_MEMBERS_BYTES = 512 * 1024 * 1024;
const MAX_SMALL_FILE_BYTES = 4096;

/** The seals of each tag file kind (all undefined without a secret). */
export interface TagSeals {
  invalidations?: LineSeal | undefined;
  memberships?: LineSeal | undefined;
  snapshot?: LineSeal | undefined;
  membersSnapshot?: LineSeal | undefined;
}

export function tagSeals(integrity: Integrity | undefined, app: string): TagSeals {
  if (!integrity) return {};
  const seal = (kind: string): LineSeal => ({ integrity, place: `${app}/tags/${kind}` });
  return { invalidations: seal('inval'), memberships: seal('members'), snapshot: seal('snapshot'), membersSnapshot: seal('members.snapshot') };
}

export interface TagFiles {
  fs: ConfinedFs;
  layout: Layout;
  seals: TagSeals;
}

/** What a file looked like when it could not be used: enough to judge what it may have held. */
export interface Damage {
  reason: string;
  /** Its mtime (volume clock) when known: nothing it holds is newer. */
  mtimeMs: number | undefined;
}

export type SnapshotRead = { status: 'absent' } | { status: 'ok'; snapshot: TagSnapshot; identity: string } | ({ status: 'damaged'; identity: string } & Damage);

/** The snapshot, with its identity (inode, size, mtime): replaced by rename, so a new identity means a new snapshot. */
export async function readSnapshot(files: TagFiles, now: number, knownIdentity?: string): Promise<SnapshotRead | { status: 'unchanged' }> {
  let opened;
  try {
    opened = await files.fs.openFile(files.layout.tagSnapshot);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return { status: 'absent' };
    return damagedFile(files, files.layout.tagSnapshot, error);
  }
  const { handle, stats } = opened;
  try {
    const identity = identityOf(stats);
    if (identity === knownIdentity) return { status: 'unchanged' };
    if (stats.size > MAX_SNAPSHOT_BYTES) return { status: 'damaged', identity, reason: `larger than ${MAX_SNAPSHOT_BYTES} bytes`, mtimeMs: stats.mtimeMs };
    const snapshot = decodeSnapshot(await readOpened(handle, stats, { maxBytes: MAX_SNAPSHOT_BYTES }), now, files.seals.snapshot);
    return snapshot ? { status: 'ok', snapshot, identity } : { status: 'damaged', identity, reason: 'fails its check', mtimeMs: stats.mtimeMs };
  } catch (error) {
    if (!readFailure(error)) throw error;
    return { status: 'damaged', identity: identityOf(stats), reason: (error as Error).message, mtimeMs: stats.mtimeMs };
  } finally {
    await handle.close();
  }
}

export type MembersRead = { status: 'absent' } | { status: 'ok'; index: MemberIndex } | ({ status: 'damaged' } & Damage);

export async function readMembersSnapshot(files: TagFiles): Promise<MembersRead> {
  let bytes: Buffer;
  try {
    bytes = await files.fs.readFile(files.layout.membersSnapshot, { maxBytes: MAX_MEMBERS_BYTES });
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return { status: 'absent' };
    return damagedFile(files, files.layout.membersSnapshot, error);
  }
  const index = decodeMembers(bytes, files.seals.membersSnapshot);
  return index ? { status: 'ok', index } : { status: 'damaged', reason: 'fails its check', mtimeMs: undefined };
}

/** gc's watermark (volume time), or undefined if absent or unusable. */
export async function readWatermark(files: TagFiles): Promise<number | undefined> {
  const bytes = await readSmall(files.fs, files.layout.watermark);
  const value = bytes === undefined ? NaN : Number(bytes.toString('utf8').trim());
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** A small file's bytes, or undefined when it is absent, not a regular file or over 4 KiB (damage is never an error here). */
export async function readSmall(fs: ConfinedFs, file: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(file, { maxBytes: MAX_SMALL_FILE_BYTES, firstRead: MAX_SMALL_FILE_BYTES });
  } catch (error) {
    if (readFailure(error)) return undefined;
    throw error;
  }
}

/**
 * The names in a segment folder, split into segments and names the library
 * did not write. `lenient`: a folder that is not a real folder (a planted
 * link) lists nothing instead of failing (reports; the request path must
 * fail instead, so that it never judges entries without the tag state).
 */
export async function listSegments(fs: ConfinedFs, dir: string, lenient = false): Promise<{ segments: string[]; strangers: string[] }> {
  const names = await (lenient ? listNamesIfFolder : listNames)(fs, dir);
  const segments: string[] = [];
  const strangers: string[] = [];
  for (const name of names) (parseSegmentName(name) ? segments : strangers).push(name);
  return { segments: segments.sort(), strangers };
}

/** A folder's names, or none if it does not exist (yet, or any more). */
export async function listNames(fs: ConfinedFs, dir: string): Promise<string[]> {
  try {
    return await fs.list(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/**
 * A folder's names, or none when it is absent or is not a real folder of
 * ours (a link planted in its place): for reports and sweeps, which must
 * not stop at one such folder. Commands that decide by what they list use
 * listNames, which fails instead.
 */
export async function listNamesIfFolder(fs: ConfinedFs, dir: string): Promise<string[]> {
  try {
    return await fs.list(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || isNotAFolder(error)) return [];
    throw error;
  }
}

export type SegmentRead<T> = { status: 'ok'; records: T[]; consumed: number; skipped: number } | { status: 'absent' } | { status: 'stranger'; reason: string } | ({ status: 'damaged' } & Damage);

/**
 * The records of a segment from `from` on. Gone: absent. Not a regular file
 * (a link, a folder, a FIFO named like a segment): a stranger, which cannot
 * hold records any writer made (writers create their segments as regular
 * files, exclusively) and is skipped. A regular file that cannot be read
 * (another UID's 0600 file, EIO): damaged, with its mtime when lstat can
 * tell, for the caller to decide what it may have missed.
 */
export async function readSegment<T>(files: TagFiles, dir: string, name: string, from: number, parse: (line: string) => T | undefined): Promise<SegmentRead<T>> {
  const file = files.layout.segmentPath(dir, name);
  const records: T[] = [];
  let skipped = 0;
  const onLine = (line: string): void => {
    const record = parse(line);
    if (record === undefined) skipped++;
    else records.push(record);
  };
  try {
    let scan = await scanLines(files.fs, file, from, onLine);
    // Segments only grow: an offset past the end (a forged or damaged snapshot claiming more was
    // folded than exists) would hide every record appended until the file reached it. Read it all
    // again instead: applying a record twice changes nothing.
    if (scan.beyondEnd) scan = await scanLines(files.fs, file, 0, onLine);
    return { status: 'ok', records, consumed: scan.consumed, skipped: skipped + scan.tooLong };
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT' || code === 'ESTALE') return { status: 'absent' };
    if (readFailure(error) === 'not-a-file') return { status: 'stranger', reason: (error as Error).message };
    return damagedFile(files, file, error);
  }
}

/**
 * A file's mtime read through a fresh open (on NFS a fresh open revalidates
 * attributes, a bare stat may not); undefined only when it does not exist.
 * Any other failure propagates: an unreadable lease or marker is not an
 * absent one.
 */
export async function freshMtime(fs: ConfinedFs, file: string): Promise<number | undefined> {
  try {
    const { handle, stats } = await fs.openFile(file);
    await handle.close();
    return stats.mtimeMs;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

async function damagedFile(files: TagFiles, file: string, error: unknown): Promise<{ status: 'damaged'; identity: string } & Damage> {
  const stats = await files.fs.lstat(file).catch(() => undefined);
  return { status: 'damaged', identity: stats ? identityOf(stats) : 'unknown', reason: (error as Error).message ?? String(error), mtimeMs: stats?.mtimeMs };
}

function identityOf(stats: Stats): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}
