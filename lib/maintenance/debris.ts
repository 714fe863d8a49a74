import path from 'node:path';
import { isSafeName, isShardName, LEASE_SUFFIX, TEMP_PREFIX } from '../store/layout';
import { listNamesIfFolder } from '../tags/files';
import type { Maintenance } from './context';
import { lstatOrNull } from './walk';

/** Temp files beside the metadata files (tag head and snapshot, markers, leases), outside the shard trees the walk covers. */
export async function metadataTemps(m: Maintenance): Promise<Array<{ path: string; mtimeMs: number }>> {
  const out: Array<{ path: string; mtimeMs: number }> = [];
  for (const dir of m.layout.metadataDirs()) {
    for (const name of await listNamesIfFolder(m.fs, dir)) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      const stats = await lstatOrNull(m.fs, path.join(dir, name));
      if (stats?.isFile()) out.push({ path: path.join(dir, name), mtimeMs: stats.mtimeMs });
    }
  }
  return out;
}

/**
 * Regeneration lease files (leases/<ns>/<aa>/<hash>.lease), and temp files
 * beside them. A lease lives seconds: anything there older than the debris
 * age belongs to a process that died mid-render. Walks only real folders
 * with the names the library makes.
 */
export async function leaseFiles(m: Maintenance): Promise<Array<{ path: string; mtimeMs: number; size: number }>> {
  const out: Array<{ path: string; mtimeMs: number; size: number }> = [];
  for (const ns of (await listNamesIfFolder(m.fs, m.layout.leasesDir)).filter(isSafeName)) {
    const nsDir = path.join(m.layout.leasesDir, ns);
    for (const shard of (await listNamesIfFolder(m.fs, nsDir)).filter(isShardName)) {
      const dir = path.join(nsDir, shard);
      for (const name of await listNamesIfFolder(m.fs, dir)) {
        if (!name.endsWith(LEASE_SUFFIX) && !name.startsWith(TEMP_PREFIX)) continue;
        const stats = await lstatOrNull(m.fs, path.join(dir, name));
        if (stats?.isFile()) out.push({ path: path.join(dir, name), mtimeMs: stats.mtimeMs, size: stats.size });
      }
    }
  }
  return out;
}
