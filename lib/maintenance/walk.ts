import path from 'node:path';
import type { Stats } from 'node:fs';
import { readFailure, type ConfinedFs } from '../fs/confined';
import { decodeEntryHeader, entryHeaderLength, type DecodeFailure, type EntryHeader } from '../store/codec';
import { parseRawName } from '../store/image-store';
import { isSafeName, isShardName, NFS_SILLY_PREFIX, SIDECAR_SUFFIX, TEMP_PREFIX } from '../store/layout';
import { errorCode } from '../util/errors';
import { mapLimit } from '../util/pool';
import type { Maintenance } from './context';

/**
 * Streaming walk of an app's store: one first-level shard folder at a time,
 * each file classified by its name and type and handed on, so memory stays
 * flat from ten thousand to ten million entries. Plain listings of bounded
 * shard folders (the tree's shape is fixed: no glob patterns are needed),
 * many lstat calls in flight (each is a round trip on NFS). It never follows
 * or descends into a link: folders are listed through the confined
 * filesystem, which opens each one without following links and checks where
 * it is, and anything that is not what the library writes there is reported
 * as foreign (a folder swapped for a link between lstat and listing too).
 */
export type StoreFile =
  | { type: 'entry'; path: string; namespace: string; hash: string; stats: Stats }
  | { type: 'image-sidecar'; path: string; namespace: string; hash: string; stats: Stats }
  | { type: 'image-raw'; path: string; namespace: string; hash: string; checksum: string; extension: string; stats: Stats }
  | { type: 'temp'; path: string; stats: Stats }
  /** `.nfsXXXX` files: a client's silly-renamed open file. Never ours to touch. */
  | { type: 'nfs-silly'; path: string; stats: Stats }
  /** Anything the library did not write there: a link, an odd name, a folder where a file belongs, a FIFO. */
  | { type: 'foreign'; path: string; stats: Stats };

export interface WalkProgress {
  /** First-level shard folders done and in all (a stable unit for a progress bar). */
  onShard?(done: number, total: number): void;
}

/** Concurrency of the walk and of the per-file work callers do. */
const LEAVES_IN_FLIGHT = 32;
export const FILES_IN_FLIGHT = 32;
const ENTRY_NAME = /^([0-9a-f]{16})\.entry$/;
const SIDECAR_NAME = /^([0-9a-f]{16})\.json$/;

/** The files of one leaf folder, together: an image's sidecar and raw files are judged side by side. */
export interface StoreFolder {
  dir: string;
  files: StoreFile[];
}

type Area = 'entries' | 'images';
interface Shard {
  dir: string;
  area: Area;
  namespace: string;
}

/**
 * Yields the leaf folders of one first-level shard at a time (at most 256
 * folders: a bounded batch whatever the store's size), so that callers can
 * work on many files in flight. Strays above the shard levels come first,
 * as their own batch.
 */
export async function* walkStore(m: Maintenance, progress: WalkProgress = {}): AsyncGenerator<StoreFolder[]> {
  const strays: StoreFolder[] = [];
  const namespaces: Shard[] = [];
  for (const [area, base] of [
    ['entries', m.layout.entriesRoot],
    ['images', m.layout.imagesRoot],
  ] as const) {
    const found = await subfolders(m.fs, base, isSafeName, strays);
    for (const dir of found) namespaces.push({ dir, area, namespace: path.basename(dir) });
  }
  const shards: Shard[] = [];
  for (const ns of namespaces) {
    for (const dir of await subfolders(m.fs, ns.dir, isShardName, strays)) shards.push({ ...ns, dir });
  }
  if (strays.length > 0) yield strays;
  let done = 0;
  for (const shard of shards) {
    yield await walkShard(m.fs, shard);
    progress.onShard?.(++done, shards.length);
  }
}

/**
 * The folders in `dir` whose names pass `expected`; every other name goes to
 * `strays` as foreign (or `.nfs`), never descended into.
 */
async function subfolders(fs: ConfinedFs, dir: string, expected: (name: string) => boolean, strays: StoreFolder[]): Promise<string[]> {
  const names = await listOrStray(fs, dir, strays);
  const stats = await mapLimit(names, LEAVES_IN_FLIGHT, (name) => lstatOrNull(fs, path.join(dir, name)));
  const folders: string[] = [];
  const odd: StoreFile[] = [];
  names.forEach((name, i) => {
    const s = stats[i];
    if (!s) return;
    const full = path.join(dir, name);
    if (s.isDirectory() && expected(name)) folders.push(full);
    else odd.push(strayOf(full, s));
  });
  if (odd.length > 0) strays.push({ dir, files: odd });
  return folders.sort();
}

