import type { TagLog } from '../tags/tag-log';
import { errorCode } from '../util/errors';
import type { FsGate } from '../util/gate';

/** Deadline of a process's first full read of the tag logs (later refreshes use timeoutMs). */
const INITIAL_LOAD_TIMEOUT_MS = 120_000;

export interface TagViewOptions {
  tags: TagLog;
  gate: FsGate;
  tagRefreshMs: number;
  timeoutMs: number;
  /** Told about a failed refresh (logged once per cause by the service). */
  onError(error: unknown): void;
  /** Told how long each refresh took (gate wait included) and whether it failed (telemetry). */
  onRefreshed?(ms: number, error: unknown): void;
}

/**
 * When this process's tag view is brought up to date: at most once per
 * `tagRefreshMs`, once however many callers ask (single flight), through the
 * gate. Until the view was loaded in full once, no entry is served: serving
 * one then could serve one that another replica invalidated.
 */
export class TagView {
  private lastRefresh = -Infinity;
  /** When the last refresh that succeeded started: what the view reflects. */
  private lastLoaded: number | undefined;
  private refreshing: Promise<void> | undefined;
  private running: Promise<void> | undefined;
  private loaded = false;
  /** The tag folders themselves cannot be used (a link, not a folder): nothing can be judged. */
  unusable = false;

  constructor(private readonly options: TagViewOptions) {}

  /** Refreshes if the interval has passed; never throws (a failed refresh keeps the current view). */
  refreshIfDue(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    // A refresh that outlived its deadline (a slow volume, a huge tail) is still reading: none beside it.
    if (this.running) return Promise.resolve();
    const { tags, gate, timeoutMs } = this.options;
    if (!this.refreshDue()) return Promise.resolve();
    const started = (this.lastRefresh = performance.now());
    // The first load reads the snapshot and every tail since the last
    // compaction: it may take longer than one request's deadline.
    const deadline = this.loaded ? timeoutMs : Math.max(timeoutMs, INITIAL_LOAD_TIMEOUT_MS);
    const refreshing = gate
      .run(() => this.track(tags.refresh()), deadline)
      .then(() => {
        this.loaded = true;
        this.unusable = false;
        this.lastLoaded = started;
        this.options.onRefreshed?.(performance.now() - started, undefined);
      })
      .catch((error: unknown) => {
        // A tag folder that is a link or not a folder is damage that persists: every replica,
        // new or running, stops judging (and so serving) entries until it is repaired.
        if (['EOUTSIDE', 'ENOTDIR', 'ELOOP'].includes(errorCode(error) ?? '')) this.unusable = true;
        this.options.onRefreshed?.(performance.now() - started, error);
        this.options.onError(error);
      })
      .finally(() => {
        if (this.refreshing === refreshing) this.refreshing = undefined;
      });
    this.refreshing = refreshing;
    return refreshing;
  }

  /** Remembers the refresh itself (not a caller's wait for it) until it ends. */
  private track(refresh: Promise<void>): Promise<void> {
    this.running = refresh;
    const forget = (): void => {
      if (this.running === refresh) this.running = undefined;
    };
    refresh.then(forget, forget);
    return refresh;
  }

  /**
   * How old the view is (ms since the last successful refresh started); undefined before the
   * first load. Refreshes happen on demand, so an idle process's view grows old.
   */
  ageMs(): number | undefined {
    return this.lastLoaded === undefined ? undefined : performance.now() - this.lastLoaded;
  }

  /** Whether entries can be judged now with no refresh to wait for: loaded, usable, none due or in flight. */
  isCurrent(): boolean {
    return this.loaded && !this.unusable && !this.refreshing && !this.running && !this.refreshDue();
  }

  /** Whether `tagRefreshMs` has passed since the last refresh started. */
  private refreshDue(): boolean {
    return performance.now() - this.lastRefresh >= this.options.tagRefreshMs;
  }

  /**
   * Refreshes if due and waits for it (at most `timeoutMs` while the view
   * was never loaded). Resolves false while entries cannot be judged.
   */
  async ready(): Promise<boolean> {
    const refreshed = this.refreshIfDue();
    if (!this.loaded) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([refreshed, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.timeoutMs)))]);
      clearTimeout(timer);
    } else {
      await refreshed;
    }
    return this.loaded && !this.unusable;
  }
}
