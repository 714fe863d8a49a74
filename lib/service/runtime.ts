import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_MEMORY_CACHE_BYTES, type ResolvedOptions } from '../config';
import { ConfinedFs, type WriteSettings } from '../fs/confined';
import { LockHeldError, withLock } from '../fs/lock';
import { nodeFs, type VolumeFs } from '../fs/syscalls';
import { VolumeClock } from '../store/clock';
import { EntryStore } from '../store/entry-store';
import { loadHasher } from '../store/hash';
import { ImageStore } from '../store/image-store';
import { createIntegrity, type Integrity } from '../store/integrity';
import { buildNamespace, Layout, SHARED_NAMESPACE } from '../store/layout';
import { newWriterId, Volume } from '../store/volume';
import { tagSeals } from '../tags/files';
import { TagLog } from '../tags/tag-log';
import { detached } from '../util/detached';
import { describe, errorCode } from '../util/errors';
import { FsGate } from '../util/gate';
import { CacheLog } from '../util/log';
import { newMetrics, type Metrics } from '../util/metrics';
import { CacheService, type EntryDraft } from './cache-service';
import { MemoryTier, type MemoryStats } from './memory-tier';
import { Regeneration } from './regeneration';
import { LeaseStore } from '../store/lease-store';
import { TagView } from './tag-view';
import { createTelemetry, type GaugeReadings, type ServiceTelemetry } from './telemetry';

/** After the volume failed to open, how long calls stay no-ops before the next attempt. */
const REOPEN_AFTER_MS = 5_000;
/** How often, at most, one process records that one image was used. */
export const IMAGE_TOUCH_PERIOD_MS = 10 * 60_000;
const MAX_TRACKED_TOUCHES = 100_000;

export type RuntimeSettings = ResolvedOptions & { dir: string };

/** Where an entry of each area lives (see Runtime.namespaceFor). */
export type EntryArea = 'page' | 'fetch' | 'image';

export interface RuntimeOptions {
  settings: RuntimeSettings;
  /** Create the root's missing parents (only for the single-machine default under `.next/cache`). */
  createParents: boolean;
  /** The raw filesystem; tests pass one that injects faults. */
  fs?: VolumeFs;
}

/** What seeding needs from the runtime: writes that never overwrite, stamped `ageMs` in the past. */
export interface SeedWriter {
  writeIfAbsent(draft: EntryDraft): Promise<{ written: boolean; hash: string }>;
}

/** The write settings every writer of a process shares: one place builds them (see fs/confined.ts). */
export function writeSettingsOf(options: Pick<ResolvedOptions, 'fsync' | 'fileMode' | 'dirMode'>, writer: string): WriteSettings {
  return { writer, fsync: options.fsync, fileMode: options.fileMode, dirMode: options.dirMode };
}

/** The integrity checker of the configured secrets, if any. */
export function integrityOf(options: Pick<ResolvedOptions, 'secret' | 'previousSecret'>): Integrity | undefined {
  const secrets = [options.secret, options.previousSecret].filter((s): s is string => typeof s === 'string');
  return secrets.length > 0 ? createIntegrity(secrets) : undefined;
}

/**
 * A process's lifecycle on one cache root: opening the volume (and retrying
 * while it is not there), the lease that calibrates the clock and tells the
 * compactor this writer is alive, the build markers gc orders by, the
 * metrics log, and closing. Everything a request does goes through
 * `service`. Built without I/O; shared by the handler instances Next
 * creates (about three per request) through the registry.
 */
export class Runtime {
  readonly settings: RuntimeSettings;
  readonly log: CacheLog;
  readonly layout: Layout;
  readonly clock = new VolumeClock();
  readonly metrics: Metrics = newMetrics();
  readonly fs: ConfinedFs;
  readonly service: CacheService;
  /** OpenTelemetry spans and metrics of this runtime (a no-op without @opentelemetry/api). */
  readonly telemetry: ServiceTelemetry;
  private readonly gate: FsGate;
  private readonly volume: Volume;
  private readonly tags: TagLog;
  private readonly images: ImageStore;
  private readonly memory: MemoryTier;
  private state: 'closed' | 'ready' | 'unavailable' = 'closed';
  private opening: Promise<boolean> | undefined;
  private lastOpenAttempt = -Infinity;
  private lastLeaseRenewal = -Infinity;
  /** Renewals that came after a gap a compactor may have judged this writer gone by (see segment-writer.ts Lease). */
  private leaseLapses = 0;
  private timers: NodeJS.Timeout[] = [];
  /** Build namespaces by `.next/server` folder (BUILD_ID read once each, from local disk). */
  private readonly builds = new Map<string, string | undefined>();
  private readonly touchedImages = new Map<string, number>();

