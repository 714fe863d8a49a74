import path from 'node:path';
import { errorCode, listDir } from '../store/fs';
import { parseSegmentName } from '../store/layout';
import { leaseMtime, readSnapshot } from '../tags/compact';
import type { Maintenance } from './context';
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
    /** Past their cacheControl.expire: gc deletes them. */
    expired: number;
    unreadable: number;
    oldestWrittenAt: string | null;
    newestWrittenAt: string | null;
  };
  images: { total: Tally; orphans: Tally; broken: number };
  shards: { folders: number; largest: { dir: string | null; files: number } };
  debris: { temp: Tally; foreign: number; nfsSilly: number };
  /** Build namespaces, most recently served first. */
  builds: BuildInfo[];
  tagLog: {
    segments: number;
    segmentBytes: number;
    memberSegments: number;
    memberSegmentBytes: number;
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

/** One streaming pass over the store plus a look at the tag log. Read-only, no lock. */
export async function collectStats(m: Maintenance, progress?: WalkProgress): Promise<StoreStats> {
  const now = m.clock.now();
  const stats: StoreStats = {
    root: m.layout.root,
    app: m.layout.app,
    entries: { total: tally(), byKind: {}, byNamespace: {}, expired: 0, unreadable: 0, oldestWrittenAt: null, newestWrittenAt: null },
    images: { total: tally(), orphans: tally(), broken: 0 },
    shards: { folders: 0, largest: { dir: null, files: 0 } },
    debris: { temp: tally(), foreign: 0, nfsSilly: 0 },
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
        add((stats.entries.byKind[header.kind] ??= tally()), file.stats.size);
        add((stats.entries.byNamespace[file.namespace] ??= tally()), file.stats.size);
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
  const snapshot = await readSnapshot(m.fs, m.layout, now);
  const writers = await listDir(m.fs, m.layout.writersDir);
  let alive = 0;
  for (const writer of writers) {
    const mtime = await leaseMtime(m.fs, m.layout.writerLease(writer)).catch(() => undefined);
    if (mtime !== undefined && now - mtime <= m.settings.leaseTimeoutMs) alive++;
  }
  return {
    segments: segments.count,
    segmentBytes: segments.bytes,
    memberSegments: members.count,
    memberSegmentBytes: members.bytes,
    snapshotTags: snapshot?.state.size ?? 0,
    snapshotRecords: snapshot?.records ?? 0,
    lastCompaction: snapshot ? new Date(m.clock.toLocal(snapshot.createdAt)).toISOString() : null,
    writers: writers.length,
    writersAlive: alive,
  };
}

async function sizes(m: Maintenance, dir: string): Promise<Tally> {
  const t = tally();
  for (const name of await listDir(m.fs, dir)) {
    if (!parseSegmentName(name)) continue;
    try {
      add(t, (await m.fs.lstat(path.join(dir, name))).size);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
    }
  }
  return t;
}
