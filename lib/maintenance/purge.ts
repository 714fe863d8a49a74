import path from 'node:path';
import type { LockGuard } from '../fs/lock';
import { readFailure } from '../fs/confined';
import { hashKey } from '../store/hash';
import { buildNamespace, isSafeName } from '../store/layout';
import { listNames, listSegments, readMembersSnapshot, readSegment } from '../tags/files';
import { emptyMembers, entriesWithTags, foldMemberships } from '../tags/members';
import { parseMembership } from '../tags/record';
import { openTagLog, type Maintenance } from './context';
import { judgeImageFolder } from './images';
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
  /** Confirms a bulk purge (everything, or everything older than zero). */
  yes?: boolean;
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
  /**
   * Tag index files that could not be read: entries they list may remain on the volume (invalidated,
   * so never served; gc removes them, or run again with --scan).
   */
  indexUnreadable: string[];
  /** Entries that could not be read to be judged: left alone. */
  unreadable: number;
}

export class PurgeUsageError extends Error {
  readonly code = 'EUSAGE';
}

/** The implicit tags Next derives for a path, as `revalidatePath` sends them. */
export function tagsForPath(route: string): string[] {
  const normalized = route.startsWith('/') ? route : `/${route}`;
  return normalized === '/' ? ['_N_T_/', '_N_T_/index'] : [`_N_T_${normalized}`];
}

/** Whether a selection deletes everything (or everything older than nothing): it needs confirming. */
export function isBulk(selection: PurgeSelection): boolean {
  const narrowed = (selection.tags?.length ?? 0) > 0 || (selection.paths?.length ?? 0) > 0 || (selection.kinds?.length ?? 0) > 0 || (selection.keys?.length ?? 0) > 0 || (selection.builds?.length ?? 0) > 0;
  if (narrowed) return false;
  return selection.all === true || (selection.olderThanMs !== undefined && selection.olderThanMs <= 0);
}

/**
 * Deletes the selected entries. Selectors combine: an entry goes when it
 * matches every one given (any of the tags, any of the kinds, ...). A purge
 * by tag or path first records the invalidation in the tag log, so replicas
 * stop serving those entries even before the files are gone, then finds
 * them through the tag index (or a full walk with `scan`), confirming each
 * entry's own tags before deleting it. A purge by key looks in every
 * namespace: pages live in their build's, fetches in `shared`, 'use cache'
 * entries in `use-cache`, images in theirs.
 */
export async function purgeEntries(m: Maintenance, selection: PurgeSelection, dryRun: boolean, guard: LockGuard, progress?: WalkProgress): Promise<PurgeResult> {
  const tags = [...(selection.tags ?? []), ...(selection.paths ?? []).flatMap(tagsForPath)];
  const builds = selection.builds?.length ? new Set(selection.builds.map((id) => buildNamespace(id))) : undefined;
  const hasSelector = tags.length > 0 || (selection.kinds?.length ?? 0) > 0 || selection.olderThanMs !== undefined || (selection.keys?.length ?? 0) > 0 || builds !== undefined || selection.all === true;
  if (!hasSelector) throw new PurgeUsageError('purge needs a selector: --tag, --path, --kind, --older-than, --key, --build or --all');
  if (isBulk(selection) && !selection.yes && !dryRun) throw new PurgeUsageError('this deletes every entry: add --yes to confirm, or --dry-run to see what it would delete');
  const result: PurgeResult = { dryRun, method: 'scan', matched: 0, deleted: 0, bytes: 0, invalidated: [], sample: [], indexUnreadable: [], unreadable: 0 };
  const now = m.clock.now();
  const take = async (file: string, size: number): Promise<void> => {
    result.matched++;
    if (result.sample.length < 20) result.sample.push(path.relative(m.layout.root, file));
    if (dryRun) return;
    guard.check();
    if (await m.fs.unlink(file)) {
      result.deleted++;
      result.bytes += size;
    }
  };

  if (tags.length > 0 && !dryRun) {
    const log = await openTagLog(m);
    try {
      await log.invalidate(tags);
    } finally {
      await log.close();
    }
    result.invalidated = tags;
  }

  const wantedTags = new Set(tags);
  const kinds = selection.kinds?.length ? new Set(selection.kinds) : undefined;
  const matchesHeader = (header: { kind: string; tags: string[]; writtenAt: number }, namespace: string): boolean =>
    (!builds || builds.has(namespace)) &&
    (wantedTags.size === 0 || header.tags.some((t) => wantedTags.has(t))) &&
    (!kinds || kinds.has(header.kind)) &&
    (selection.olderThanMs === undefined || now - header.writtenAt > selection.olderThanMs);
  const judge = async (file: string, namespace: string, read: HeaderRead | undefined): Promise<void> => {
    if (read?.ok && matchesHeader(read.header, namespace)) await take(file, read.fileLength);
    else if (read?.ok === false && read.reason === 'unreadable') result.unreadable++;
  };

  if (selection.keys?.length) {
    result.method = 'keys';
    await purgeKeys(m, selection.keys, { builds, wantsImages: wantedTags.size === 0 && (!kinds || kinds.has('IMAGE')), dryRun, olderThanMs: selection.olderThanMs, now }, judge, result);
    return result;
  }

  if (wantedTags.size > 0 && !selection.scan) {
    result.method = 'index';
    const index = await taggedEntries(m, tags);
    result.indexUnreadable = index.unreadable;
    for (const id of index.entries) {
      const [namespace, hash] = id.split('/') as [string, string];
      const file = m.layout.entryPath(hash, namespace);
      await judge(file, namespace, await readEntryHeader(m, file));
    }
    return result;
  }

  const purgeFolder = async (folder: StoreFolder, headers: Map<string, HeaderRead>): Promise<void> => {
    for (const file of folder.files) if (file.type === 'entry') await judge(file.path, file.namespace, headers.get(file.path));
    if (wantedTags.size > 0 || (kinds && !kinds.has('IMAGE')) || !hasImages(folder)) return;
    for (const pair of (await judgeImageFolder(m, folder)).pairs) {
      if (builds && !builds.has(pair.sidecarFile.namespace)) continue;
      if (selection.olderThanMs !== undefined && now - pair.sidecar.lastModified <= selection.olderThanMs) continue;
      // The sidecar first: once it is gone no reader is sent to the raw file.
      await take(pair.sidecarFile.path, pair.raw.stats.size);
      if (!dryRun) await m.fs.unlink(pair.raw.path);
    }
  };
  for await (const batch of walkStore(m, progress)) {
    const headers = await readHeaders(m, batch);
    for (const folder of batch) await purgeFolder(folder, headers);
  }
  return result;
}

