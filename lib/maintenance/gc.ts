import type { LockGuard } from '../fs/lock';
import type { Maintenance } from './context';
import { buildsKeptBeyond, buildsToDrop, listBuilds, removeBuild, type KeptReason } from './builds';
import { openTagLog } from './context';
import { leaseFiles, metadataTemps } from './debris';
import { judgeImageFolder } from './images';
import { isPastExpire } from './stats';
import { hasImages, readHeaders, walkStore, type HeaderRead, type StoreFolder, type WalkProgress } from './walk';

export interface GcOptions {
  dryRun: boolean;
  /** Entries past `expire` by more than this are deleted. */
  graceMs: number;
  /** Byte budget for page/fetch entries; the oldest-written go first. */
  maxBytes?: number | undefined;
  /** Byte budget for optimized images; the least recently used go first. */
  imageMaxBytes?: number | undefined;
  /** Temp files and orphan images older than this are debris. */
  debrisAgeMs: number;
  /** Keep the namespaces of this many most recently served builds (and any build served right now). */
  keepBuilds?: number | undefined;
}

export interface GcResult {
  dryRun: boolean;
  expired: { count: number; bytes: number };
  invalidated: { count: number; bytes: number };
  overBudget: { count: number; bytes: number };
  images: { evicted: number; bytes: number; orphans: number; broken: number };
  debris: { count: number; bytes: number };
  kept: { entries: number; bytes: number; images: number; imageBytes: number };
  /** Entries stamped further in the future than the allowed clock skew (they would be immune to invalidation). */
  futureDated: { count: number; bytes: number };
  /** Volume time below which no entry remains; lets compaction drop older tag marks. */
  watermark: number;
  /** Build namespaces dropped by keepBuilds, with what was left in place (links, unreadable folders). */
  buildsDropped: Array<{ namespace: string; files: number; bytes: number; skipped: string[] }>;
  /**
   * Builds beyond keepBuilds that were kept: served within the lease timeout, or whose marker
   * could not be read (EACCES, EIO, ESTALE: it may be served now, so it is never dropped).
   */
  buildsKept: Array<{ namespace: string; reason: KeptReason }>;
  /**
   * false when part of the tag state could not be read: then nothing is deleted for a tag
   * invalidation (it might be a wrong one), only for expiry, budgets and debris.
   */
  tagStateComplete: boolean;
  /** Entries and image files that could not be read: left alone. */
  unreadable: number;
  /** Regeneration leases older than the debris age (their holder died mid-render). */
  leasesRemoved: number;
}

/** Histogram bucket for the approximate LRU: constant memory whatever the number of files. */
const BUCKET_MS = 3_600_000;

/**
 * Enforces limits in two streaming passes. Pass 1 deletes what is dead
 * (past expire plus grace, invalidated by a tag, debris, orphans, broken
 * pairs) and builds two age histograms of what stays: entries by write time,
 * images by last use (their raw file's mtime, see Runtime.noteImageUse).
 * From them, a cutoff time per budget; pass 2 deletes what is older. Deleting
 * while replicas serve is safe: a reader racing a delete gets a miss.
 */
