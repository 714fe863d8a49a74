import path from 'node:path';
import { readFailure } from '../fs/confined';
import type { LockGuard } from '../fs/lock';
import { decodeEntry, type DecodeFailure } from '../store/codec';
import { hashKey } from '../store/hash';
import { isSafeName, NFS_SILLY_PREFIX, TEMP_PREFIX } from '../store/layout';
import { metadataTemps } from './debris';
import { compactTags } from '../tags/compact';
import { listNamesIfFolder, listSegments, readMembersSnapshot, readSegment, readSnapshot } from '../tags/files';
import { parseInvalidation, parseMembership } from '../tags/record';
import { mapLimit } from '../util/pool';
import type { Maintenance } from './context';
import { findImpostors, quarantine, type Impostor } from './impostors';
import { judgeImageFolder } from './images';
import { entriesOf, FILES_IN_FLIGHT, hasImages, lstatOrNull, readEntryHeader, walkStore, type StoreFolder, type WalkProgress } from './walk';

export const PROBLEMS = [
  'corrupt-entry',
  'misplaced-entry',
  'forged-entry',
  'future-dated-entry',
  'temp-debris',
  'orphan-image',
  'broken-image',
  'forged-image',
  'foreign-file',
  'unreadable-file',
  'log-garbage',
  'damaged-tag-file',
] as const;
export type Problem = (typeof PROBLEMS)[number];

export interface VerifyOptions {
  repair: boolean;
  /** Temp files and orphan images younger than this may belong to a live writer: reported, never touched. */
  debrisAgeMs: number;
  /** Impostor folders repair already moved into quarantine (before taking the lock: see impostors.ts). */
  impostors?: Impostor[];
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
  /**
   * Entries and raw images larger than this process's maxEntryBytes: never served with this setting,
   * but not damage either (another process may allow more), so reported and left alone.
   */
  oversize: number;
  /** `.nfs*` files (an NFS client's silly-renamed open files): never touched. */
  nfsSilly: number;
}

const SAMPLES = 10;

type EntryVerdict = Exclude<Problem, 'temp-debris' | 'orphan-image' | 'broken-image' | 'forged-image' | 'foreign-file' | 'log-garbage' | 'damaged-tag-file'> | 'foreign-version' | 'oversize' | undefined;

/**
 * Checks every entry's checksum, format, key hash, seal (with a secret) and
 * write time, every image pair and every tag log file. With `repair` (run
 * under the maintenance lock):
 *  - deletes what is certainly broken: corrupt, misplaced and future-dated
 *    entries, broken image pairs, temp files and orphan images older than
 *    `debrisAgeMs`;
 *  - moves what the library did not write, or cannot vouch for, into
 *    `<app>/quarantine/` for a person to look at, never deleting or
 *    following it: foreign files and links, entries and images whose seal
 *    fails (a wrong secret in one place must not delete a whole cache);
 *  - leaves alone what it cannot read (another UID's files, EIO): reported;
 *  - runs a compaction, which folds around garbage lines and replaces a
 *    damaged snapshot.
 * `.nfs*` files and entries of another format version are never touched.
 */
