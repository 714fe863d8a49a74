/**
 * The library side of every CLI command: each is a function over an opened
 * cache root that tests call directly; bin/cli.ts only parses flags and
 * prints results.
 */
import type { CacheOptions } from '../config';
import { compactTags, type CompactResult } from '../tags/compact';
import { openMaintenance } from './context';
import { withMaintenanceLock } from './lock';

export { NotACacheRootError, openMaintenance, type Maintenance } from './context';
export { LockHeldError, LockCompromisedError, withMaintenanceLock } from './lock';
export type { CompactResult } from '../tags/compact';

export interface RunOptions {
  /** Wait for another run's maintenance lock instead of failing with LockHeldError. */
  wait?: boolean;
}

/** Folds the tag logs into the snapshot and deletes closed segments, under the maintenance lock. */
export async function compact(options: CacheOptions, run: RunOptions = {}): Promise<CompactResult> {
  const m = await openMaintenance(options);
  return withMaintenanceLock(m.layout, 'maintenance', { wait: run.wait ?? false, staleMs: m.settings.lockStaleMs }, (guard) => compactTags(m, guard));
}
