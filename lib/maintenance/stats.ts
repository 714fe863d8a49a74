import path from 'node:path';
import { isSafeName } from '../store/layout';
import { freshMtime, listNamesIfFolder, listSegments, readSnapshot } from '../tags/files';
import { errorCode } from '../util/errors';
import type { Maintenance } from './context';
import { leaseFiles } from './debris';
import { listBuilds, type BuildInfo } from './builds';
import { judgeImageFolder } from './images';
import { hasImages, readHeaders, walkStore, type HeaderRead, type StoreFolder, type WalkProgress } from './walk';

export interface Tally {
  count: number;
  bytes: number;
}

export interface StoreStats {
  root: string;
  app: string;
  entries: {
    total: Tally;
    byKind: Record<string, Tally>;
    byNamespace: Record<string, Tally>;
    /** Namespace, then kind: what `stats --format prometheus` labels each series with. */
    byNamespaceAndKind: Record<string, Record<string, Tally>>;
    /** Past their cacheControl.expire: gc deletes them. */
    expired: number;
    /** Damaged (failed to decode) or not readable by this process. */
    unreadable: number;
    oldestWrittenAt: string | null;
    newestWrittenAt: string | null;
  };
  images: { total: Tally; orphans: Tally; broken: number; unreadable: number };
  shards: { folders: number; largest: { dir: string | null; files: number } };
  debris: { temp: Tally; foreign: number; nfsSilly: number };
  /** Regeneration leases on the volume (a pod is regenerating the entry), and those older than an hour (their holder died). */
  leases: { total: number; stale: number };
  /** Build namespaces, most recently served first. */
  builds: BuildInfo[];
  tagLog: {
    segments: number;
    segmentBytes: number;
    memberSegments: number;
    memberSegmentBytes: number;
    /** Names in the segment folders that are not segments (left alone). */
    strangers: number;
    /** "ok", "absent", or why the snapshot cannot be used. */
    snapshot: string;
    snapshotTags: number;
    snapshotRecords: number;
    lastCompaction: string | null;
    writers: number;
    writersAlive: number;
  };
}

const tally = (): Tally => ({ count: 0, bytes: 0 });
const add = (t: Tally, bytes: number) => {
  t.count++;
  t.bytes += bytes;
};

/** One streaming pass over the store plus a look at the tag log. Writes nothing, takes no lock. */
export async function collectStats(m: Maintenance, progress?: WalkProgress): Promise<StoreStats> {
  const now = m.clock.now();
  const stats: StoreStats = {
    root: m.layout.root,
    app: m.layout.app,
    entries: { total: tally(), byKind: dictionary(), byNamespace: dictionary(), byNamespaceAndKind: dictionary(), expired: 0, unreadable: 0, oldestWrittenAt: null, newestWrittenAt: null },
    images: { total: tally(), orphans: tally(), broken: 0, unreadable: 0 },
    shards: { folders: 0, largest: { dir: null, files: 0 } },
    debris: { temp: tally(), foreign: 0, nfsSilly: 0 },
    leases: await leaseStats(m, now),
    builds: await listBuilds(m),
    tagLog: await tagLogStats(m, now),
  };
  let oldest = Infinity;
  let newest = -Infinity;
  const countFolder = async (folder: StoreFolder, headers: Map<string, HeaderRead>): Promise<void> => {
    stats.shards.folders++;
    if (folder.files.length > stats.shards.largest.files) stats.shards.largest = { dir: path.relative(m.layout.root, folder.dir), files: folder.files.length };
    for (const file of folder.files) {
      if (file.type === 'temp') add(stats.debris.temp, file.stats.size);
      else if (file.type === 'foreign') stats.debris.foreign++;
      else if (file.type === 'nfs-silly') stats.debris.nfsSilly++;
      else if (file.type === 'entry') {
        const read = headers.get(file.path);
        if (!read?.ok) {
          if (read?.reason !== 'absent') stats.entries.unreadable++;
          continue;
        }
        const { header } = read;
        add(stats.entries.total, file.stats.size);
        // A kind is whatever the file says: the tallies have no prototype for a "__proto__" to reach.
        add((stats.entries.byKind[header.kind] ??= tally()), file.stats.size);
        add((stats.entries.byNamespace[file.namespace] ??= tally()), file.stats.size);
        add(((stats.entries.byNamespaceAndKind[file.namespace] ??= dictionary())[header.kind] ??= tally()), file.stats.size);
        if (isPastExpire(header.writtenAt, header.cacheControl?.expire, now, 0)) stats.entries.expired++;
        oldest = Math.min(oldest, header.writtenAt);
        newest = Math.max(newest, header.writtenAt);
      }
    }
    if (!hasImages(folder)) return;
    const judged = await judgeImageFolder(m, folder);
    for (const pair of judged.pairs) add(stats.images.total, pair.raw.stats.size);
    for (const orphan of judged.orphans) add(stats.images.orphans, orphan.stats.size);
    stats.images.broken += judged.broken.length;
    stats.images.unreadable += judged.unreadable.length;
  };
  for await (const batch of walkStore(m, progress)) {
    const headers = await readHeaders(m, batch);
    for (const folder of batch) await countFolder(folder, headers);
  }
  if (Number.isFinite(oldest)) stats.entries.oldestWrittenAt = new Date(m.clock.toLocal(oldest)).toISOString();
  if (Number.isFinite(newest)) stats.entries.newestWrittenAt = new Date(m.clock.toLocal(newest)).toISOString();
  return stats;
}

