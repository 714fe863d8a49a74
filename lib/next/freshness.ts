import type { EntryRecord, HitVerdict } from '../service/cache-service';
import type { CacheControl, CacheHandlerValue, CachedValue, GetContext } from './types';

/**
 * Turns a stored entry and its tag verdict into what Next expects back.
 *
 * Age is measured on the volume clock (now - writtenAt) and handed to Next
 * as `lastModified = local now - age`, so a replica whose clock is off still
 * sees the right age (see store/clock.ts).
 *
 * Stale by tag: Next decides staleness from `lastModified` and the entry's
 * revalidate window, so a stale mark is expressed as an age just past that
 * window; Next then serves the entry once and regenerates it in the
 * background, as its own cache does. An entry with `revalidate: false` has no
 * window, so it is returned with `cacheControl.revalidate` of 1 s for this
 * one answer (the regenerated entry stores its real cacheControl again). A
 * fetch with no numeric revalidate cannot be served stale and is a miss.
 */
export function present(record: EntryRecord, verdict: HitVerdict, ageMs: number, ctx: GetContext | undefined): CacheHandlerValue {
  const value = record.kind === 'NULL' ? null : (record.value as CachedValue);
  const now = Date.now();
  if (verdict === 'fresh') {
    return withCacheControl({ lastModified: now - agreedFreshAge(record, ageMs, ctx), value }, record.cacheControl);
  }
  if (record.kind === 'FETCH') {
    return { lastModified: now - fetchRevalidate(record, ctx)! * 1000 - 1, value };
  }
  const cacheControl = record.cacheControl;
  if (cacheControl && typeof cacheControl.revalidate === 'number' && cacheControl.revalidate > 0) {
    return withCacheControl({ lastModified: now - Math.max(ageMs, cacheControl.revalidate * 1000 + 1), value }, cacheControl);
  }
  const oneSecond: CacheControl = { revalidate: 1, expire: cacheControl?.expire };
  return { lastModified: now - Math.max(ageMs, 1001), value, cacheControl: oneSecond };
}

/**
 * The age a hit the service judged fresh is handed to Next with. A page or
 * route still inside its revalidate window is handed as just written: Next
 * 16.0 judges its age against the revalidate it noted when this process set
 * the route (or the prerender manifest's), never against the cacheControl
 * returned here (16.4 reads it), so a page another pod rendered is judged
 * against a 1 s default, and any real age past 1 s made every pod that had
 * not rendered it itself regenerate it, with no lease taken. Past its window
 * (the lease holder's answer, or any pod's with leases off) it keeps its
 * real age, so Next regenerates it. Fetches keep their age (capped by the
 * service below their window): Next judges those by the caller's revalidate.
 */
function agreedFreshAge(record: EntryRecord, ageMs: number, ctx: GetContext | undefined): number {
  return record.kind !== 'FETCH' && ageMs < freshForMs(record, ctx) ? 0 : ageMs;
}

/**
 * How long after it was written an entry is fresh by time, as Next will
 * judge it from the `lastModified` and cacheControl we return: its revalidate
 * window (fetches: the caller's or the entry's revalidate). `false` never
 * goes stale; no window at all counts as stale at once (Next then uses its
 * 1 s default for paths that were not prerendered).
 */
export function freshForMs(record: EntryRecord, ctx: GetContext | undefined): number {
  if (record.kind === 'FETCH') {
    const value = record.value as CachedValue | null;
    const revalidate = ctx?.revalidate ?? (value?.revalidate as number | false | undefined);
    return revalidate === false ? Infinity : typeof revalidate === 'number' && revalidate > 0 ? revalidate * 1000 : 0;
  }
  const revalidate = record.cacheControl?.revalidate;
  return revalidate === false ? Infinity : typeof revalidate === 'number' && revalidate > 0 ? revalidate * 1000 : 0;
}

/** A stale fetch can only be served stale with a numeric revalidate window (Next regenerates it after); else it is a miss. */
export function canServeStale(record: EntryRecord, ctx: GetContext | undefined): boolean {
  return record.kind !== 'FETCH' || fetchRevalidate(record, ctx) !== undefined;
}

function fetchRevalidate(record: EntryRecord, ctx: GetContext | undefined): number | undefined {
  const value = record.value as CachedValue | null;
  const revalidate = ctx?.revalidate || (value?.revalidate as number | false | undefined);
  return typeof revalidate === 'number' && revalidate > 0 ? revalidate : undefined;
}

/** Sets it on `result` (made by the caller for this answer alone) rather than copying `result`: this runs on every hit. */
function withCacheControl(result: CacheHandlerValue, cacheControl: CacheControl | undefined): CacheHandlerValue {
  if (cacheControl) result.cacheControl = cacheControl;
  return result;
}

/** The tags an entry carries, as Next itself reads them. */
export function tagsOf(value: CachedValue | null, ctx: { tags?: string[] | undefined } | undefined): string[] {
  if (value?.kind === 'FETCH') {
    const own = Array.isArray(value.tags) ? (value.tags as unknown[]).filter((t): t is string => typeof t === 'string') : [];
    return unique([...(ctx?.tags ?? []), ...own]);
  }
  const headers = value?.headers as Record<string, unknown> | undefined;
  const header = headers?.['x-next-cache-tags'];
  // Next splits this header on ',' (incremental-cache/index.js); tags are percent-encoded, so commas inside a tag survive.
  return typeof header === 'string' && header.length > 0 ? unique(header.split(',')) : [];
}

function unique(tags: string[]): string[] {
  return [...new Set(tags.filter((t) => t.length > 0))];
}
