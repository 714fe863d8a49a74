import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { defaultDir, type ResolvedOptions } from './config';
import { LockHeldError, withMaintenanceLock } from './maintenance/lock';
import { seedFromBuild } from './next/seed';
import { writeAtomic } from './store/atomic';
import { VolumeClock } from './store/clock';
import { EntryStore } from './store/entry-store';
import { errorCode, exists, nodeFs, type VolumeFs } from './store/fs';
import { hashKey, loadHasher } from './store/hash';
import { ImageStore } from './store/image-store';
import { buildNamespace, Layout, SHARED_NAMESPACE } from './store/layout';
import { newWriterId, Volume } from './store/volume';
import type { EntryRecord } from './store/codec';
import type { Membership } from './tags/record';
import { describe, TagLog } from './tags/tag-log';
import { FsGate, GateError } from './util/gate';
import { CacheLog } from './util/log';
import { newMetrics, type Metrics } from './util/metrics';

/** After the volume failed to open, how long calls stay no-ops before the next attempt. */
const REOPEN_AFTER_MS = 5_000;
/** Deadline of a process's first full read of the tag logs (later refreshes use timeoutMs). */
const INITIAL_LOAD_TIMEOUT_MS = 120_000;
/** How often, at most, one process records that one image was used. */
export const IMAGE_TOUCH_PERIOD_MS = 10 * 60_000;
const MAX_TRACKED_TOUCHES = 100_000;

export type RuntimeSettings = ResolvedOptions & { dir: string };

/**
 * Everything a process shares between the handler instances Next creates
 * (about three per request): the store, the tag view, the gate, the clock,
 * the counters. Built without I/O; the volume is opened on first use, and a
 * volume that does not answer makes every call a miss or a no-op until it
 * does.
 */
export class Runtime {
  readonly log: CacheLog;
  readonly layout: Layout;
  readonly writer = newWriterId();
  readonly clock = new VolumeClock();
  readonly metrics: Metrics = newMetrics();
  readonly gate: FsGate;
  readonly store: EntryStore;
  readonly images: ImageStore;
  readonly volume: Volume;
  readonly tags: TagLog;
  private state: 'closed' | 'ready' | 'unavailable' = 'closed';
  private opening: Promise<boolean> | undefined;
  private lastOpenAttempt = -Infinity;
  private lastLeaseRenewal = -Infinity;
  private lastRefresh = -Infinity;
  private refreshing: Promise<void> | undefined;
  /** True once the tag view was loaded in full at least once; until then no entry is served. */
  private tagViewLoaded = false;
  private leaseTimer: NodeJS.Timeout | undefined;
  private readonly touchedImages = new Map<string, number>();
  /** `.next/server` of the build this process serves, from the first handler Next constructs. */
  serverDistDir: string | undefined;
  /** `build-<BUILD_ID>` once the volume is open and the build is known; page entries live there. */
  private buildNs: string | undefined;

  constructor(
    readonly settings: RuntimeSettings,
    private readonly createParents: boolean,
    readonly fs: VolumeFs = nodeFs,
  ) {
    this.log = new CacheLog(settings.logLevel);
    this.layout = new Layout(settings.dir, settings.app);
    this.gate = new FsGate(settings.concurrency, settings.timeoutMs);
    const writeOptions = { writer: this.writer, fsync: settings.fsync, mode: settings.fileMode, dirMode: settings.dirMode };
    this.store = new EntryStore(fs, this.layout, writeOptions);
    this.images = new ImageStore(fs, this.layout, writeOptions);
    this.volume = new Volume(fs, this.layout, this.writer, this.clock, { fileMode: settings.fileMode, dirMode: settings.dirMode });
    const lease = { age: () => performance.now() - this.lastLeaseRenewal, renew: () => this.renewLease() };
    this.tags = new TagLog(fs, this.layout, this.clock, this.log, this.metrics, lease, {
      writer: this.writer,
      leaseTimeoutMs: settings.leaseTimeoutMs,
      fileMode: settings.fileMode,
    });
  }