export function isPastExpire(writtenAt: number, expireSeconds: number | undefined, now: number, graceMs: number): boolean {
  return typeof expireSeconds === 'number' && writtenAt + expireSeconds * 1000 + graceMs < now;
}

async function tagLogStats(m: Maintenance, now: number): Promise<StoreStats['tagLog']> {
  const segments = await sizes(m, m.layout.invalidationsDir);
  const members = await sizes(m, m.layout.membersDir);
  const snapshot = await readSnapshot(m, now);
  const writers = (await listNamesIfFolder(m.fs, m.layout.writersDir)).filter(isSafeName);
  let alive = 0;
  for (const writer of writers) {
    const mtime = await freshMtime(m.fs, m.layout.writerLease(writer)).catch(() => undefined);
    if (mtime !== undefined && now - mtime <= m.settings.leaseTimeoutMs) alive++;
  }
  const ok = snapshot.status === 'ok' ? snapshot.snapshot : undefined;
  return {
    segments: segments.count,
    segmentBytes: segments.bytes,
    memberSegments: members.count,
    memberSegmentBytes: members.bytes,
    strangers: segments.strangers + members.strangers,
    snapshot: snapshot.status === 'damaged' ? `damaged: ${snapshot.reason}` : snapshot.status,
    snapshotTags: ok?.state.size ?? 0,
    snapshotRecords: ok?.records ?? 0,
    lastCompaction: ok ? new Date(m.clock.toLocal(ok.createdAt)).toISOString() : null,
    writers: writers.length,
    writersAlive: alive,
  };
}

async function sizes(m: Maintenance, dir: string): Promise<Tally & { strangers: number }> {
  const t = { ...tally(), strangers: 0 };
  const listed = await listSegments(m.fs, dir, true);
  t.strangers = listed.strangers.length;
  for (const name of listed.segments) {
    try {
      add(t, (await m.fs.lstat(path.join(dir, name))).size);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
    }
  }
  return t;
}

async function leaseStats(m: Maintenance, now: number): Promise<StoreStats['leases']> {
  const leases = await leaseFiles(m);
  return { total: leases.length, stale: leases.filter((l) => now - l.mtimeMs > STALE_LEASE_MS).length };
}

/** A lease lives seconds; one an hour old belongs to a process that died mid-render (gc removes it). */
const STALE_LEASE_MS = 60 * 60_000;

/** A record with no prototype: names read from the volume are keys, never inherited properties. */
function dictionary<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}
