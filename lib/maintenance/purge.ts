import path from 'node:path';
import { listDir, readWhole } from '../store/fs';
import { hashKey } from '../store/hash';
import { ImageStore } from '../store/image-store';
import { buildNamespace, parseSegmentName, SHARED_NAMESPACE, USE_CACHE_NAMESPACE } from '../store/layout';
import { readMembers } from '../tags/compact';
import { entriesWithTags, type MemberIndex } from '../tags/members';
import { parseMemberships } from '../tags/record';
import { openTagLog, type Maintenance } from './context';
import { judgeImageFolder } from './images';
import type { LockGuard } from './lock';
import { unlinkIfPresent } from './verify';
import { hasImages, readEntryHeader, readHeaders, walkStore, type HeaderRead, type StoreFolder, type WalkProgress } from './walk';

export interface PurgeSelection {
  tags?: string[];
  /** Route paths: the entries `revalidatePath(path)` would hit (their `_N_T_` tags). */
  paths?: string[];
  kinds?: string[];
  /** Only entries written longer ago than this (ms). */
  olderThanMs?: number;
  keys?: string[];
  /** Only entries of these builds (their BUILD_IDs). */
  builds?: string[];
  all?: boolean;
  /** Find tagged entries by walking the volume instead of the tag index. */
  scan?: boolean;
}

export interface PurgeResult {
  dryRun: boolean;
  /** How entries were found: the tag index, a full walk, or direct key paths. */
  method: 'index' | 'scan' | 'keys';
  matched: number;
  deleted: number;
  bytes: number;
  /** Tags recorded as invalidated in the tag log (so no replica serves an entry written before now). */
  invalidated: string[];
  /** Up to 20 of the matched files, relative to the root. */
  sample: string[];
}

export class PurgeUsageError extends Error {}

/** The implicit tags Next derives for a path, as `revalidatePath` sends them. */
export function tagsForPath(route: string): string[] {
  const normalized = route.startsWith('/') ? route : `/${route}`;
  return normalized === '/' ? ['_N_T_/', '_N_T_/index'] : [`_N_T_${normalized}`];
}

/**
 * Deletes the selected entries. Selectors combine: an entry goes when it
 * matches every one given (any of the tags, any of the kinds, ...). A purge
 * by tag or path first records the invalidation in the tag log, so replicas
 * stop serving those entries even before the files are gone, then finds
 * them through the tag index (or a full walk with `scan`), confirming each
 * entry's own tags before deleting it.
 */
