/**
 * What the tag invalidations mean, as Next 16 defines them
 * (next/dist/server/lib/incremental-cache/tags-manifest.external.js):
 *  - an entry is *expired* by a tag when some expiry time of that tag has
 *    passed (<= now) and is not earlier than the entry's write time;
 *  - an entry is *stale* by a tag when the tag was marked stale at or after
 *    the entry's write time.
 * (Next uses strict comparisons; we give ties to the invalidation, so an
 * entry written in the same millisecond is never served after it.)
 * Next keeps only the latest mark per tag; we keep every mark that can still
 * decide something (the latest passed expiry, all future expiries and the
 * latest stale mark). That makes merging commutative and idempotent: records
 * can be read in any order, twice, from a snapshot and from a tail, and the
 * state is the same. A later 'max' revalidation never un-expires an entry
 * that an earlier immediate expiry already killed.
 * All times are on the volume clock (see store/clock.ts).
 */
export interface Invalidation {
  tags: string[];
  /** Marked stale at (ms); undefined when the record only schedules an expiry. */
  stale?: number | undefined;
  /** Expires at (ms); equal to the call time for an immediate expiry. */
  expired: number;
}

export type Verdict = 'fresh' | 'stale' | 'expired';

/**
 * A tag every entry carries implicitly. Its marks judge everything: a
 * process that cannot read part of the tag state (a damaged snapshot, a
 * segment it may not read) expires every entry older than what it missed,
 * rather than serve one that was invalidated there. The NUL keeps it apart
 * from any tag an app can pass (see TagLog.invalidate).
 */
export const ALL_ENTRIES = '\u0000*';

interface TagMarks {
  stale: number;
  /** Ascending; at most one entry <= the time of the last prune. */
  expired: number[];
}

export interface TagStateJson {
  [tag: string]: { s: number; e: number[] };
}

export class TagState {
  private readonly marks = new Map<string, TagMarks>();

  get size(): number {
    return this.marks.size;
  }

  apply(record: Invalidation, now: number): void {
    for (const tag of record.tags) this.mark(tag, record.stale ?? 0, [record.expired], now);
  }

  /** The verdict for an entry written at `writtenAt` carrying `tags`. */
  verdict(tags: Iterable<string>, writtenAt: number, now: number): Verdict {
    let verdict = this.judge(this.marks.get(ALL_ENTRIES), writtenAt, now);
    for (const tag of tags) {
      if (verdict === 'expired') break;
      const judged = this.judge(this.marks.get(tag), writtenAt, now);
      if (judged !== 'fresh') verdict = judged;
    }
    return verdict;
  }

  /** Ties go to the invalidation: an entry written in the same millisecond may hold the old data; at worst it is regenerated once more. */
  private judge(marks: TagMarks | undefined, writtenAt: number, now: number): Verdict {
    if (!marks) return 'fresh';
    const expiry = latestPassed(marks.expired, now);
    if (expiry > 0 && expiry >= writtenAt) return 'expired';
    return marks.stale > 0 && marks.stale >= writtenAt ? 'stale' : 'fresh';
  }

  merge(other: TagState, now: number): void {
    for (const [tag, marks] of other.marks) this.mark(tag, marks.stale, marks.expired, now);
  }

  /** Drops tags whose every mark is older than `before` and already passed: they can no longer judge any entry. */
  dropOlderThan(before: number, now: number): number {
    let dropped = 0;
    for (const [tag, marks] of this.marks) {
      const newestExpiry = marks.expired[marks.expired.length - 1] ?? 0;
      if (marks.stale < before && newestExpiry < before && newestExpiry <= now) {
        this.marks.delete(tag);
        dropped++;
      }
    }
    return dropped;
  }

  toJSON(): TagStateJson {
    // Object.fromEntries makes every tag an own key, `__proto__` included (an assignment would set the prototype and lose it).
    return Object.fromEntries([...this.marks].map(([tag, marks]) => [tag, { s: marks.stale, e: marks.expired }]));
  }

  static fromJSON(json: unknown, now: number): TagState {
    const state = new TagState();
    if (json === null || typeof json !== 'object') return state;
    for (const [tag, value] of Object.entries(json as Record<string, unknown>)) {
      const v = value as { s?: unknown; e?: unknown };
      if (typeof v?.s !== 'number' || !Array.isArray(v.e) || !v.e.every((n): n is number => typeof n === 'number')) continue;
      state.mark(tag, v.s, v.e, now);
    }
    return state;
  }

  private mark(tag: string, stale: number, expiries: readonly number[], now: number): void {
    let current = this.marks.get(tag);
    if (!current) {
      current = { stale: 0, expired: [] };
      this.marks.set(tag, current);
    }
    if (stale > current.stale) current.stale = stale;
    for (const at of expiries) insertSorted(current.expired, at);
    dropOlderPassed(current.expired, now);
  }
}

function latestPassed(expiries: readonly number[], now: number): number {
  let latest = 0;
  for (const at of expiries) {
    if (at <= now) latest = at;
    else break;
  }
  return latest;
}

function insertSorted(sorted: number[], value: number): void {
  let i = sorted.length;
  while (i > 0 && sorted[i - 1]! > value) i--;
  if (i > 0 && sorted[i - 1] === value) return;
  sorted.splice(i, 0, value);
}

/** Of the passed expiries only the latest can still decide anything. */
function dropOlderPassed(sorted: number[], now: number): void {
  let passed = 0;
  while (passed < sorted.length && sorted[passed]! <= now) passed++;
  if (passed > 1) sorted.splice(0, passed - 1);
}
