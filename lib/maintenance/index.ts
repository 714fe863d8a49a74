/**
 * The library side of every CLI command: each is a function over a cache
 * root that tests call directly; bin/cli.ts only parses flags and prints
 * results. Every function takes one options object: the cache options
 * (`dir`, `app`, ... as everywhere) plus its own. Destructive commands run
 * under the volume's maintenance lock; every one of them is also written to
 * stay correct if two runs ever hold the lock at once. Read-only commands
 * (stats, inspect, verify without repair, check with readOnly) write nothing.
 */
import { pickCacheOptions, type CacheOptions } from '../config';
import { hashKey } from '../store/hash';
import { compactTags, type CompactResult } from '../tags/compact';
import { listNames } from '../tags/files';
import { isSafeName } from '../store/layout';
import { namespaceOfBuild, seedFromBuild, type SeedResult } from '../next/seed';
import { locked, openMaintenance, openTagLog, type Maintenance, type RunOptions } from './context';
import { collectGarbage, type GcOptions, type GcResult } from './gc';
import { inspectKey, type Inspection } from './inspect';
import { purgeEntries, type PurgeResult, type PurgeSelection } from './purge';
import { collectStats, type StoreStats } from './stats';
import { verifyStore, type VerifyReport } from './verify';
import { quarantineImpostors } from './impostors';
import { checkRoot as check, type CheckOptions, type CheckResult } from './check';

export { NotACacheRootError, openMaintenance, type Maintenance, type RunOptions } from './context';
export { LockHeldError, LockCompromisedError } from '../fs/lock';
export { PurgeUsageError, isBulk, tagsForPath, taggedEntries } from './purge';
export type { CompactResult } from '../tags/compact';
export type { SeedResult } from '../next/seed';
export { listBuilds, type BuildInfo } from './builds';
export type { CheckOptions, CheckResult, GcOptions, GcResult, Inspection, PurgeResult, PurgeSelection, StoreStats, VerifyReport };
export type { WalkProgress } from './walk';

/** Temp files and orphan images younger than this may still belong to a live writer. */
export const DEFAULT_DEBRIS_AGE_MS = 60 * 60_000;

type Options<T = object> = CacheOptions & RunOptions & T;

async function open(options: Options, readOnly: boolean): Promise<Maintenance> {
  return openMaintenance(pickCacheOptions(options), { readOnly, fs: options.fs });
}

/** Folds the tag logs into the snapshot and deletes closed segments. */
export async function compact(options: Options): Promise<CompactResult> {
  const m = await open(options, false);
  return locked(m, options, (guard) => compactTags(m, guard));
}

/** Entries and bytes per kind and namespace, images, shard fan-out, debris, tag log. Writes nothing. */
export async function stats(options: Options): Promise<StoreStats> {
  const m = await open(options, true);
  return collectStats(m, options.progress);
}

/** Checks everything; with `repair`, fixes what is broken (under the lock). Without it, writes nothing. */
export async function verify(options: Options<{ repair?: boolean; debrisAgeMs?: number }>): Promise<VerifyReport> {
  const repair = options.repair ?? false;
  const m = await open(options, !repair);
  const settings = { repair, debrisAgeMs: options.debrisAgeMs ?? DEFAULT_DEBRIS_AGE_MS };
  if (!repair) return verifyStore(m, settings, undefined, options.progress);
  // Before the lock: it lives in locks/, which may be an impostor itself. Moving one is a single
  // rename, safe without the lock (a second run finds it gone).
  const impostors = await quarantineImpostors(m);
  return locked(m, options, (guard) => verifyStore(m, { ...settings, impostors }, guard, options.progress));
}

/** Enforces expiry, tag invalidations, byte budgets (the maxBytes and imageMaxBytes cache options) and removes debris. */
export async function gc(options: Options<Partial<Omit<GcOptions, 'maxBytes' | 'imageMaxBytes'>>>): Promise<GcResult> {
  const m = await open(options, false);
  const settings: GcOptions = {
    dryRun: options.dryRun ?? false,
    graceMs: options.graceMs ?? 60 * 60_000,
    debrisAgeMs: options.debrisAgeMs ?? DEFAULT_DEBRIS_AGE_MS,
    keepBuilds: options.keepBuilds,
    maxBytes: m.settings.maxBytes,
    imageMaxBytes: m.settings.imageMaxBytes,
  };
  return locked(m, options, (guard) => collectGarbage(m, settings, guard, options.progress));
}

/** Deletes the selected entries (and records tag invalidations for tag and path selectors). */
export async function purge(options: Options<{ selection: PurgeSelection; dryRun?: boolean }>): Promise<PurgeResult> {
  const m = await open(options, false);
  return locked(m, options, (guard) => purgeEntries(m, options.selection, options.dryRun ?? false, guard, options.progress));
}

/** Seeds a build's prerendered pages (set-if-absent) into its namespace; `nextDir` is the app's `.next`. */
export async function seed(options: Options<{ nextDir: string }>): Promise<SeedResult> {
  const m = await open(options, false);
  const { namespace } = await namespaceOfBuild(options.nextDir);
  const tags = await openTagLog(m);
  try {
    return await seedFromBuild(
      {
        writeIfAbsent: async (draft) => {
          const { ageMs = 0, ...rest } = draft;
          const record = { ...rest, writtenAt: m.clock.now() - Math.max(0, ageMs) };
          const written = await m.entries.writeIfAbsent(record, namespace);
          const hash = hashKey(record.key);
          if (written) await tags.recordMembership({ hash, ns: namespace, tags: record.tags });
          return { written, hash };
        },
      },
      options.nextDir,
    );
  } finally {
    await tags.close();
  }
}

/** The apps (namespaces) present on a cache root. Writes nothing. */
export async function listApps(options: Options): Promise<string[]> {
  const m = await open(options, true);
  return (await listNames(m.fs, m.layout.appsDir)).filter(isSafeName).sort();
}

/** Where a key lives, its metadata and whether an invalidation applies. Writes nothing. */
export async function inspect(options: Options<{ key: string; raw?: boolean }>): Promise<Inspection> {
  const m = await open(options, true);
  return inspectKey(m, options.key, options.raw ?? false);
}

/** The start-up check (see check.ts). */
export function checkRoot(options: CacheOptions & CheckOptions): Promise<CheckResult> {
  const { maxLatencyMs, readOnly, fs, ...cache } = options;
  return check(pickCacheOptions(cache), { maxLatencyMs, readOnly: readOnly ?? false, ...(fs ? { fs } : {}) });
}
