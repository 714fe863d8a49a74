import path from 'node:path';
import type { Layout } from '../store/layout';
import { errorCode } from '../util/errors';
import type { Maintenance } from './context';

/**
 * The app's own folders (entries/, images/, tags/, tags/inval, writers/,
 * locks/, ...) must be real folders. One that is a link, a file or a FIFO
 * (planted by someone, or left by a damaged disk) is an impostor: the
 * confined filesystem refuses to go through it, so every call that needs
 * it fails and every command that lists it stops. `verify` reports them;
 * `verify --repair` moves them into quarantine (a link is moved itself,
 * never followed) and recreates the real folders, before it takes the
 * maintenance lock, which lives in one of them.
 */
export interface Impostor {
  path: string;
  /** Its own mtime (a link's, not its target's): when it was put there, at the latest. */
  mtimeMs: number;
}

/** The folders checked, quarantine first (impostors are moved into it) and each parent before its children. */
function appFolders(layout: Layout): string[] {
  return [layout.quarantineDir, layout.entriesRoot, layout.entriesDir(), layout.imagesRoot, layout.tagsDir, layout.invalidationsDir, layout.membersDir, layout.writersDir, layout.buildsDir, layout.locksDir, layout.seededDir];
}

/** The app's folders that are there but are not real folders. A folder inside an impostor is not looked at. */
export async function findImpostors(m: Maintenance): Promise<Impostor[]> {
  const found: Impostor[] = [];
  for (const dir of appFolders(m.layout)) {
    const stats = await m.fs.lstat(dir).catch(() => undefined);
    if (stats && !stats.isDirectory()) found.push({ path: dir, mtimeMs: stats.mtimeMs });
  }
  return found;
}

/** Moves every impostor into quarantine and recreates the folders; returns what was moved. */
export async function quarantineImpostors(m: Maintenance): Promise<Impostor[]> {
  const found = await findImpostors(m);
  for (const impostor of found) await quarantine(m, impostor.path);
  if (found.length > 0) await m.volume.ensureFolders();
  return found;
}

/**
 * Moves a file (or a link itself, or a folder) the library did not write out
 * of the store, into `<app>/quarantine/`, for a person to look at: never
 * deleted, never followed. A quarantine folder that is itself an impostor is
 * first moved aside, then into the new quarantine folder.
 */
export async function quarantine(m: Maintenance, file: string): Promise<boolean> {
  const dir = m.layout.quarantineDir;
  const name = `${Date.now()}-${path.relative(m.layout.appDir, file).replace(/[^A-Za-z0-9._-]/g, '_')}`.slice(0, 200);
  try {
    if (file === dir) {
      const aside = path.join(m.layout.appDir, `quarantine.${Date.now()}.impostor`);
      await m.fs.rename(file, aside);
      await m.fs.mkdir(dir);
      await m.fs.rename(aside, path.join(dir, name));
      return true;
    }
    await m.fs.mkdir(dir);
    await m.fs.rename(file, path.join(dir, name));
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
}