export async function verifyStore(m: Maintenance, options: VerifyOptions, guard: LockGuard | undefined, progress?: WalkProgress): Promise<VerifyReport> {
  const report: VerifyReport = {
    checked: { entries: 0, images: 0 },
    problems: Object.fromEntries(PROBLEMS.map((p) => [p, 0])) as Record<Problem, number>,
    samples: {},
    repaired: Object.fromEntries(PROBLEMS.map((p) => [p, 0])) as Record<Problem, number>,
    inFlight: 0,
    foreignVersion: 0,
    oversize: 0,
    nfsSilly: 0,
  };
  const now = m.clock.now();
  const found = async (problem: Problem, file: string, fix?: () => Promise<boolean>): Promise<void> => {
    report.problems[problem]++;
    const list = (report.samples[problem] ??= []);
    if (list.length < SAMPLES) list.push(path.relative(m.layout.root, file));
    if (options.repair && fix) {
      guard?.check();
      if (await fix()) report.repaired[problem]++;
    }
  };
  const remove = (file: string) => () => m.fs.unlink(file);
  const toQuarantine = (file: string) => () => quarantine(m, file);
  const isOld = (mtimeMs: number): boolean => now - mtimeMs > options.debrisAgeMs;
  const fixFor = (problem: Problem, file: string): (() => Promise<boolean>) | undefined => {
    if (problem === 'unreadable-file') return undefined;
    return problem === 'forged-entry' ? toQuarantine(file) : remove(file);
  };

  const verifyFolder = async (folder: StoreFolder, verdicts: Map<string, EntryVerdict>): Promise<void> => {
    for (const file of folder.files) {
      switch (file.type) {
        case 'entry': {
          report.checked.entries++;
          const verdict = verdicts.get(file.path);
          if (verdict === 'foreign-version') report.foreignVersion++;
          else if (verdict === 'oversize') report.oversize++;
          else if (verdict) await found(verdict, file.path, fixFor(verdict, file.path));
          break;
        }
        case 'temp':
          if (isOld(file.stats.mtimeMs)) await found('temp-debris', file.path, remove(file.path));
          else report.inFlight++;
          break;
        case 'foreign':
          await found('foreign-file', file.path, toQuarantine(file.path));
          break;
        case 'nfs-silly':
          report.nfsSilly++;
          break;
        default:
          break;
      }
    }
    if (hasImages(folder)) await verifyImages(m, folder, report, found, isOld, toQuarantine);
  };
  await reportImpostors(m, options, report, found);
  for await (const batch of walkStore(m, progress)) {
    const entries = entriesOf(batch);
    const verdicts = await mapLimit(entries, FILES_IN_FLIGHT, (f) => checkEntry(m, f.path, f.hash, f.namespace, now));
    const byPath = new Map(entries.map((f, i) => [f.path, verdicts[i]]));
    for (const folder of batch) await verifyFolder(folder, byPath);
  }

  // Temp files beside the metadata files (tag head and snapshot, markers, leases).
  for (const file of await metadataTemps(m)) {
    if (isOld(file.mtimeMs)) await found('temp-debris', file.path, remove(file.path));
    else report.inFlight++;
  }
  const tagProblems = await tagFileProblems(m);
  for (const { problem, file, stranger } of tagProblems) await found(problem, file, stranger ? toQuarantine(file) : undefined);
  if (options.repair && guard) {
    // Compaction folds every segment (garbage lines before the folded offsets are never read again)
    // and replaces a damaged snapshot.
    await compactTags(m, guard, { expireBefore: tagFolderPlantedAt(m, options.impostors ?? []) });
    const left = new Set((await tagFileProblems(m)).map((p) => `${p.problem}:${p.file}`));
    for (const { problem, file, stranger } of tagProblems) if (!stranger && !left.has(`${problem}:${file}`)) report.repaired[problem]++;
  }
  return report;
}

type Found = (problem: Problem, file: string, fix?: () => Promise<boolean>) => Promise<void>;

/** Folders of the app that are not real folders: repaired already (before the lock), or found now. */
async function reportImpostors(m: Maintenance, options: VerifyOptions, report: VerifyReport, found: Found): Promise<void> {
  if (options.repair) {
    for (const impostor of options.impostors ?? []) {
      await found('foreign-file', impostor.path);
      report.repaired['foreign-file']++;
    }
    return;
  }
  for (const impostor of await findImpostors(m)) await found('foreign-file', impostor.path);
}

/**
 * When a link stood in place of tags/ or tags/inval, what the folder held
 * may have invalidated entries older than the link: the compaction after
 * repair expires them (fail closed, as readers do for a tag file they cannot
 * use). Undefined when no tag folder was an impostor.
 */
function tagFolderPlantedAt(m: Maintenance, impostors: Impostor[]): number | undefined {
  const times = impostors.filter((i) => i.path === m.layout.tagsDir || i.path === m.layout.invalidationsDir).map((i) => i.mtimeMs);
  return times.length > 0 ? Math.min(...times) : undefined;
}

async function verifyImages(m: Maintenance, folder: StoreFolder, report: VerifyReport, found: Found, isOld: (mtime: number) => boolean, toQuarantine: (file: string) => () => Promise<boolean>): Promise<void> {
  const judged = await judgeImageFolder(m, folder);
  report.checked.images += judged.pairs.length;
  for (const pair of judged.pairs) {
    let bytes: Buffer;
    try {
      bytes = await m.fs.readFile(pair.raw.path, { maxBytes: m.settings.maxEntryBytes });
    } catch (error) {
      // Only a raw file known to be gone breaks the pair; one that cannot be read is left alone.
      const failure = readFailure(error);
      if (failure === 'absent') await found('broken-image', pair.sidecarFile.path, () => removePair(m, pair.sidecarFile.path, pair.raw.path));
      else if (failure === 'too-large') report.oversize++;
      else await found('unreadable-file', pair.raw.path);
      continue;
    }
    const problem = m.images.judgeRaw(pair.sidecar, bytes, pair.sidecarFile.namespace);
    if (problem === 'forged' || problem === 'unsealed') await found('forged-image', pair.sidecarFile.path, toQuarantine(pair.sidecarFile.path));
    else if (problem) await found('broken-image', pair.sidecarFile.path, () => removePair(m, pair.sidecarFile.path, pair.raw.path));
  }
  for (const sidecar of judged.broken) await found('broken-image', sidecar.path, () => m.fs.unlink(sidecar.path));
  for (const sidecar of judged.unreadable) await found('unreadable-file', sidecar.path);
  for (const orphan of judged.orphans) {
    if (isOld(orphan.stats.mtimeMs)) await found('orphan-image', orphan.path, () => m.fs.unlink(orphan.path));
    else report.inFlight++;
  }
}

