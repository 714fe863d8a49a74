import path from 'node:path';
import type { LockGuard } from '../fs/lock';
import { readFailure } from '../fs/confined';
import { BUILD_PREFIX, isSafeName, NFS_SILLY_PREFIX } from '../store/layout';
import { freshMtime, listNamesIfFolder } from '../tags/files';
import { errorCode } from '../util/errors';
import type { Maintenance } from './context';

export interface BuildInfo {
  namespace: string;
  /** When a process last marked it served (volume clock, ms); null if never; undefined if its marker cannot be read. */
  servedAt: number | null | undefined;
  /** Served within the lease timeout (a pod is running it now), or not known: either way never dropped. */
  live: boolean;
}

/** Every build namespace found on the volume (entries, images or markers), newest served first. */
export async function listBuilds(m: Maintenance): Promise<BuildInfo[]> {
  const names = new Set<string>();
  // An impostor folder lists nothing: a build whose marker cannot be read is live, so none is dropped for it.
  for (const dir of [m.layout.entriesRoot, m.layout.imagesRoot, m.layout.buildsDir]) {
    for (const name of await listNamesIfFolder(m.fs, dir)) if (name.startsWith(BUILD_PREFIX) && isSafeName(name)) names.add(name);
  }
  const now = m.clock.now();
  const builds: BuildInfo[] = [];
  for (const namespace of names) {
    // Only "absent" means never served: an unreadable marker (EACCES, EIO, ESTALE) is a build that may be live.
    const servedAt = await freshMtime(m.fs, m.layout.buildMarker(namespace)).then(
      (mtime) => mtime ?? null,
      () => undefined,
    );
    builds.push({ namespace, servedAt, live: servedAt === undefined || (servedAt !== null && now - servedAt <= m.settings.leaseTimeoutMs) });
  }
  return builds.sort((a, b) => (b.servedAt ?? 0) - (a.servedAt ?? 0));
}

/**
 * The builds `gc --keep-builds n` removes: all but the n most recently
 * served, and never one served within the lease timeout (during a rolling
 * deploy both builds are live; after a rollback the old build is the live
 * one), nor one whose marker cannot be read.
 */
export function buildsToDrop(builds: BuildInfo[], keep: number): BuildInfo[] {
  return builds.slice(keep).filter((b) => !b.live);
}

/** Why a build beyond the n kept was not dropped: a pod served it within the lease timeout, or its marker cannot be read. */
export type KeptReason = 'served-recently' | 'marker-unreadable';

/** The builds beyond the n most recently served that `gc --keep-builds n` keeps all the same, and why: reported, never silent. */
export function buildsKeptBeyond(builds: BuildInfo[], keep: number): Array<{ namespace: string; reason: KeptReason }> {
  return builds
    .slice(keep)
    .filter((b) => b.live)
    .map((b) => ({ namespace: b.namespace, reason: b.servedAt === undefined ? 'marker-unreadable' : 'served-recently' }));
}

export interface Removal {
  files: number;
  bytes: number;
  /** Paths left alone: links, folders that could not be listed, files that could not be removed. */
  skipped: string[];
}

/** Deletes a build's entries, images and marker: files first, then the emptied folders. */
export async function removeBuild(m: Maintenance, namespace: string, guard: LockGuard): Promise<Removal> {
  const removed: Removal = { files: 0, bytes: 0, skipped: [] };
  for (const dir of [m.layout.entriesDir(namespace), m.layout.imagesDir(namespace)]) await removeTree(m, dir, guard, removed);
  await m.fs.unlink(m.layout.buildMarker(namespace)).catch(() => removed.skipped.push(m.layout.buildMarker(namespace)));
  return removed;
}

/**
 * Depth-first through the confined filesystem: a folder is listed only if it
 * opens as a real folder where it should be (never through a link), a link
 * is left in place (it is not ours; verify --repair quarantines it), and
 * `.nfs*` files (and so their folders) are left alone.
 */
async function removeTree(m: Maintenance, dir: string, guard: LockGuard, removed: Removal): Promise<void> {
  let names: string[];
  try {
    names = await m.fs.list(dir);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return;
    if (readFailure(error) === 'not-a-file' || readFailure(error) === 'absent') {
      removed.skipped.push(dir);
      return;
    }
    throw error;
  }
  for (const name of names) {
    const full = path.join(dir, name);
    const stats = await m.fs.lstat(full).catch(() => undefined);
    if (!stats) continue;
    if (stats.isDirectory()) {
      await removeTree(m, full, guard, removed);
    } else if (name.startsWith(NFS_SILLY_PREFIX) || stats.isSymbolicLink()) {
      removed.skipped.push(full);
    } else {
      guard.check();
      if (await m.fs.unlink(full)) {
        removed.files++;
        removed.bytes += stats.size;
      }
    }
  }
  await m.fs.rmdir(dir).catch((error: unknown) => {
    if (!['ENOENT', 'ENOTEMPTY', 'EEXIST'].includes(errorCode(error) ?? '')) throw error;
  });
}
