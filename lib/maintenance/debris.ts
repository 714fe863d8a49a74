import path from 'node:path';
import { TEMP_PREFIX } from '../store/layout';
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
