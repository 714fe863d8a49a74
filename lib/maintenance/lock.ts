import path from 'node:path';
import lockfile from 'proper-lockfile';
import type { Layout } from '../store/layout';

export class LockHeldError extends Error {
  constructor(readonly lockPath: string) {
    super(`another maintenance run holds ${lockPath}; try again later, or pass --wait`);
    this.name = 'LockHeldError';
  }
}

export class LockCompromisedError extends Error {
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
}

/** Lets long work check, between steps, that it still holds its lock. */
export interface LockGuard {
  /** Throws LockCompromisedError once the lock was lost. */
  check(): void;
}

/**
 * Runs `work` under the volume's maintenance lock for this app.
 *
 * proper-lockfile locks by mkdir (atomic on NFSv3+ and EFS) and refreshes the
 * lock's mtime; a lock whose mtime is older than `staleMs` is taken over.
 * Its staleness test compares the holder's mtime with the checker's clock,
 * so `staleMs` must be well above any clock skew (the default is minutes).
 * Its defaults are overridden: `realpath: false` (the target need not
 * exist) and an `onCompromised` that marks the work as aborted instead of
 * throwing from a timer. Two runs can still both believe they hold the lock
 * (proper-lockfile issue #121), so every maintenance operation is written to
 * stay correct when it runs twice at once; the lock only keeps that rare.
 */
export async function withMaintenanceLock<T>(layout: Layout, name: string, options: LockOptions, work: (guard: LockGuard) => Promise<T>): Promise<T> {
  const target = path.join(layout.locksDir, name);
  const lockPath = `${target}.lock`;
  let compromised: Error | undefined;
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(target, {
      realpath: false,
      stale: options.staleMs,
      update: Math.max(1000, Math.floor(options.staleMs / 4)),
      retries: options.wait ? { retries: Math.ceil((2 * options.staleMs) / 1000), minTimeout: 1000, maxTimeout: 1000, factor: 1 } : 0,
      onCompromised: (error) => {
        compromised = error;
      },
    });
  } catch (error) {
    if ((error as { code?: string }).code === 'ELOCKED') throw new LockHeldError(lockPath);
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