  constructor(private readonly options: RuntimeOptions) {
    const settings = options.settings;
    this.settings = settings;
    this.log = new CacheLog(settings.logLevel, undefined, settings.logFormat);
    this.layout = new Layout(settings.dir, settings.app);
    this.gate = new FsGate(settings.concurrency, settings.timeoutMs);
    this.fs = new ConfinedFs(options.fs ?? nodeFs, settings.dir, writeSettingsOf(settings, newWriterId()));
    const integrity = integrityOf(settings);
    const stores = { app: settings.app, maxEntryBytes: settings.maxEntryBytes, integrity };
    const entries = new EntryStore(this.fs, this.layout, stores);
    this.images = new ImageStore(this.fs, this.layout, stores);
    this.volume = new Volume(this.fs, this.layout, this.clock);
    this.telemetry = createTelemetry(settings.app, () => this.gaugeReadings(tagView));
    const lease = { age: () => performance.now() - this.lastLeaseRenewal, renew: () => this.renewLease(), lapses: () => this.leaseLapses };
    this.tags = new TagLog({
      fs: this.fs,
      layout: this.layout,
      clock: this.clock,
      log: this.log,
      metrics: this.metrics,
      lease,
      leaseTimeoutMs: settings.leaseTimeoutMs,
      maxClockSkewMs: settings.maxClockSkewMs,
      seals: tagSeals(integrity, settings.app),
      observer: { recorded: () => this.telemetry.invalidationRecorded(), applied: (lags) => this.telemetry.invalidationsApplied(lags) },
    });
    this.memory = new MemoryTier(settings.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES, settings.memoryTrustMs ?? settings.tagRefreshMs);
    const tagView = new TagView({
      tags: this.tags,
      gate: this.gate,
      tagRefreshMs: settings.tagRefreshMs,
      timeoutMs: settings.timeoutMs,
      onError: (error) => this.service.reportIoError('tag-refresh', 'refreshing the tag view', error),
      onRefreshed: (ms, error) => this.telemetry.tagRefreshed(ms, error),
    });
    this.service = new CacheService({
      settings,
      clock: this.clock,
      log: this.log,
      metrics: this.metrics,
      gate: this.gate,
      entries,
      images: this.images,
      tags: this.tags,
      tagView,
      memory: this.memory,
      regeneration: new Regeneration(new LeaseStore(this.fs, this.layout), this.gate, this.clock, {
        leaseMs: settings.regenerationLeaseMs ?? Math.max(10_000, 5 * settings.timeoutMs),
        maxClockSkewMs: settings.maxClockSkewMs,
      }),
      telemetry: this.telemetry,
      ready: () => this.ready(),
      isReady: () => this.state === 'ready',
      noteImageUse: (rawPath) => this.noteImageUse(rawPath),
    });
  }

  get writer(): string {
    return this.fs.writes.writer;
  }

  /** The counters, with the memory tier's state: what getMetrics() reports. */
  metricsSnapshot(): Metrics & { memory: MemoryStats } {
    return { ...structuredClone(this.metrics), memory: this.memory.stats() };
  }

  /**
   * Next passes its `cacheMaxMemorySize` to the page handler: the memory
   * tier takes that size unless the memoryCacheBytes option set one (0 from
   * either turns it off).
   */
  useNextMemorySize(bytes: unknown): void {
    if (this.settings.memoryCacheBytes === undefined && typeof bytes === 'number' && Number.isSafeInteger(bytes) && bytes >= 0) this.memory.resize(bytes);
  }