/** The sidecar first (the commit point), then the raw file it named. */
async function removePair(m: Maintenance, sidecar: string, raw: string): Promise<boolean> {
  const removed = await m.fs.unlink(sidecar);
  await m.fs.unlink(raw);
  return removed;
}

/** Another format version's entries are neither ours to judge nor to delete. */
async function checkEntry(m: Maintenance, file: string, hash: string, namespace: string, now: number): Promise<EntryVerdict> {
  const head = await readEntryHeader(m, file);
  if (!head.ok) {
    if (head.reason === 'absent') return undefined;
    if (head.reason === 'foreign-version') return 'foreign-version';
    if (head.reason === 'unreadable') return 'unreadable-file';
    if (head.reason === 'too-large') return 'oversize';
    return 'corrupt-entry';
  }
  if (hashKey(head.header.key) !== hash) return 'misplaced-entry';
  let bytes: Buffer;
  try {
    bytes = await m.fs.readFile(file, { maxBytes: m.settings.maxEntryBytes });
  } catch (error) {
    const failure = readFailure(error);
    if (failure === 'absent') return undefined;
    if (failure === 'too-large') return 'oversize';
    return failure ? 'corrupt-entry' : 'unreadable-file';
  }
  const decoded = decodeEntry(bytes, head.header.key, m.entries.sealFor(namespace));
  if (!decoded.ok) return problemOf(decoded.reason);
  if (decoded.record.writtenAt > now + m.settings.maxClockSkewMs) return 'future-dated-entry';
  return undefined;
}

function problemOf(reason: DecodeFailure): EntryVerdict {
  if (reason === 'forged' || reason === 'unsealed') return 'forged-entry';
  if (reason === 'foreign-version') return 'foreign-version';
  return 'corrupt-entry';
}

interface TagFileProblem {
  problem: Problem;
  file: string;
  /** Not the library's (a link, folder or FIFO named like a segment, an odd name): quarantined by repair. */
  stranger?: boolean;
}

/**
 * The tag log's files: garbage lines after the folded offsets (folded
 * garbage is never read again), segments and snapshots that cannot be used,
 * and names in the tag folders that are not the library's.
 */
async function tagFileProblems(m: Maintenance): Promise<TagFileProblem[]> {
  const problems: TagFileProblem[] = [];
  const snapshot = await readSnapshot(m, m.clock.now());
  if (snapshot.status === 'damaged') problems.push({ problem: 'damaged-tag-file', file: m.layout.tagSnapshot });
  const members = await readMembersSnapshot(m);
  if (members.status === 'damaged') problems.push({ problem: 'damaged-tag-file', file: m.layout.membersSnapshot });
  const parsers: Array<[string, (line: string) => unknown, Map<string, number> | undefined]> = [
    [m.layout.invalidationsDir, (line: string) => parseInvalidation(line, m.seals.invalidations), snapshot.status === 'ok' ? snapshot.snapshot.folded : undefined],
    [m.layout.membersDir, (line: string) => parseMembership(line, m.seals.memberships), members.status === 'ok' ? members.index.folded : undefined],
  ];
  for (const [dir, parse, offsets] of parsers) {
    const listed = await listSegments(m.fs, dir, true);
    for (const name of listed.strangers) {
      if (!name.startsWith(NFS_SILLY_PREFIX) && !name.startsWith(TEMP_PREFIX)) problems.push({ problem: 'foreign-file', file: path.join(dir, name), stranger: true });
    }
    for (const name of listed.segments) {
      const file = path.join(dir, name);
      const read = await readSegment(m, dir, name, offsets?.get(name) ?? 0, parse);
      if (read.status === 'ok' && read.skipped > 0) problems.push({ problem: 'log-garbage', file });
      // A link, folder or FIFO named like a segment is not one. A regular file that cannot be read is left alone.
      if (read.status === 'stranger') problems.push({ problem: 'foreign-file', file, stranger: true });
      if (read.status === 'damaged') problems.push({ problem: 'damaged-tag-file', file });
    }
  }
  for (const dir of [m.layout.writersDir, m.layout.buildsDir]) {
    for (const name of await listNamesIfFolder(m.fs, dir)) {
      if (name.startsWith(NFS_SILLY_PREFIX) || name.startsWith(TEMP_PREFIX)) continue;
      // Leases and build markers are small regular files with names the library made; anything else is a stranger.
      const stats = isSafeName(name) ? await lstatOrNull(m.fs, path.join(dir, name)) : undefined;
      if (!isSafeName(name) || (stats && !stats.isFile())) problems.push({ problem: 'foreign-file', file: path.join(dir, name), stranger: true });
    }
  }
  return problems;
}