  /** true once the volume is open; false (quickly) while it is not there. Never throws. */
  ready(): Promise<boolean> {
    if (this.state === 'ready') return Promise.resolve(true);
    if (this.opening) return this.opening;
    if (this.state === 'unavailable' && performance.now() - this.lastOpenAttempt < REOPEN_AFTER_MS) {
      return Promise.resolve(false);
    }
    this.lastOpenAttempt = performance.now();
    this.opening = this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  /**
   * Refreshes the tag view if the interval has passed, once however many
   * callers ask; never throws (a failed refresh keeps the current view).
   */
  refreshTagsIfDue(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    if (performance.now() - this.lastRefresh < this.settings.tagRefreshMs) return Promise.resolve();
    this.lastRefresh = performance.now();
    // The first load reads the snapshot and every tail since the last
    // compaction: it may take longer than one request's deadline.
    const deadline = this.tagViewLoaded ? this.settings.timeoutMs : Math.max(this.settings.timeoutMs, INITIAL_LOAD_TIMEOUT_MS);
    this.refreshing = this.gate
      .run(() => this.tags.refresh(), deadline)
      .then(() => {
        this.tagViewLoaded = true;
      })
      .catch((error: unknown) => this.reportIoError('tag-refresh', 'refreshing the tag view', error))
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  /**
   * Refreshes if due and waits for it at most `waitMs`. Resolves false while
   * the tag view has never been loaded in full: serving an entry then could
   * serve one that another replica invalidated.
   */
  async tagViewReady(waitMs: number): Promise<boolean> {
    const refreshed = this.refreshTagsIfDue();
    if (!this.tagViewLoaded) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([refreshed, new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)))]);
      clearTimeout(timer);
    } else {
      await refreshed;
    }
    return this.tagViewLoaded;
  }

  /**
   * Records an invalidation for every process sharing the volume (both
   * handlers' entry point). Rejects when it could not be recorded: the caller
   * must not believe other replicas stopped serving the old content. This
   * process's own view is updated either way.
   */
  async invalidate(tags: readonly unknown[], durations?: { expire?: number | undefined }): Promise<void> {
    const list = tags.filter((t): t is string => typeof t === 'string' && t.length > 0);
    if (list.length === 0) return;
    if (!(await this.ready())) {
      this.tags.applyLocally(list, durations);
      throw new Error(`next-volume-cache: cannot record the invalidation of ${list.join(', ')}: the cache root ${this.layout.root} is not usable`);
    }
    await this.gate.run(() => this.tags.invalidate(list, durations));
  }

  /**
   * Appends to the tag index in the background, through the gate like every
   * other filesystem call (a hung mount must not hold a thread outside it);
   * dropped when the gate is saturated (the index is advisory).
   */
  recordMembership(record: Membership): void {
    if (record.tags.length === 0) return;
    this.gate.run(() => this.tags.recordMembership(record)).catch((error: unknown) => this.reportIoError('membership', 'appending to the tag index', error));
  }

  /**
   * Records that an image was served: its raw file's mtime is set to the
   * volume clock's now, at most once per IMAGE_TOUCH_PERIOD_MS per image and
   * process, in the background. Image eviction orders by that time.
   */
  noteImageUse(rawPath: string): void {
    const now = performance.now();
    if (now - (this.touchedImages.get(rawPath) ?? -Infinity) < IMAGE_TOUCH_PERIOD_MS) return;
    if (this.touchedImages.size >= MAX_TRACKED_TOUCHES) this.touchedImages.clear();
    this.touchedImages.set(rawPath, now);
    this.gate.run(() => this.images.touch(rawPath, this.clock.now())).catch((error: unknown) => {
      if (errorCode(error) !== 'ENOENT') this.reportIoError('image-touch', 'marking an image as used', error);
    });
  }

  /** Logs an I/O failure once per cause and counts timeouts. */
  reportIoError(cause: string, action: string, error: unknown, hash?: string): void {
    if (error instanceof GateError) this.metrics.timeouts++;
    const where = hash ? ` (key hash ${hash})` : '';
    this.log.onceWarn(`${cause}:${error instanceof GateError ? error.reason : (describe(error).split(':')[0] ?? '')}`, `${action} failed${where}: ${describe(error)}`);
  }

  async close(): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    await this.tags.close();
  }

  /**
   * Where an entry of this kind lives: pages, routes and Pages Router entries
   * in the build's namespace (old and new pods of a rolling deploy each serve
   * their own HTML); fetches shared across builds unless fetchScope is
   * "build"; without a known build, "shared".
   */
  namespaceFor(kind: 'page' | 'fetch' | 'image'): string {
    const scope = kind === 'page' ? 'build' : kind === 'fetch' ? this.settings.fetchScope : this.settings.imageScope;
    return scope === 'build' && this.buildNs ? this.buildNs : SHARED_NAMESPACE;
  }

  private async open(): Promise<boolean> {
    try {
      await loadHasher();
      this.buildNs = await this.readBuildNamespace();
      await this.gate.run(async () => {
        await this.volume.open(this.createParents);
        this.lastLeaseRenewal = performance.now();
        await this.markBuildServed();
      });
      this.state = 'ready';
      if (!this.volume.writable) {
        this.log.onceWarn('volume-read-only', `cache root ${this.layout.root} is not writable: serving hits, new entries and invalidations will fail`);
      }
      this.startLeaseTimer();
      this.startMetricsLog();
      if (this.settings.seed) void this.autoSeed();
      this.log.debug(`cache root ${this.layout.root} open (app ${this.layout.app}, writer ${this.writer}, clock offset ${this.clock.offset} ms)`);
      return true;
    } catch (error) {
      this.state = 'unavailable';
      this.log.onceWarn('volume-unavailable', `cache root ${this.settings.dir} is not usable, serving without the cache until it is: ${describe(error)}`);
      return false;
    }
  }

  private async renewLease(): Promise<void> {
    const started = performance.now();
    await this.volume.renewLease();
    this.lastLeaseRenewal = started;
    await this.markBuildServed();
  }

  /**
   * Opt-in (seed: true): one pod seeds the build's prerendered pages in the
   * background; the others find the lock held (or the seeded marker) and go on
   * without waiting. Requests are served meanwhile (misses render as usual).
   */
  private async autoSeed(): Promise<void> {
    const ns = this.buildNs;
    if (!ns || !this.serverDistDir || !this.volume.writable) return;
    const marker = this.layout.seededMarker(ns);
    try {
      if (await exists(this.fs, marker)) return;
      await withMaintenanceLock(this.layout, `seed-${ns}`, { wait: false, staleMs: this.settings.lockStaleMs }, async () => {
        if (await exists(this.fs, marker)) return;
        // Every write through the gate: a hung mount must not hold threads outside its bound.
        const gated = { writeIfAbsent: (record: EntryRecord, namespace: string) => this.gate.run(() => this.store.writeIfAbsent(record, namespace)) };
        const result = await seedFromBuild(
          { store: gated, clock: this.clock, onSeeded: (hash, namespace, tags) => this.recordMembership({ hash, ns: namespace, tags }) },
          path.dirname(this.serverDistDir!),
        );
        await writeAtomic(this.fs, marker, [Buffer.from(JSON.stringify(result) + '\n')], { writer: this.writer, fsync: false, mode: this.settings.fileMode, dirMode: this.settings.dirMode });
        this.log.info(`seeded ${result.written} prerendered entries of build ${result.buildId} (${result.skipped} already present)`);
      });
    } catch (error) {
      if (error instanceof LockHeldError) return;
      this.reportIoError('seed', 'seeding from the build', error);
    }
  }

  /** BUILD_ID beside `.next/server` (local disk, read once at open). */
  private async readBuildNamespace(): Promise<string | undefined> {
    if (!this.serverDistDir) return undefined;
    try {
      const id = (await readFile(path.join(this.serverDistDir, '..', 'BUILD_ID'), 'utf8')).trim();
      return id ? buildNamespace(id, hashKey) : undefined;
    } catch (error) {
      this.log.onceWarn('build-id', `no BUILD_ID beside ${this.serverDistDir} (${describe(error)}); pages are stored without a build namespace`);
      return undefined;
    }
  }

  /** Rewrites `builds/<namespace>`: gc --keep-builds keeps the builds most recently served, not created. */
  private async markBuildServed(): Promise<void> {
    if (!this.buildNs || !this.volume.writable) return;
    try {
      await writeAtomic(this.fs, this.layout.buildMarker(this.buildNs), [Buffer.from(JSON.stringify({ servedBy: this.writer }) + '\n')], {
        writer: this.writer,
        fsync: false,
        mode: this.settings.fileMode,
      });
    } catch (error) {
      this.reportIoError('build-marker', 'marking the build as served', error);
    }
  }

  private startMetricsLog(): void {
    if (this.settings.metricsLogMs <= 0) return;
    const timer = setInterval(() => this.log.always(`metrics ${JSON.stringify({ dir: this.layout.root, app: this.layout.app, ...this.metrics })}`), this.settings.metricsLogMs);
    timer.unref();
  }

  /** Renews the lease (and recalibrates the volume clock) ten times per lease timeout. */
  private startLeaseTimer(): void {
    const every = Math.max(1000, Math.floor(this.settings.leaseTimeoutMs / 10));
    this.leaseTimer = setInterval(() => {
      this.gate.run(() => this.renewLease()).catch((error: unknown) => this.reportIoError('lease', 'renewing the writer lease', error));
    }, every);
    this.leaseTimer.unref();
  }
}

const REGISTRY = Symbol.for('next-volume-cache.runtimes.v1');

type Registry = Map<string, Runtime>;

/**
 * One Runtime per process and configuration, even when the package is
 * loaded twice (CJS and ESM copies, or two entry points): the registry lives
 * on globalThis under a symbol shared by every copy.
 */
export function runtimeFor(options: ResolvedOptions, serverDistDir?: string): Runtime {
  const scope = globalThis as unknown as Record<symbol, Registry | undefined>;
  const registry = (scope[REGISTRY] ??= new Map());
  const dir = options.dir ?? defaultDir(serverDistDir);
  const settings: RuntimeSettings = { ...options, dir };
  const id = JSON.stringify(settings);
  let runtime = registry.get(id);
  if (!runtime) {
    runtime = new Runtime(settings, options.dir === undefined);
    registry.set(id, runtime);
  }
  runtime.serverDistDir ??= serverDistDir;
  return runtime;
}

export function allRuntimes(): Runtime[] {
  const scope = globalThis as unknown as Record<symbol, Registry | undefined>;
  return [...(scope[REGISTRY]?.values() ?? [])];
}