async function walkShard(fs: ConfinedFs, shard: Shard): Promise<StoreFolder[]> {
  const folders: StoreFolder[] = [];
  const leaves = await subfolders(fs, shard.dir, isShardName, folders);
  const read = await mapLimit(leaves, LEAVES_IN_FLIGHT, (leaf) => readLeaf(fs, leaf, shard, folders));
  return [...folders, ...read];
}

async function readLeaf(fs: ConfinedFs, dir: string, shard: Shard, strays: StoreFolder[]): Promise<StoreFolder> {
  const names = await listOrStray(fs, dir, strays);
  const files = await mapLimit(names, FILES_IN_FLIGHT, async (name) => {
    const file = path.join(dir, name);
    const stats = await lstatOrNull(fs, file);
    return stats ? classify(file, stats, shard) : undefined;
  });
  return { dir, files: files.filter((f): f is StoreFile => f !== undefined) };
}

function classify(file: string, stats: Stats, shard: Shard): StoreFile {
  const name = path.basename(file);
  if (name.startsWith(NFS_SILLY_PREFIX) || !stats.isFile()) return strayOf(file, stats);
  if (name.startsWith(TEMP_PREFIX)) return { type: 'temp', path: file, stats };
  const { namespace } = shard;
  if (shard.area === 'entries') {
    const m = ENTRY_NAME.exec(name);
    return m ? { type: 'entry', path: file, namespace, hash: m[1]!, stats } : { type: 'foreign', path: file, stats };
  }
  const sidecar = SIDECAR_NAME.exec(name);
  if (sidecar && name.endsWith(SIDECAR_SUFFIX)) return { type: 'image-sidecar', path: file, namespace, hash: sidecar[1]!, stats };
  const raw = parseRawName(name);
  return raw ? { type: 'image-raw', path: file, namespace, ...raw, stats } : { type: 'foreign', path: file, stats };
}

function strayOf(file: string, stats: Stats): StoreFile {
  if (path.basename(file).startsWith(NFS_SILLY_PREFIX)) return { type: 'nfs-silly', path: file, stats };
  return { type: 'foreign', path: file, stats };
}

/**
 * A folder's names. A folder that is gone lists nothing; one that turned
 * out not to be a real folder of ours (swapped for a link, a file) is a
 * foreign stray. Shard folders are bounded (256 names above the leaves, a
 * few hundred files in a leaf), so one listing each keeps memory flat.
 */
async function listOrStray(fs: ConfinedFs, dir: string, strays: StoreFolder[]): Promise<string[]> {
  try {
    return (await fs.list(dir)).sort();
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    if (readFailure(error) === 'not-a-file' || readFailure(error) === 'absent') {
      const stats = await lstatOrNull(fs, dir);
      if (stats) strays.push({ dir: path.dirname(dir), files: [{ type: 'foreign', path: dir, stats }] });
      return [];
    }
    throw error;
  }
}

export async function lstatOrNull(fs: ConfinedFs, file: string): Promise<Stats | null> {
  try {
    return await fs.lstat(file);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
}

/** Why an entry's header could not be used: its own damage, or the volume's (then nothing is decided about it). */
export type HeaderFailure = DecodeFailure | 'absent' | 'not-a-file' | 'too-large' | 'unreadable';

export type HeaderRead = { ok: true; header: EntryHeader; fileLength: number } | { ok: false; reason: HeaderFailure; error?: string };

/**
 * Reads just the prefix and header of an entry (one open, one or two reads).
 * An I/O error other than "absent" is `unreadable`: the entry may be fine,
 * and no destructive decision may be taken about it.
 */
export async function readEntryHeader(m: Maintenance, file: string): Promise<HeaderRead> {
  let head: Buffer;
  try {
    head = await m.fs.readFile(file, { maxBytes: m.settings.maxEntryBytes, declared: entryHeaderLength, firstRead: 4096 });
  } catch (error) {
    const failure = readFailure(error);
    if (failure) return { ok: false, reason: failure };
    return { ok: false, reason: 'unreadable', error: errorCode(error) ?? String(error) };
  }
  return decodeEntryHeader(head);
}

/** The headers of a batch's entries, read FILES_IN_FLIGHT at a time, by path. */
export async function readHeaders(m: Maintenance, batch: StoreFolder[]): Promise<Map<string, HeaderRead>> {
  const entries = entriesOf(batch);
  const reads = await mapLimit(entries, FILES_IN_FLIGHT, (f) => readEntryHeader(m, f.path));
  return new Map(entries.map((f, i) => [f.path, reads[i]!]));
}

export function entriesOf(batch: StoreFolder[]): Array<Extract<StoreFile, { type: 'entry' }>> {
  const out: Array<Extract<StoreFile, { type: 'entry' }>> = [];
  for (const folder of batch) for (const f of folder.files) if (f.type === 'entry') out.push(f);
  return out;
}

export function hasImages(folder: StoreFolder): boolean {
  return folder.files.some((f) => f.type === 'image-sidecar' || f.type === 'image-raw');
}