export async function collectGarbage(m: Maintenance, options: GcOptions, guard: LockGuard, progress?: WalkProgress): Promise<GcResult> {
  const tags = await openTagLog(m);
  const now = m.clock.now();
  const result: GcResult = {
    dryRun: options.dryRun,
    expired: { count: 0, bytes: 0 },
    invalidated: { count: 0, bytes: 0 },
    overBudget: { count: 0, bytes: 0 },
    images: { evicted: 0, bytes: 0, orphans: 0, broken: 0 },
    debris: { count: 0, bytes: 0 },
    kept: { entries: 0, bytes: 0, images: 0, imageBytes: 0 },
    futureDated: { count: 0, bytes: 0 },
    watermark: 0,
    buildsDropped: [],
    buildsKept: [],
    tagStateComplete: tags.complete,
    unreadable: 0,
    leasesRemoved: 0,
  };
  if (options.keepBuilds !== undefined) {
    const builds = await listBuilds(m);
    result.buildsKept = buildsKeptBeyond(builds, options.keepBuilds);
    for (const build of buildsToDrop(builds, options.keepBuilds)) {
      const removed = options.dryRun ? { files: 0, bytes: 0, skipped: [] } : await removeBuild(m, build.namespace, guard);
      result.buildsDropped.push({ namespace: build.namespace, ...removed });
    }
  }
  const remove = async (file: string): Promise<boolean> => {
    if (options.dryRun) return true;
    guard.check();
    return m.fs.unlink(file);
  };
  const entryAges: Histogram = new Map();
  const imageAges: Histogram = new Map();

  // Pass 1: delete what is dead, histogram what stays.
  const sweep = async (folder: StoreFolder, headers: Map<string, HeaderRead>): Promise<void> => {
    for (const file of folder.files) {
      if (file.type === 'temp' && now - file.stats.mtimeMs > options.debrisAgeMs) {
        if (await remove(file.path)) bump(result.debris, file.stats.size);
      } else if (file.type === 'entry') {
        const read = headers.get(file.path);
        if (!read?.ok) {
          // Damage is verify's business, not gc's; what cannot be read is never judged.
          if (read?.reason === 'unreadable') result.unreadable++;
          continue;
        }
        const { header } = read;
        if (header.writtenAt > now + m.settings.maxClockSkewMs) {
          if (await remove(file.path)) bump(result.futureDated, file.stats.size);
        } else if (isPastExpire(header.writtenAt, header.cacheControl?.expire, now, options.graceMs)) {
          if (await remove(file.path)) bump(result.expired, file.stats.size);
        } else if (tags.complete && tags.state.verdict(header.tags, header.writtenAt, now) === 'expired') {
          if (await remove(file.path)) bump(result.invalidated, file.stats.size);
        } else {
          addTo(entryAges, header.writtenAt, file.stats.size);
        }
      }
    }
    if (!hasImages(folder)) return;
    const judged = await judgeImageFolder(m, folder);
    for (const orphan of judged.orphans) {
      if (now - orphan.stats.mtimeMs > options.debrisAgeMs && (await remove(orphan.path))) result.images.orphans++;
    }
    for (const broken of judged.broken) if (await remove(broken.path)) result.images.broken++;
    result.unreadable += judged.unreadable.length;
    for (const pair of judged.pairs) addTo(imageAges, pair.raw.stats.mtimeMs, pair.raw.stats.size);
  };
  for await (const batch of walkStore(m, progress)) {
    const headers = await readHeaders(m, batch);
    for (const folder of batch) await sweep(folder, headers);
  }
  for (const file of await metadataTemps(m)) {
    if (now - file.mtimeMs > options.debrisAgeMs && (await remove(file.path))) bump(result.debris, 0);
  }
  for (const lease of await leaseFiles(m)) {
    if (now - lease.mtimeMs > options.debrisAgeMs && (await remove(lease.path))) result.leasesRemoved++;
  }

  // Pass 2: delete what is older than each budget's cutoff.
  const entryCutoff = cutoffFor(entryAges, options.maxBytes);
  const imageCutoff = cutoffFor(imageAges, options.imageMaxBytes);
  const trim = async (folder: StoreFolder, headers: Map<string, HeaderRead>): Promise<void> => {
    for (const file of folder.files) {
      if (file.type !== 'entry' || entryCutoff === undefined) continue;
      const read = headers.get(file.path);
      if (read?.ok && read.header.writtenAt < entryCutoff && (await remove(file.path))) bump(result.overBudget, file.stats.size);
    }
    if (imageCutoff === undefined || !hasImages(folder)) return;
    for (const pair of (await judgeImageFolder(m, folder)).pairs) {
      if (pair.raw.stats.mtimeMs >= imageCutoff) continue;
      // The sidecar first: once it is gone no reader is sent to the raw file.
      if (await remove(pair.sidecarFile.path)) {
        await remove(pair.raw.path);
        result.images.evicted++;
        result.images.bytes += pair.raw.stats.size;
      }
    }
  };
  if (entryCutoff !== undefined || imageCutoff !== undefined) {
    for await (const batch of walkStore(m)) {
      const headers = entryCutoff === undefined ? new Map<string, HeaderRead>() : await readHeaders(m, batch);
      for (const folder of batch) await trim(folder, headers);
    }
  }

  for (const [bucket, tally] of entryAges) {
    if (entryCutoff !== undefined && bucket * BUCKET_MS < entryCutoff) continue;
    result.kept.entries += tally.count;
    result.kept.bytes += tally.bytes;
  }
  for (const [bucket, tally] of imageAges) {
    if (imageCutoff !== undefined && bucket * BUCKET_MS < imageCutoff) continue;
    result.kept.images += tally.count;
    result.kept.imageBytes += tally.bytes;
  }
  result.watermark = watermarkOf(entryAges, entryCutoff, now);
  // An entry that could not be read is not in the histogram: a watermark past it could let compaction
  // drop the tag marks that still judge it. The watermark then stays where it was.
  if (!options.dryRun && result.unreadable === 0) {
    guard.check();
    await m.fs.writeAtomic(m.layout.watermark, [Buffer.from(`${result.watermark}\n`)], { fsync: true });
  }
  await tags.close();
  return result;
}

function bump(t: { count: number; bytes: number }, bytes: number): void {
  t.count++;
  t.bytes += bytes;
}

type Histogram = Map<number, { count: number; bytes: number }>;

function addTo(histogram: Histogram, time: number, bytes: number): void {
  const bucket = Math.floor(time / BUCKET_MS);
  const tally = histogram.get(bucket) ?? { count: 0, bytes: 0 };
  tally.count++;
  tally.bytes += bytes;
  histogram.set(bucket, tally);
}

/**
 * The time before which everything goes so that what stays fits the budget:
 * walk the buckets from newest to oldest, keep whole buckets while they fit.
 * Approximate by one bucket (an hour), which is what makes it constant-memory.
 */
function cutoffFor(histogram: Histogram, budget: number | undefined): number | undefined {
  if (budget === undefined) return undefined;
  let total = 0;
  for (const bucket of [...histogram.keys()].sort((a, b) => b - a)) {
    total += histogram.get(bucket)!.bytes;
    if (total > budget) return (bucket + 1) * BUCKET_MS;
  }
  return undefined;
}

/**
 * A time older than every entry that stays (one bucket of margin): tag marks
 * older than it can no longer judge any entry, so compaction may drop them.
 * With no entry at all, an hour before now.
 */
function watermarkOf(histogram: Histogram, cutoff: number | undefined, now: number): number {
  const kept = [...histogram.keys()].filter((bucket) => cutoff === undefined || bucket * BUCKET_MS >= cutoff);
  return kept.length === 0 ? now - BUCKET_MS : (Math.min(...kept) - 1) * BUCKET_MS;
}
