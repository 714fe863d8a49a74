/**
 * The library side of every CLI command: each is a function over an opened
 * cache root that tests call directly; bin/cli.ts only parses flags and
 * prints results. Destructive commands run under the volume's maintenance
 * lock; every one of them is also written to stay correct if two runs ever
 * hold the lock at once.
 */
import path from 'node:path';
import type { CacheOptions } from '../config';
import { listDir } from '../store/fs';
import { compactTags, type CompactResult } from '../tags/compact';
import { openMaintenance, openTagLog, type Maintenance } from './context';
import { EntryStore } from '../store/entry-store';
import { seedFromBuild, type SeedResult } from '../next/seed';
import { collectGarbage, type GcOptions, type GcResult } from './gc';
import { inspectKey, type Inspection } from './inspect';
import { withMaintenanceLock, type LockGuard } from './lock';
import { purgeEntries, type PurgeResult, type PurgeSelection } from './purge';
import { collectStats, type StoreStats } from './stats';
import { verifyStore, type VerifyReport } from './verify';
import type { WalkProgress } from './walk';

export { NotACacheRootError, openMaintenance, type Maintenance } from './context';
export { LockHeldError, LockCompromisedError, withMaintenanceLock } from './lock';
export { PurgeUsageError, tagsForPath, taggedEntries } from './purge';
export type { CompactResult } from '../tags/compact';
export type { SeedResult } from '../next/seed';
export { checkRoot, type CheckResult } from './check';
export { listBuilds, type BuildInfo } from './builds';
export type { GcOptions, GcResult, Inspection, PurgeResult, PurgeSelection, StoreStats, VerifyReport, WalkProgress };

export interface RunOptions {
  /** Wait for another run's maintenance lock instead of failing with LockHeldError. */
  wait?: boolean;
  progress?: WalkProgress;
}

/** Temp files and orphan images younger than this may still belong to a live writer. */
export const DEFAULT_DEBRIS_AGE_MS = 60 * 60_000;

function locked<T>(m: Maintenance, run: RunOptions, work: (guard: LockGuard) => Promise<T>): Promise<T> {
  return withMaintenanceLock(m.layout, 'maintenance', { wait: run.wait ?? false, staleMs: m.settings.lockStaleMs }, work);
}

/** Folds the tag logs into the snapshot and deletes closed segments. */
export async function compact(options: CacheOptions, run: RunOptions = {}): Promise<CompactResult> {
  const m = await openMaintenance(options);
  return locked(m, run, (guard) => compactTags(m, guard));
}

/** Entries and bytes per kind and namespace, images, shard fan-out, debris, tag log. Read-only. */
export async function stats(options: CacheOptions, run: RunOptions = {}): Promise<StoreStats> {
  const m = await openMaintenance(options);
  return collectStats(m, run.progress);
}

/** Checks everything; with `repair`, fixes what is broken (under the lock). */
export async function verify(options: CacheOptions, check: { repair?: boolean; debrisAgeMs?: number } = {}, run: RunOptions = {}): Promise<VerifyReport> {
  const m = await openMaintenance(options);
  const settings = { repair: check.repair ?? false, debrisAgeMs: check.debrisAgeMs ?? DEFAULT_DEBRIS_AGE_MS };
  if (!settings.repair) return verifyStore(m, settings, undefined, run.progress);
  return locked(m, run, (guard) => verifyStore(m, settings, guard, run.progress));
}

/** Enforces expiry, tag invalidations, byte budgets and removes debris. */
export async function gc(options: CacheOptions, limits: Partial<GcOptions> = {}, run: RunOptions = {}): Promise<GcResult> {
  const m = await openMaintenance(options);
  const settings: GcOptions = {
    dryRun: false,
    graceMs: 60 * 60_000,
    debrisAgeMs: DEFAULT_DEBRIS_AGE_MS,
    ...limits,
    maxBytes: limits.maxBytes ?? m.settings.maxBytes,
    imageMaxBytes: limits.imageMaxBytes ?? m.settings.imageMaxBytes,
  };
  return locked(m, run, (guard) => collectGarbage(m, settings, guard, run.progress));
}

/** Deletes the selected entries (and records tag invalidations for tag and path selectors). */
export async function purge(options: CacheOptions, selection: PurgeSelection, dryRun = false, run: RunOptions = {}): Promise<PurgeResult> {
  const m = await openMaintenance(options);
  return locked(m, run, (guard) => purgeEntries(m, selection, dryRun, guard, run.progress));
}

/** Seeds a build's prerendered pages (set-if-absent) into its namespace; `nextDir` is the app's `.next`. */
export async function seed(options: CacheOptions, nextDir: string): Promise<SeedResult> {
  const m = await openMaintenance(options);
  const store = new EntryStore(m.fs, m.layout, { writer: m.writer, fsync: m.settings.fsync, mode: m.settings.fileMode, dirMode: m.settings.dirMode });
  const tags = await openTagLog(m);
  try {
    return await seedFromBuild({ store, clock: m.clock, onSeeded: (hash, ns, entryTags) => void tags.recordMembership({ hash, ns, tags: entryTags }) }, nextDir);
  } finally {
    await tags.close();
  }
}

/** The apps (namespaces) present on a cache root. */
export async function listApps(options: CacheOptions): Promise<string[]> {
  const m = await openMaintenance(options);
  return (await listDir(m.fs, path.dirname(m.layout.appDir))).filter((name) => SAFE_APP.test(name)).sort();
}

const SAFE_APP = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Where a key lives, its metadata and whether an invalidation applies. Read-only. */
export async function inspect(options: CacheOptions, key: string, raw = false): Promise<Inspection> {
  const m = await openMaintenance(options);
  return inspectKey(m, key, raw);
}
