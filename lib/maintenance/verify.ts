import path from 'node:path';
import { decodeEntry } from '../store/codec';
import { errorCode, listDir, readWhole, unlinkIfExists } from '../store/fs';
import { contentHash, hashKey } from '../store/hash';
import { parseSegmentName, TEMP_PREFIX } from '../store/layout';
import { compactTags, readMembers, readSnapshot } from '../tags/compact';
import { parseInvalidations, parseMemberships } from '../tags/record';
import type { Maintenance } from './context';
import { judgeImageFolder } from './images';
import type { LockGuard } from './lock';
import { entriesOf, FILES_IN_FLIGHT, hasImages, readEntryHeader, walkStore, type StoreFolder, type WalkProgress } from './walk';
import { mapLimit } from '../util/pool';

export const PROBLEMS = ['corrupt-entry', 'misplaced-entry', 'temp-debris', 'orphan-image', 'broken-image', 'foreign-file', 'log-garbage', 'corrupt-snapshot'] as const;
export type Problem = (typeof PROBLEMS)[number];

export interface VerifyOptions {
  repair: boolean;
  /** Temp files and orphan images younger than this may belong to a live writer: reported, never touched. */
  debrisAgeMs: number;
}

export interface VerifyReport {
  checked: { entries: number; images: number };
  problems: Record<Problem, number>;
  /** Up to 10 paths (relative to the root) per problem. */
  samples: Partial<Record<Problem, string[]>>;
  repaired: Record<Problem, number>;
  /** Temp files and orphans too young to judge. */
  inFlight: number;
  /** Entries of another format version (a newer or older library on the same volume): left alone. */
  foreignVersion: number;
}

const SAMPLES = 10;

/**
 * Checks every entry's checksum, format and key hash, every image pair and
 * every log segment. With `repair` (run under the maintenance lock), deletes
 * corrupt and misplaced entries, broken image sidecars, temp files and
 * orphan images older than `debrisAgeMs`, moves files it did not write into
 * `<app>/quarantine/` (never deleting them), and runs a compaction (which
 * folds around garbage lines). `.nfs*` files are never touched.
 */
export async function verifyStore(m: Maintenance, options: VerifyOptions, guard: LockGuard | undefined, progress?: WalkProgress): Promise<VerifyReport> {
  const report: VerifyReport = {
    checked: { entries: 0, images: 0 },
    problems: Object.fromEntries(PROBLEMS.map((p) => [p, 0])) as Record<Problem, number>,
    samples: {},
    repaired: Object.fromEntries(PROBLEMS.map((p) => [p, 0])) as Record<Problem, number>,
    inFlight: 0,
    foreignVersion: 0,
  };
  const now = m.clock.now();
  const found = async (problem: Problem, file: string, fix?: () => Promise<boolean>) => {
    report.problems[problem]++;
    const list = (report.samples[problem] ??= []);
    if (list.length < SAMPLES) list.push(path.relative(m.layout.root, file));
    if (options.repair && fix) {
      guard?.check();
      if (await fix()) report.repaired[problem]++;
    }
  };
  const remove = (file: string) => () => unlinkIfPresent(m, file);
  const isOld = (mtimeMs: number) => now - mtimeMs > options.debrisAgeMs;

  const verifyFolder = async (folder: StoreFolder, problems: Map<string, Problem | 'foreign-version' | undefined>): Promise<void> => {
    for (const file of folder.files) {
      switch (file.type) {
        case 'entry': {
          report.checked.entries++;
          const problem = problems.get(file.path);
          if (problem === 'foreign-version') report.foreignVersion++;
          else if (problem) await found(problem, file.path, remove(file.path));
          break;
        }
        case 'temp':
          if (isOld(file.stats.mtimeMs)) await found('temp-debris', file.path, remove(file.path));
          else report.inFlight++;
          break;
        case 'foreign':
          await found('foreign-file', file.path, () => quarantine(m, file.path));
          break;
        default:
          break;
      }
    }
    if (!hasImages(folder)) return;
    const judged = await judgeImageFolder(m, folder);
    report.checked.images += judged.pairs.length;
    for (const pair of judged.pairs) {
      const bytes = await readWhole(m.fs, pair.raw.path).catch(() => undefined);
      const ok = bytes !== undefined && bytes.length === pair.sidecar.size && contentHash(bytes) === pair.sidecar.checksum;
      if (!ok) {
        await found('broken-image', pair.sidecarFile.path, async () => {
          const removed = await unlinkIfPresent(m, pair.sidecarFile.path);
          await unlinkIfPresent(m, pair.raw.path);
          return removed;
        });
      }
    }
    for (const sidecar of judged.broken) await found('broken-image', sidecar.path, remove(sidecar.path));
    for (const orphan of judged.orphans) {
      if (isOld(orphan.stats.mtimeMs)) await found('orphan-image', orphan.path, remove(orphan.path));
      else report.inFlight++;
    }
  };
  for await (const batch of walkStore(m, progress)) {
    const entries = entriesOf(batch);
    const checks = await mapLimit(entries, FILES_IN_FLIGHT, (f) => checkEntry(m, f.path, f.hash));
    const problems = new Map(entries.map((f, i) => [f.path, checks[i]]));
    for (const folder of batch) await verifyFolder(folder, problems);
  }

  // Temp files of the small metadata files (tag head and snapshot, build markers, the root marker).
  for (const file of await metadataTemps(m)) {
    if (isOld(file.mtimeMs)) await found('temp-debris', file.path, remove(file.path));
    else report.inFlight++;
  }

  if (options.repair && guard) {
    // Compaction folds every segment; garbage lines before the folded offsets are never read again.
    const before = await segmentsWithGarbage(m);
    await compactTags(m, guard);
    const after = await segmentsWithGarbage(m);
    for (const file of before) await found('log-garbage', file);
    report.repaired['log-garbage'] = before.length - after.length;
  } else {
    for (const file of await segmentsWithGarbage(m)) await found('log-garbage', file);
  }
  await checkSnapshot(m, found);
  return report;
}

