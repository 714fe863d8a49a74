import { resolveOptions, type CacheOptions } from '../config';
import { ConfinedFs } from '../fs/confined';
import { withLock, type LockGuard } from '../fs/lock';
import { nodeFs, type VolumeFs } from '../fs/syscalls';
import { integrityOf, writeSettingsOf, type RuntimeSettings } from '../service/runtime';
import { VolumeClock } from '../store/clock';
import { EntryStore } from '../store/entry-store';
import { loadHasher } from '../store/hash';
import { ImageStore } from '../store/image-store';
import type { Integrity } from '../store/integrity';
import { FORMAT_VERSION, Layout } from '../store/layout';
import { newWriterId, Volume, VolumeError } from '../store/volume';
import { tagSeals, type TagSeals } from '../tags/files';
import { TagLog } from '../tags/tag-log';
import { describe, errorCode } from '../util/errors';
import { CacheLog } from '../util/log';
import { newMetrics } from '../util/metrics';
import type { WalkProgress } from './walk';

export class NotACacheRootError extends Error {
  readonly code = 'ENOTCACHE';
  constructor(dir: string, detail: string) {
    super(`${dir} is not a next-volume-cache root (${detail}); refusing to touch it`);
    this.name = 'NotACacheRootError';
  }
}

/** What every maintenance command takes besides the cache options: one options object, no positional flags. */
export interface RunOptions {
  /** Wait for another run's maintenance lock instead of failing with LockHeldError. */
  wait?: boolean;
  progress?: WalkProgress;
  /** The raw filesystem; tests pass one that injects faults. */
  fs?: VolumeFs;
}

/** What maintenance work (compact, purge, gc, verify, ...) needs: an existing root, on the volume clock. */
export interface Maintenance {
  settings: RuntimeSettings;
  fs: ConfinedFs;
  layout: Layout;
  clock: VolumeClock;
  log: CacheLog;
  volume: Volume;
  entries: EntryStore;
  images: ImageStore;
  integrity: Integrity | undefined;
  seals: TagSeals;
  /** Opened without writing anything (stats, inspect, verify without --repair): the clock is this machine's. */
  readOnly: boolean;
}

/**
 * Opens an existing cache root for maintenance. Unlike the handler, it never
 * creates a root or an app: a folder without our marker is refused before
 * anything is read or deleted. A read-only opening writes nothing at all (no
 * lease, no probe, no folder): a debug pod that mounts the volume read-only
 * can run it. The others calibrate the volume clock on their lease (or a
 * probe in the root when the app has no folder yet).
 */
export async function openMaintenance(options: CacheOptions, access: { readOnly?: boolean; fs?: VolumeFs | undefined } = {}): Promise<Maintenance> {
  const resolved = resolveOptions(options);
  if (!resolved.dir) throw new VolumeError('no cache root given: pass --dir or set NEXT_VOLUME_CACHE_DIR', 'not-a-cache-root');
  const settings: RuntimeSettings = { ...resolved, dir: resolved.dir };
  await loadHasher();
  const fs = new ConfinedFs(access.fs ?? nodeFs, settings.dir, writeSettingsOf(settings, newWriterId()));
  const layout = new Layout(settings.dir, settings.app);
  const clock = new VolumeClock();
  const volume = new Volume(fs, layout, clock);
  await checkMarker(fs, volume, settings.dir);
  const readOnly = access.readOnly ?? false;
  if (!readOnly) await calibrate(fs, volume, layout);
  const integrity = integrityOf(settings);
  const stores = { app: settings.app, maxEntryBytes: settings.maxEntryBytes, integrity };
  return {
    settings,
    fs,
    layout,
    clock,
    log: new CacheLog(settings.logLevel, undefined, settings.logFormat),
    volume,
    entries: new EntryStore(fs, layout, stores),
    images: new ImageStore(fs, layout, stores),
    integrity,
    seals: tagSeals(integrity, settings.app),
    readOnly,
  };
}

async function checkMarker(fs: ConfinedFs, volume: Volume, dir: string): Promise<void> {
  try {
    await fs.resolveRoot();
  } catch (error) {
    throw new NotACacheRootError(dir, errorCode(error) === 'ENOENT' ? 'it does not exist' : describe(error));
  }
  let marker;
  try {
    marker = await volume.readMarker();
  } catch (error) {
    throw new NotACacheRootError(dir, (error as Error).message);
  }
  if (!marker) throw new NotACacheRootError(dir, 'no next-volume-cache.json marker');
  if (marker.format !== FORMAT_VERSION) throw new NotACacheRootError(dir, `format ${marker.format}, this version handles format ${FORMAT_VERSION}`);
}

/** An app that exists gets its folders checked and its lease for the clock; a missing one is never created. */
async function calibrate(fs: ConfinedFs, volume: Volume, layout: Layout): Promise<void> {
  const appExists = await fs.lstat(layout.appDir).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
  if (appExists) await volume.open(false);
  // Read-only volume or no app yet: the probe may fail; this machine's clock it is then.
  else await volume.calibrateWithProbe().catch(() => undefined);
}

/** Runs `work` under the app's maintenance lock. */
export function locked<T>(m: Maintenance, run: RunOptions, work: (guard: LockGuard) => Promise<T>): Promise<T> {
  const options = { wait: run.wait ?? false, staleMs: m.settings.lockStaleMs, volumeNow: () => m.clock.now(), maxClockSkewMs: m.settings.maxClockSkewMs };
  return withLock(m.fs, m.layout.lock('maintenance'), options, work);
}

/**
 * The shared tag view as the request path sees it (snapshot plus tails), and
 * a writer for purge's invalidations. `complete` tells whether every tag file
 * could be used.
 */
export async function openTagLog(m: Maintenance): Promise<TagLog> {
  let renewedAt = performance.now();
  let lapses = 0;
  const lease = {
    age: () => performance.now() - renewedAt,
    lapses: () => lapses,
    renew: async () => {
      const started = performance.now();
      await m.volume.renewLease();
      if (performance.now() - renewedAt > m.settings.leaseTimeoutMs / 2) lapses++;
      renewedAt = started;
    },
  };
  const tags = new TagLog({
    fs: m.fs,
    layout: m.layout,
    clock: m.clock,
    log: m.log,
    metrics: newMetrics(),
    lease,
    leaseTimeoutMs: m.settings.leaseTimeoutMs,
    maxClockSkewMs: m.settings.maxClockSkewMs,
    seals: m.seals,
  });
  await tags.refresh();
  return tags;
}
