import path from 'node:path';
import type { Stats } from 'node:fs';
import { decodeEntryHeader, entryHeaderLength, type EntryHeader, type DecodeFailure } from '../store/codec';
import { errorCode, readWhole, type VolumeFs } from '../store/fs';
import { parseRawName, SIDECAR_SUFFIX } from '../store/image-store';
import { ENTRY_SUFFIX, TEMP_PREFIX } from '../store/layout';
import type { Maintenance } from './context';

/**
 * Streaming walk of an app's store: one directory open at a time, each file
 * classified by its name and handed on, so memory stays flat from ten
 * thousand to ten million entries. Uses plain opendir (no glob patterns are
 * needed: the tree's shape is fixed) and lstat; it never follows a symlink.
 */
export type StoreFile =
  | { type: 'entry'; path: string; namespace: string; hash: string; stats: Stats }
  | { type: 'image-sidecar'; path: string; hash: string; stats: Stats }
  | { type: 'image-raw'; path: string; hash: string; checksum: string; extension: string; stats: Stats }
  | { type: 'temp'; path: string; stats: Stats }
  /** `.nfsXXXX` files: a client's silly-renamed open file. Never ours to touch. */
  | { type: 'nfs-silly'; path: string; stats: Stats }
  /** Anything the library did not write there: a symlink, an odd name, a folder where a file belongs. */
  | { type: 'foreign'; path: string; stats: Stats };

export interface WalkProgress {
  /** First-level shard folders done and in all (a stable unit for a progress bar). */
  onShard?(done: number, total: number): void;
}

const SHARD = /^[0-9a-f]{2}$/;
const ENTRY_NAME = /^([0-9a-f]{16})\.entry$/;

/** The files of one leaf folder, together: an image's sidecar and raw files are judged side by side. */
export interface StoreFolder {
  dir: string;
  files: StoreFile[];
}

export async function* walkStore(m: Maintenance, progress: WalkProgress = {}): AsyncGenerator<StoreFolder> {
  const roots: Array<{ dir: string; namespace?: string }> = [];
  for (const namespace of await listNames(m.fs, path.dirname(m.layout.entriesDir()))) {
    roots.push({ dir: path.join(path.dirname(m.layout.entriesDir()), namespace), namespace });
  }
  roots.push({ dir: m.layout.imagesDir });
  const firstLevel: Array<{ dir: string; namespace?: string }> = [];
  for (const root of roots) {
    for (const name of await listNames(m.fs, root.dir)) firstLevel.push({ dir: path.join(root.dir, name), namespace: root.namespace });
  }
  let done = 0;
  for (const shard of firstLevel) {
    yield* walkShard(m.fs, shard.dir, shard.namespace);
    progress.onShard?.(++done, firstLevel.length);
  }
}

async function* walkShard(fs: VolumeFs, dir: string, namespace: string | undefined): AsyncGenerator<StoreFolder> {
  const top = await lstatOrNull(fs, dir);
  if (!top) return;
  if (!top.isDirectory() || !SHARD.test(path.basename(dir))) {
    yield { dir: path.dirname(dir), files: [{ type: 'foreign', path: dir, stats: top }] };
    return;
  }
  const strays: StoreFile[] = [];
  for await (const second of dirEntries(fs, dir)) {
    const full = path.join(dir, second);
    const stats = await lstatOrNull(fs, full);
    if (!stats) continue;
    if (!stats.isDirectory() || !SHARD.test(second)) {
      strays.push(stats.isDirectory() ? { type: 'foreign', path: full, stats } : classify(full, stats, namespace));
      continue;
    }
    const files: StoreFile[] = [];
    for await (const name of dirEntries(fs, full)) {
      const file = path.join(full, name);
      const fileStats = await lstatOrNull(fs, file);
      if (fileStats) files.push(classify(file, fileStats, namespace));
    }
    yield { dir: full, files };
  }
  // Files at the first level are never ours (temp files sit beside their target, two levels down).
  if (strays.length > 0) yield { dir, files: strays.map((f) => (f.type === 'nfs-silly' ? f : { type: 'foreign' as const, path: f.path, stats: f.stats })) };
}

function classify(file: string, stats: Stats, namespace: string | undefined): StoreFile {
  const name = path.basename(file);
  if (name.startsWith('.nfs')) return { type: 'nfs-silly', path: file, stats };
  if (!stats.isFile()) return { type: 'foreign', path: file, stats };
  if (name.startsWith(TEMP_PREFIX)) return { type: 'temp', path: file, stats };
  if (namespace !== undefined) {
    const m = ENTRY_NAME.exec(name);
    return m && name.endsWith(ENTRY_SUFFIX) ? { type: 'entry', path: file, namespace, hash: m[1]!, stats } : { type: 'foreign', path: file, stats };
  }
  if (name.endsWith(SIDECAR_SUFFIX) && /^[0-9a-f]{16}\.json$/.test(name)) return { type: 'image-sidecar', path: file, hash: name.slice(0, 16), stats };
  const raw = parseRawName(name);
  return raw ? { type: 'image-raw', path: file, ...raw, stats } : { type: 'foreign', path: file, stats };
}

async function* dirEntries(fs: VolumeFs, dir: string): AsyncGenerator<string> {
  let handle;
  try {
    handle = await fs.opendir(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return;
    throw error;
  }
  for await (const dirent of handle) yield dirent.name;
}

async function listNames(fs: VolumeFs, dir: string): Promise<string[]> {
  try {
    return (await fs.readdir(dir)).sort();
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

async function lstatOrNull(fs: VolumeFs, file: string): Promise<Stats | null> {
  try {
    return await fs.lstat(file);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
}

/** Reads just the prefix and header of an entry file (one open, one or two reads). */
export async function readEntryHeader(fs: VolumeFs, file: string): Promise<{ ok: true; header: EntryHeader; fileLength: number } | { ok: false; reason: DecodeFailure | 'absent' }> {
  let head: Buffer;
  try {
    head = await readWhole(fs, file, 0, entryHeaderLength, 4096);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return { ok: false, reason: 'absent' };
    throw error;
  }
  return decodeEntryHeader(head);
}
