import path from 'node:path';
import { errorCode, listDir, unlinkIfExists } from '../store/fs';
import { BUILD_PREFIX } from '../store/layout';
import { leaseMtime } from '../tags/compact';
import type { Maintenance } from './context';
import type { LockGuard } from './lock';

export interface BuildInfo {
  namespace: string;
  /** When a process last marked it served (volume clock, ms), or null if never. */
  servedAt: number | null;
  /** Served within the lease timeout: a pod is running it now. */
  live: boolean;
}

/** Every build namespace found on the volume (entries or images), newest served first. */
export async function listBuilds(m: Maintenance): Promise<BuildInfo[]> {
  const names = new Set<string>();
  for (const dir of [path.dirname(m.layout.entriesDir()), m.layout.imagesRoot, m.layout.buildsDir]) {
    for (const name of await listDir(m.fs, dir)) if (name.startsWith(BUILD_PREFIX)) names.add(name);
  }
  const now = m.clock.now();
  const builds: BuildInfo[] = [];
  for (const namespace of names) {
    const servedAt = (await leaseMtime(m.fs, m.layout.buildMarker(namespace)).catch(() => undefined)) ?? null;
    builds.push({ namespace, servedAt, live: servedAt !== null && now - servedAt <= m.settings.leaseTimeoutMs });
  }
  return builds.sort((a, b) => (b.servedAt ?? 0) - (a.servedAt ?? 0));
}

/**
 * The builds `gc --keep-builds n` removes: all but the n most recently
 * served, and never one served within the lease timeout (during a rolling
 * deploy both builds are live; after a rollback the old build is the live one).
 */
export function buildsToDrop(builds: BuildInfo[], keep: number): BuildInfo[] {
  return builds.slice(keep).filter((b) => !b.live);
}

/** Deletes a build's entries, images and marker: files first, then the emptied folders. */
export async function removeBuild(m: Maintenance, namespace: string, guard: LockGuard): Promise<{ files: number; bytes: number }> {
  const removed = { files: 0, bytes: 0 };
  for (const dir of [m.layout.entriesDir(namespace), m.layout.imagesDir(namespace)]) await removeTree(m, dir, guard, removed);
  await unlinkIfExists(m.fs, m.layout.buildMarker(namespace));
  return removed;
}

/** Depth-first; never follows a symlink (lstat), leaves `.nfs*` files (and so their folders) alone. */
async function removeTree(m: Maintenance, dir: string, guard: LockGuard, removed: { files: number; bytes: number }): Promise<void> {
  for (const name of await listDir(m.fs, dir)) {
    const full = path.join(dir, name);
    let stats;
    try {
      stats = await m.fs.lstat(full);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw error;
    }
    if (stats.isDirectory()) {
      await removeTree(m, full, guard, removed);
    } else if (!name.startsWith('.nfs')) {
      guard.check();
      if (await unlinkIfExists(m.fs, full)) {
        removed.files++;
        removed.bytes += stats.size;
      }
    }
  }
  await m.fs.rmdir(dir).catch((error: unknown) => {
    if (!['ENOENT', 'ENOTEMPTY', 'EEXIST'].includes(errorCode(error) ?? '')) throw error;
  });
}

