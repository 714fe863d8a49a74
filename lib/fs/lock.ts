import type { Stats } from 'node:fs';
import { detached } from '../util/detached';
import { codedError, errorCode } from '../util/errors';
import type { ConfinedFs } from './confined';
import type * as ProperLockfile from 'proper-lockfile';

// Loaded outside the caller's async context: proper-lockfile installs signal-exit's handlers when it
// is loaded, and Node keeps the async context of a signal listener's handle for the life of the
// process. Were this package first loaded inside a request's stores, that request would stay alive.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const lockfile = detached(() => require('proper-lockfile') as typeof ProperLockfile);

export class LockHeldError extends Error {
  readonly code = 'ELOCKED';
  constructor(readonly lockPath: string) {
    super(`another maintenance run holds ${lockPath}; try again later, or pass --wait`);
    this.name = 'LockHeldError';
  }
}

export class LockCompromisedError extends Error {
  readonly code = 'ECOMPROMISED';
  constructor(cause: Error) {
    super(`the maintenance lock was lost while working (${cause.message}); stopped before the next destructive step`);
    this.name = 'LockCompromisedError';
  }
}

export interface LockOptions {
  /** Wait for the lock (retrying for up to `staleMs` twice over) instead of failing at once. */
  wait: boolean;
  /** A lock not refreshed for this long is taken over. */
  staleMs: number;
  /** The volume's clock now (ms): lock times are written and judged on it, not on this machine's. */
  volumeNow: () => number;
  /** A lock time later than the volume's now plus this is not trusted (see below). */
  maxClockSkewMs: number;
  /** Runs each filesystem call (the request path passes its gate, so that a hung mount holds no thread outside it). */
  through?: <T>(task: () => Promise<T>) => Promise<T>;
}

/** Lets long work check, between steps, that it still holds its lock. */
export interface LockGuard {
  /** Throws LockCompromisedError once the lock was lost. */
  check(): void;
}

/**
 * Runs `work` holding the lock `<target>.lock`.
 *
 * proper-lockfile locks by mkdir (atomic on NFSv3+ and EFS) and refreshes the
 * lock's mtime; a lock whose mtime is older than `staleMs` is taken over.
 * Every call it makes goes through the confined filesystem (its `fs`
 * option), and times are translated to the volume's clock both ways, so a
 * holder's skewed clock never makes a live lock look stale. A lock dated
 * further in the future than the allowed skew (a forged or damaged mtime)
 * is not trusted: its age is what this process observes, counted from when
 * it first saw that mtime, so with `wait` it is taken over once it has not
 * moved for `staleMs`, instead of blocking every run forever.
 * Its defaults are overridden: `realpath: false` (the target need not
 * exist) and an `onCompromised` that marks the work as aborted instead of
 * throwing from a timer. Two runs can still both believe they hold the lock
 * (proper-lockfile issue #121), so every maintenance operation is written to
 * stay correct when it runs twice at once; the lock only keeps that rare.
 */
export async function withLock<T>(fs: ConfinedFs, target: string, options: LockOptions, work: (guard: LockGuard) => Promise<T>): Promise<T> {
  const lockPath = `${target}.lock`;
  // proper-lockfile never judges a lock stale in less than 2 s, whatever it is told.
  const staleMs = Math.max(options.staleMs, MIN_STALE_MS);
  let compromised: Error | undefined;
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(target, {
      realpath: false,
      fs: lockFs(fs, options),
      stale: staleMs,
      update: Math.max(1000, Math.floor(staleMs / 4)),
      // Waiting covers twice the stale time plus one refresh: a holder that died is taken over within it.
      retries: options.wait ? { retries: Math.ceil((2 * staleMs) / 1000) + 1, minTimeout: 1000, maxTimeout: 1000, factor: 1 } : 0,
      onCompromised: (error) => {
        compromised = error;
      },
    });
  } catch (error) {
    if (errorCode(error) === 'ELOCKED') throw new LockHeldError(lockPath);
    throw error;
  }
  const guard: LockGuard = {
    check() {
      if (compromised) throw new LockCompromisedError(compromised);
    },
  };
  try {
    return await work(guard);
  } finally {
    if (!compromised) await release().catch(() => undefined);
  }
}

/** proper-lockfile's own lower bound for `stale`. */
const MIN_STALE_MS = 2000;

type Callback<T = void> = (error: Error | null, value?: T) => void;

/**
 * The slice of `fs` proper-lockfile uses (mkdir, rmdir, stat, utimes), over
 * the confined filesystem, in this process's clock. The offset is fixed for
 * the lock's lifetime (whole seconds, so that proper-lockfile's mtime
 * precision probe still sees whole seconds as such).
 */
function lockFs(fs: ConfinedFs, options: LockOptions): object {
  const offsetMs = Math.round((options.volumeNow() - Date.now()) / 1000) * 1000;
  const firstSeen = new Map<string, number>();
  const localMtime = (file: string, stats: Stats): number => {
    if (stats.mtimeMs <= options.volumeNow() + options.maxClockSkewMs) return stats.mtimeMs - offsetMs;
    const identity = `${file}:${stats.ino}:${stats.mtimeMs}`;
    if (!firstSeen.has(identity)) firstSeen.set(identity, Date.now());
    return firstSeen.get(identity)!;
  };
  const through = options.through ?? (<T>(task: () => Promise<T>) => task());
  const done = <T>(promise: Promise<T>, callback: Callback<T>): void => {
    promise.then(
      (value) => callback(null, value),
      (error: Error) => callback(error),
    );
  };
  return {
    mkdir: (file: string, callback: Callback) =>
      done(
        through(() => fs.mkdir(file)).then((created) => {
          if (!created) throw codedError('EEXIST', `${file} exists`);
        }),
        callback,
      ),
    rmdir: (file: string, callback: Callback) =>
      done(
        through(() => fs.rmdir(file)),
        callback,
      ),
    stat: (file: string, callback: Callback<{ mtime: Date }>) =>
      done(
        through(() => fs.statDir(file)).then((stats) => ({ mtime: new Date(localMtime(file, stats)) })),
        callback,
      ),
    utimes: (file: string, _atime: Date, mtime: Date, callback: Callback) =>
      done(
        through(() => fs.touchDir(file, mtime.getTime() + offsetMs)),
        callback,
      ),
  };
}