interface KeyPurge {
  builds: Set<string> | undefined;
  wantsImages: boolean;
  dryRun: boolean;
  olderThanMs: number | undefined;
  now: number;
}

/** Each key's entry in every namespace on the volume (and its image), narrowed by the other selectors. */
async function purgeKeys(m: Maintenance, keys: string[], options: KeyPurge, judge: (file: string, namespace: string, read: HeaderRead) => Promise<void>, result: PurgeResult): Promise<void> {
  const namespaces = (await listNames(m.fs, m.layout.entriesRoot)).filter((ns) => isSafeName(ns) && (!options.builds || options.builds.has(ns)));
  const imageNamespaces = options.wantsImages ? (await listNames(m.fs, m.layout.imagesRoot)).filter((ns) => isSafeName(ns) && (!options.builds || options.builds.has(ns))) : [];
  for (const key of keys) {
    const hash = hashKey(key);
    for (const namespace of namespaces) {
      const file = m.layout.entryPath(hash, namespace);
      const read = await readEntryHeader(m, file);
      // The key itself must match: a hash collision names another key's entry.
      if (!read.ok || read.header.key === key) await judge(file, namespace, read);
    }
    for (const namespace of imageNamespaces) {
      const image = await m.images.read(key, namespace).catch((error: unknown) => ({ found: false as const, reason: readFailure(error) ?? 'unreadable' }));
      if (!image.found) {
        if (image.reason === 'unreadable') result.unreadable++;
        continue;
      }
      if (options.olderThanMs !== undefined && options.now - image.sidecar.lastModified <= options.olderThanMs) continue;
      result.matched++;
      if (result.sample.length < 20) result.sample.push(path.relative(m.layout.root, m.layout.sidecarPath(hash, namespace)));
      if (!options.dryRun && (await m.images.remove(hash, namespace))) {
        result.deleted++;
        result.bytes += image.sidecar.size;
      }
    }
  }
}

/**
 * Entries (`<namespace>/<hash>`) that carry any of `tags`, from the tag
 * index: the folded members snapshot plus the member segments' unfolded
 * tails. Reads the index only, never the store. Index files that cannot be
 * read are listed, not silently skipped.
 */
export async function taggedEntries(m: Maintenance, tags: string[]): Promise<{ entries: string[]; unreadable: string[] }> {
  const unreadable: string[] = [];
  const snapshot = await readMembersSnapshot(m);
  if (snapshot.status === 'damaged') unreadable.push(path.relative(m.layout.root, m.layout.membersSnapshot));
  const index = snapshot.status === 'ok' ? snapshot.index : emptyMembers();
  for (const name of (await listSegments(m.fs, m.layout.membersDir)).segments) {
    const read = await readSegment(m, m.layout.membersDir, name, index.folded.get(name) ?? 0, (line) => parseMembership(line, m.seals.memberships));
    if (read.status === 'ok') foldMemberships(index, read.records);
    else if (read.status === 'damaged') unreadable.push(path.relative(m.layout.root, path.join(m.layout.membersDir, name)));
  }
  return { entries: entriesWithTags(index, tags), unreadable };
}