/** A pod on another library version may share the volume: its entries are neither ours to judge nor to delete. */
async function checkEntry(m: Maintenance, file: string, hash: string): Promise<'corrupt-entry' | 'misplaced-entry' | 'foreign-version' | undefined> {
  const head = await readEntryHeader(m.fs, file);
  if (!head.ok) return head.reason === 'absent' ? undefined : head.reason === 'foreign-version' ? 'foreign-version' : 'corrupt-entry';
  if (hashKey(head.header.key) !== hash) return 'misplaced-entry';
  let bytes: Buffer;
  try {
    bytes = await readWhole(m.fs, file);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  return decodeEntry(bytes, head.header.key).ok ? undefined : 'corrupt-entry';
}

/**
 * Segments holding lines that fail their checksum or shape after the
 * snapshots' folded offsets (folded garbage is never read again).
 */
async function segmentsWithGarbage(m: Maintenance): Promise<string[]> {
  const snapshot = await readSnapshot(m.fs, m.layout, m.clock.now());
  const members = await readMembers(m.fs, m.layout);
  const out: string[] = [];
  for (const [dir, parse, folded] of [
    [m.layout.invalidationsDir, parseInvalidations, snapshot?.folded],
    [m.layout.membersDir, parseMemberships, members?.folded],
  ] as const) {
    for (const name of await listDir(m.fs, dir)) {
      if (!parseSegmentName(name)) continue;
      const bytes = await readWhole(m.fs, path.join(dir, name), folded?.get(name) ?? 0).catch(() => undefined);
      if (bytes && parse(bytes).skipped > 0) out.push(path.join(dir, name));
    }
  }
  return out;
}

async function checkSnapshot(m: Maintenance, found: (problem: Problem, file: string) => Promise<void>): Promise<void> {
  try {
    const raw = await readWhole(m.fs, m.layout.tagSnapshot);
    if (raw.length > 0 && !(await readSnapshot(m.fs, m.layout, m.clock.now()))) await found('corrupt-snapshot', m.layout.tagSnapshot);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}

/** Temp files beside the metadata files, outside the shard trees the walk covers. */
export async function metadataTemps(m: Maintenance): Promise<Array<{ path: string; mtimeMs: number }>> {
  const dirs = [m.layout.root, m.layout.appDir, m.layout.tagsDir, m.layout.buildsDir, path.dirname(m.layout.seededMarker('x')), m.layout.writersDir];
  const out: Array<{ path: string; mtimeMs: number }> = [];
  for (const dir of dirs) {
    for (const name of await listDir(m.fs, dir)) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const stats = await m.fs.lstat(path.join(dir, name)).catch(() => undefined);
      if (stats?.isFile()) out.push({ path: path.join(dir, name), mtimeMs: stats.mtimeMs });
    }
  }
  return out;
}

/**
 * Moves a file (or a symlink itself, or a folder) the library did not write
 * out of the store, into `<app>/quarantine/`, for a person to look at: never
 * deleted, never followed.
 */
async function quarantine(m: Maintenance, file: string): Promise<boolean> {
  const dir = path.join(m.layout.appDir, 'quarantine');
  await m.fs.mkdir(dir, { recursive: false }).catch((error: unknown) => {
    if (errorCode(error) !== 'EEXIST') throw error;
  });
  const name = `${Date.now()}-${path.relative(m.layout.appDir, file).replace(/[\/]/g, '_')}`;
  try {
    await m.fs.rename(file, path.join(dir, name));
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}

export function unlinkIfPresent(m: Maintenance, file: string): Promise<boolean> {
  return unlinkIfExists(m.fs, file);
}