export async function purgeEntries(m: Maintenance, selection: PurgeSelection, dryRun: boolean, guard: LockGuard, progress?: WalkProgress): Promise<PurgeResult> {
  const tags = [...(selection.tags ?? []), ...(selection.paths ?? []).flatMap(tagsForPath)];
  const builds = selection.builds?.length ? new Set(selection.builds.map((id) => buildNamespace(id, hashKey))) : undefined;
  const hasSelector = tags.length > 0 || (selection.kinds?.length ?? 0) > 0 || selection.olderThanMs !== undefined || (selection.keys?.length ?? 0) > 0 || builds !== undefined || selection.all === true;
  if (!hasSelector) throw new PurgeUsageError('purge needs a selector: --tag, --path, --kind, --older-than, --key, --build or --all');
  const result: PurgeResult = { dryRun, method: 'scan', matched: 0, deleted: 0, bytes: 0, invalidated: [], sample: [] };
  const now = m.clock.now();
  const take = async (file: string, size: number): Promise<void> => {
    result.matched++;
    if (result.sample.length < 20) result.sample.push(path.relative(m.layout.root, file));
    if (dryRun) return;
    guard.check();
    if (await unlinkIfPresent(m, file)) {
      result.deleted++;
      result.bytes += size;
    }
  };

  if (tags.length > 0 && !dryRun) {
    const log = await openTagLog(m);
    await log.invalidate(tags);
    await log.close();
    result.invalidated = tags;
  }

  const wantedTags = new Set(tags);
  const kinds = selection.kinds?.length ? new Set(selection.kinds) : undefined;
  const matchesHeader = (header: { kind: string; tags: string[]; writtenAt: number }, namespace: string): boolean =>
    (!builds || builds.has(namespace)) &&
    (wantedTags.size === 0 || header.tags.some((t) => wantedTags.has(t))) &&
    (!kinds || kinds.has(header.kind)) &&
    (selection.olderThanMs === undefined || now - header.writtenAt > selection.olderThanMs);

  if (selection.keys?.length) {
    result.method = 'keys';
    const images = new ImageStore(m.fs, m.layout, { writer: m.writer, fsync: false });
    for (const key of selection.keys) {
      const hash = hashKey(key);
      for (const namespace of [SHARED_NAMESPACE, USE_CACHE_NAMESPACE]) {
        const file = m.layout.entryPath(hash, namespace);
        const read = await readEntryHeader(m.fs, file);
        if (read.ok && read.header.key === key && matchesHeader(read.header, namespace)) await take(file, read.fileLength);
      }
      if (wantedTags.size === 0 && (!kinds || kinds.has('IMAGE'))) {
        for (const namespace of await listDir(m.fs, m.layout.imagesRoot)) {
          if (builds && !builds.has(namespace)) continue;
          const present = await readWhole(m.fs, images.sidecarPath(hash, namespace)).then(() => true, () => false);
          if (!present) continue;
          result.matched++;
          if (!dryRun && (await images.remove(hash, namespace))) result.deleted++;
        }
      }
    }
    return result;
  }

  if (wantedTags.size > 0 && !selection.scan) {
    result.method = 'index';
    for (const id of await taggedEntries(m, tags)) {
      const [namespace, hash] = id.split('/') as [string, string];
      const file = m.layout.entryPath(hash, namespace);
      const read = await readEntryHeader(m.fs, file);
      if (read.ok && matchesHeader(read.header, namespace)) await take(file, read.fileLength);
    }
    return result;
  }

  const purgeFolder = async (folder: StoreFolder, headers: Map<string, HeaderRead>): Promise<void> => {
    for (const file of folder.files) {
      if (file.type !== 'entry') continue;
      const read = headers.get(file.path);
      if (read?.ok && matchesHeader(read.header, file.namespace)) await take(file.path, file.stats.size);
    }
    if (wantedTags.size > 0 || (kinds && !kinds.has('IMAGE')) || !hasImages(folder)) return;
    for (const pair of (await judgeImageFolder(m, folder)).pairs) {
      if (builds && !builds.has(pair.sidecarFile.namespace)) continue;
      if (selection.olderThanMs !== undefined && now - pair.sidecar.lastModified <= selection.olderThanMs) continue;
      // The sidecar first: once it is gone no reader is sent to the raw file.
      await take(pair.sidecarFile.path, pair.raw.stats.size);
      if (!dryRun) await unlinkIfPresent(m, pair.raw.path);
    }
  };
  for await (const batch of walkStore(m, progress)) {
    const headers = await readHeaders(m, batch);
    for (const folder of batch) await purgeFolder(folder, headers);
  }
  return result;
}

/**
 * Entries (`<namespace>/<hash>`) that carry any of `tags`, from the tag
 * index: the folded members snapshot plus the member segments' unfolded
 * tails. Reads the index only, never the store.
 */
export async function taggedEntries(m: Maintenance, tags: string[]): Promise<string[]> {
  const index: MemberIndex = (await readMembers(m.fs, m.layout)) ?? { members: new Map(), folded: new Map() };
  for (const name of await listDir(m.fs, m.layout.membersDir)) {
    if (!parseSegmentName(name)) continue;
    const bytes = await readWhole(m.fs, path.join(m.layout.membersDir, name), index.folded.get(name) ?? 0).catch(() => undefined);
    if (!bytes) continue;
    for (const record of parseMemberships(bytes).records) {
      const id = `${record.ns}/${record.hash}`;
      const set = index.members.get(id) ?? new Set<string>();
      for (const tag of record.tags) set.add(tag);
      index.members.set(id, set);
    }
  }
  return entriesWithTags(index, tags);
}
