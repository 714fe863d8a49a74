import { resolveOptions, type CacheOptions, type ResolvedOptions } from '../config';
import { VolumeClock } from '../store/clock';
import { exists, nodeFs, type VolumeFs } from '../store/fs';
import { loadHasher } from '../store/hash';
import { FORMAT_VERSION, Layout } from '../store/layout';
import { newWriterId, Volume, VolumeError } from '../store/volume';
import { CacheLog } from '../util/log';
import { newMetrics } from '../util/metrics';
import { TagLog } from '../tags/tag-log';

export class NotACacheRootError extends Error {
  constructor(dir: string, detail: string) {
    super(`${dir} is not a next-volume-cache root (${detail}); refusing to touch it`);
    this.name = 'NotACacheRootError';
  }
}

/** What maintenance work (compact, purge, gc, verify, ...) needs: an existing root, opened on the volume clock. */
export interface Maintenance {
  fs: VolumeFs;
  layout: Layout;
  clock: VolumeClock;
  writer: string;
  volume: Volume;
  log: CacheLog;
  settings: ResolvedOptions & { dir: string };
}

/**
 * Opens an existing cache root for maintenance. Unlike the handler, it never
 * creates a root: a folder without our marker is refused before anything is
 * read or deleted.
 */
export async function openMaintenance(options: CacheOptions, fs: VolumeFs = nodeFs): Promise<Maintenance> {
  const settings = resolveOptions(options);
  if (!settings.dir) throw new VolumeError('no cache root given: pass --dir or set NEXT_VOLUME_CACHE_DIR', 'not-a-cache-root');
  await loadHasher();
  const layout = new Layout(settings.dir, settings.app);
  const clock = new VolumeClock();
  const writer = newWriterId();
  const volume = new Volume(fs, layout, writer, clock);
  let marker;
  try {
    marker = await volume.readMarker();
  } catch (error) {
    throw new NotACacheRootError(settings.dir, (error as Error).message);
  }
  if (!marker) throw new NotACacheRootError(settings.dir, 'no next-volume-cache.json marker');
  if (marker.format !== FORMAT_VERSION) {
    throw new NotACacheRootError(settings.dir, `format ${marker.format}, this version handles format ${FORMAT_VERSION}`);
  }
  // An app that exists gets its folders checked (and its lease for the clock); a maintenance
  // command never creates an app that is not there: the clock is calibrated on a probe instead.
  if (await exists(fs, layout.appDir)) await volume.open(false);
  else await volume.calibrateWithProbe().catch(() => undefined); // read-only: the local clock it is
  return { fs, layout, clock, writer, volume, log: new CacheLog(settings.logLevel), settings: { ...settings, dir: settings.dir } };
}

/** The shared tag view as the request path sees it (snapshot plus tails), and a writer for purge's invalidations. */
export async function openTagLog(m: Maintenance): Promise<TagLog> {
  let renewedAt = performance.now();
  const lease = {
    age: () => performance.now() - renewedAt,
    renew: async () => {
      const started = performance.now();
      await m.volume.renewLease();
      renewedAt = started;
    },
  };
  const tags = new TagLog(m.fs, m.layout, m.clock, m.log, newMetrics(), lease, { writer: m.writer, leaseTimeoutMs: m.settings.leaseTimeoutMs });
  await tags.refresh();
  return tags;
}