  /** true once the volume is open; false (quickly) while it is not there. Never throws. */
  ready(): Promise<boolean> {
    if (this.state === 'ready') return Promise.resolve(true);
    if (this.opening) return this.opening;
    if (this.state === 'unavailable' && performance.now() - this.lastOpenAttempt < REOPEN_AFTER_MS) return Promise.resolve(false);
    this.lastOpenAttempt = performance.now();
    // Opened outside the caller's async context: what it starts (timers) lives as long as the process.
    const opening = detached(() => this.open());
    this.opening = opening.finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  /**
   * The namespace of an area: pages, routes and Pages Router entries in the
   * build's namespace (old and new pods of a rolling deploy each serve their
   * own HTML); fetches shared across builds unless fetchScope is "build";
   * images per build unless imageScope is "shared". The build is the one
   * whose `.next/server` the caller names (Next passes it to the handler);
   * without a known build, "shared".
   */
  namespaceFor(area: EntryArea, serverDistDir: string | undefined): string {
    const scope = area === 'page' ? 'build' : area === 'fetch' ? this.settings.fetchScope : this.settings.imageScope;
    if (scope !== 'build' || !serverDistDir) return SHARED_NAMESPACE;
    return this.buildNamespaceOf(serverDistDir) ?? SHARED_NAMESPACE;
  }

  /** The namespace of the build whose `.next/server` this is, from its BUILD_ID (read once, from local disk). */
  buildNamespaceOf(serverDistDir: string): string | undefined {
    if (this.builds.has(serverDistDir)) return this.builds.get(serverDistDir);
    let namespace: string | undefined;
    try {
      const id = readFileSync(path.join(serverDistDir, '..', 'BUILD_ID'), 'utf8').trim();
      namespace = id ? buildNamespace(id) : undefined;
    } catch (error) {
      this.log.onceWarn('build-id', `no BUILD_ID beside ${serverDistDir} (${describe(error)}); pages are stored without a build namespace`);
    }
    this.builds.set(serverDistDir, namespace);
    if (namespace && this.state === 'ready') detached(() => void this.markBuildsServed());
    return namespace;
  }

  /**
   * Opt-in seeding (seed: true): one pod seeds a build's prerendered pages in
   * the background; the others find the lock held (or the seeded marker) and
   * go on without waiting. Every volume call goes through the gate and the
   * confined filesystem, the lock's included.
   */
  async seedOnce(namespace: string, produce: (writer: SeedWriter) => Promise<{ written: number; skipped: number; buildId: string; unkeyed: number }>): Promise<void> {
    if (!(await this.ready()) || !this.volume.writable) return;
    const marker = this.layout.seededMarker(namespace);
    const gated = <T>(task: () => Promise<T>): Promise<T> => this.gate.run(task);
    const isSeeded = (): Promise<boolean> =>
      gated(() => this.fs.lstat(marker)).then(
        () => true,
        (error: unknown) => {
          if (errorCode(error) === 'ENOENT') return false;
          throw error;
        },
      );
    try {
      if (await isSeeded()) return;
      const lock = { wait: false, staleMs: this.settings.lockStaleMs, volumeNow: () => this.clock.now(), maxClockSkewMs: this.settings.maxClockSkewMs, through: gated };
      await withLock(this.fs, this.layout.lock(`seed-${namespace}`), lock, async () => {
        if (await isSeeded()) return;
        const result = await produce({ writeIfAbsent: (draft) => this.service.writeIfAbsent(draft, namespace) });
        await gated(() => this.fs.writeAtomic(marker, [Buffer.from(JSON.stringify(result) + '\n')], { createParents: 1 }));
        this.log.info('seeded', `seeded ${result.written} prerendered entries of build ${result.buildId} (${result.skipped} already present)`);
        if (result.unkeyed > 0 && result.written + result.skipped === 0) {
          this.log.warn('seed-unkeyed', `seeding found ${result.unkeyed} prerendered page(s) but no runtime cache key for any: Next writes them into its build output from 16.3.8 on; with this version, pages render on their first request`);
        }
      });
    } catch (error) {
      if (error instanceof LockHeldError) return;
      this.service.reportIoError('seed', 'seeding from the build', error);
    }
  }

  async close(): Promise<void> {
    this.telemetry.close();
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.tags.close();
  }

  private async open(): Promise<boolean> {
    try {
      await loadHasher();
      await this.gate.run(async () => {
        const started = performance.now();
        await this.volume.open(this.options.createParents);
        // Opened again after the volume went away: segments opened before may have been compacted away meanwhile.
        if (performance.now() - this.lastLeaseRenewal > this.settings.leaseTimeoutMs / 2) this.leaseLapses++;
        this.lastLeaseRenewal = started;
      });
      this.state = 'ready';
      if (!this.volume.writable) {
        this.log.onceWarn('volume-read-only', `cache root ${this.layout.root} is not writable: serving hits, new entries and invalidations will fail`);
      }
      await this.markBuildsServed();
      this.startTimers();
      this.log.debug('volume-open', `cache root ${this.layout.root} open (app ${this.layout.app}, writer ${this.writer}, clock offset ${this.clock.offset} ms)`);
      return true;
    } catch (error) {
      this.state = 'unavailable';
      // What memory holds may no longer be on the volume when it comes back.
      this.memory.clear();
      this.log.onceWarn('volume-unavailable', `cache root ${this.settings.dir} is not usable, serving without the cache until it is: ${describe(error)}`);
      return false;
    }
  }

  private async renewLease(): Promise<void> {
    const started = performance.now();
    await this.volume.renewLease();
    if (performance.now() - this.lastLeaseRenewal > this.settings.leaseTimeoutMs / 2) this.leaseLapses++;
    this.lastLeaseRenewal = started;
    await this.writeBuildMarkers();
  }

  /** Rewrites the build markers through the gate (renewLease, already inside it, writes them directly). */
  private markBuildsServed(): Promise<void> {
    return this.gate.run(() => this.writeBuildMarkers()).catch((error: unknown) => this.service.reportIoError('build-marker', 'marking the build as served', error));
  }

  /** Rewrites `builds/<namespace>` for every build served here: gc --keep-builds keeps the builds most recently served, not created. */
  private async writeBuildMarkers(): Promise<void> {
    if (!this.volume.writable) return;
    for (const namespace of new Set(this.builds.values())) {
      if (!namespace) continue;
      try {
        await this.fs.writeAtomic(this.layout.buildMarker(namespace), [Buffer.from(JSON.stringify({ servedBy: this.writer }) + '\n')]);
      } catch (error) {
        this.service.reportIoError('build-marker', 'marking the build as served', error);
      }
    }
  }

  /**
   * Records that an image was served: its raw file's mtime is set to the
   * volume clock's now, at most once per IMAGE_TOUCH_PERIOD_MS per image and
   * process, in the background. Image eviction orders by that time.
   */
  private noteImageUse(rawPath: string): void {
    const now = performance.now();
    if (now - (this.touchedImages.get(rawPath) ?? -Infinity) < IMAGE_TOUCH_PERIOD_MS) return;
    if (this.touchedImages.size >= MAX_TRACKED_TOUCHES) this.touchedImages.clear();
    this.touchedImages.set(rawPath, now);
    detached(() => {
      this.gate
        .run(() => this.images.touch(rawPath, this.clock.now()))
        .catch((error: unknown) => {
          if (errorCode(error) !== 'ENOENT') this.service.reportIoError('image-touch', 'marking an image as used', error);
        });
    });
  }

  /** What the observable gauges report (read when the SDK collects). */
  private gaugeReadings(tagView: TagView): GaugeReadings {
    return { tagViewAgeMs: tagView.ageMs(), gate: this.service.gateSlots(), memory: this.memory.stats() };
  }

  private logMetrics(): void {
    const metrics = { dir: this.layout.root, app: this.layout.app, ...this.metricsSnapshot() };
    this.log.always('metrics', `metrics ${JSON.stringify(metrics)}`, metrics);
  }

  /** The lease (ten renewals per lease timeout, each recalibrating the clock) and the optional metrics log. */
  private startTimers(): void {
    const every = Math.max(1000, Math.floor(this.settings.leaseTimeoutMs / 10));
    this.timers.push(
      setInterval(() => {
        this.gate.run(() => this.renewLease()).catch((error: unknown) => this.service.reportIoError('lease', 'renewing the writer lease', error));
      }, every),
    );
    if (this.settings.metricsLogMs > 0) {
      this.timers.push(setInterval(() => this.logMetrics(), this.settings.metricsLogMs));
    }
    for (const timer of this.timers) timer.unref();
  }
}
