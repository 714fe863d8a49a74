import { afterEach, describe, expect, it, vi } from 'vitest';
import { TagState } from '../lib/tags/tag-state';
import { openCache, tempDir, type TestCache } from './helpers';
import { appPage, FETCH_CTX, fetchValue, PAGE_CTX } from './values';

const opened: TestCache[] = [];
async function cache(): Promise<TestCache> {
  const c = await openCache({ dir: tempDir() });
  opened.push(c);
  return c;
}
afterEach(async () => {
  vi.useRealTimers();
  for (const c of opened.splice(0)) await c.runtime.close();
});

const YEAR = 31_536_000;
const PAGE = '/route-cache/APP_PAGE/h/$/blog/a';
const pageTags = 'post,_N_T_/layout,_N_T_/blog/layout,_N_T_/blog/a/page,_N_T_/blog/a';

/** The contract doc §5, row by row, through the handler as Next calls it. */
describe('revalidateTag semantics (contract §5)', () => {
  async function withPage() {
    const c = await cache();
    await c.handler.set(PAGE, appPage({ tags: pageTags }), PAGE_CTX);
    await c.handler.set('f'.repeat(64), fetchValue('x', ['data']), FETCH_CTX);
    return c;
  }
  const age = (r: { lastModified: number } | null) => Date.now() - r!.lastModified;

  it("revalidateTag(t, 'max') -> {expire: 1y}: stale now (served past its revalidate window), not expired", async () => {
    const c = await withPage();
    expect(age(await c.handler.get(PAGE, {}))).toBeLessThan(60_000);
    await c.handler.revalidateTag(['post'], { expire: YEAR });
    const stale = await c.handler.get(PAGE, {});
    expect(stale).not.toBeNull();
    expect(age(stale)).toBeGreaterThan(60_000);
    expect(age(stale)).toBeLessThan(3_600_000);
    expect(c.runtime.metrics.staleServed).toBe(1);
  });

  it("revalidateTag(t, 'max') on a fetch tag: the fetch is served stale", async () => {
    const c = await withPage();
    await c.handler.revalidateTag(['data'], { expire: YEAR });
    const stale = await c.handler.get('f'.repeat(64), { kind: 'FETCH', tags: ['data'], revalidate: 30 });
    expect(age(stale)).toBeGreaterThan(30_000);
  });

  it('revalidateTag(t, {expire: 0}) and updateTag / revalidateTag(t) without durations: expired now', async () => {
    for (const durations of [{ expire: 0 }, undefined]) {
      const c = await withPage();
      await c.handler.revalidateTag(['post'], durations);
      expect(await c.handler.get(PAGE, {})).toBeNull();
      expect(await c.handler.get('f'.repeat(64), { kind: 'FETCH', tags: ['data'] })).not.toBeNull();
    }
  });

  it("revalidatePath('/blog/a') -> ['_N_T_/blog/a']: that page only", async () => {
    const c = await withPage();
    await c.handler.set('/route-cache/APP_PAGE/h/$/blog/b', appPage({ tags: '_N_T_/layout,_N_T_/blog/layout,_N_T_/blog/b' }), PAGE_CTX);
    await c.handler.revalidateTag(['_N_T_/blog/a']);
    expect(await c.handler.get(PAGE, {})).toBeNull();
    expect(await c.handler.get('/route-cache/APP_PAGE/h/$/blog/b', {})).not.toBeNull();
  });

  it("revalidatePath('/', 'layout') -> ['_N_T_/layout']: every page, and fetches through their soft tags", async () => {
    const c = await withPage();
    await c.handler.revalidateTag(['_N_T_/layout']);
    expect(await c.handler.get(PAGE, {})).toBeNull();
    expect(await c.handler.get('f'.repeat(64), { kind: 'FETCH', tags: ['data'], softTags: ['_N_T_/layout', '_N_T_/blog/a'] })).toBeNull();
    // A fetch read outside any page that carries the tag is not affected.
    expect(await c.handler.get('f'.repeat(64), { kind: 'FETCH', tags: ['data'], softTags: [] })).not.toBeNull();
  });

  it('an entry written after the invalidation is fresh again (no regeneration loop)', async () => {
    const c = await withPage();
    // The clock stands still, then moves on by the smallest step: one millisecond after the invalidation is after it.
    vi.useFakeTimers({ toFake: ['Date'] });
    await c.handler.revalidateTag(['post']);
    expect(await c.handler.get(PAGE, {})).toBeNull();
    vi.advanceTimersByTime(1);
    await c.handler.set(PAGE, appPage({ tags: pageTags }), PAGE_CTX);
    expect(age(await c.handler.get(PAGE, {}))).toBeLessThan(60_000);
  });

  it('revalidate: false entries marked stale are returned once with a 1 s revalidate so Next regenerates in the background', async () => {
    const c = await cache();
    await c.handler.set(PAGE, appPage({ tags: pageTags }), { kind: 'APP_PAGE', cacheControl: { revalidate: false, expire: undefined } });
    await c.handler.revalidateTag(['post'], { expire: YEAR });
    const got = await c.handler.get(PAGE, {});
    expect(got!.cacheControl).toEqual({ revalidate: 1, expire: undefined });
    expect(age(got)).toBeGreaterThan(1000);
  });

  it('a stale fetch without a numeric revalidate is a miss (Next could not tell it is stale)', async () => {
    const c = await cache();
    await c.handler.set('g'.repeat(64), { ...fetchValue('x', ['data']), revalidate: false }, FETCH_CTX);
    await c.handler.revalidateTag(['data'], { expire: YEAR });
    expect(await c.handler.get('g'.repeat(64), { kind: 'FETCH', tags: ['data'] })).toBeNull();
  });
});

describe('TagState', () => {
  const T0 = 1_000_000;
  it("an expiry scheduled by a profile ('hours') applies once its time has passed, to entries written before it", () => {
    const s = new TagState();
    s.apply({ tags: ['t'], stale: T0, expired: T0 + 3_600_000 }, T0);
    expect(s.verdict(['t'], T0 - 1, T0 + 10)).toBe('stale');
    expect(s.verdict(['t'], T0 - 1, T0 + 3_600_000)).toBe('expired');
    expect(s.verdict(['t'], T0 + 5, T0 + 3_600_000)).toBe('expired');
    expect(s.verdict(['t'], T0 + 3_600_001, T0 + 3_700_000)).toBe('fresh');
  });

  it("a later 'max' revalidation does not undo an earlier immediate expiry (Next's latest-wins map would)", () => {
    const s = new TagState();
    s.apply({ tags: ['t'], stale: T0, expired: T0 }, T0);
    s.apply({ tags: ['t'], stale: T0 + 10, expired: T0 + 10 + 31_536_000_000 }, T0 + 10);
    expect(s.verdict(['t'], T0 - 1, T0 + 20)).toBe('expired');
    expect(s.verdict(['t'], T0 + 5, T0 + 20)).toBe('stale');
  });

  it('an entry written in the same millisecond as an invalidation is invalidated (ties go to the invalidation)', () => {
    const s = new TagState();
    s.apply({ tags: ['t'], stale: T0, expired: T0 }, T0);
    expect(s.verdict(['t'], T0, T0)).toBe('expired');
    expect(s.verdict(['t'], T0 + 1, T0 + 1)).toBe('fresh');
    const m = new TagState();
    m.apply({ tags: ['t'], stale: T0, expired: T0 + 1000 }, T0);
    expect(m.verdict(['t'], T0, T0)).toBe('stale');
  });

  it('merging is idempotent and order-independent, and survives JSON', () => {
    const records = Array.from({ length: 50 }, (_, i) => ({ tags: [`t${i % 7}`], stale: T0 + i * 13, expired: T0 + i * 13 + (i % 3) * 1000 }));
    const a = new TagState();
    const b = new TagState();
    for (const r of records) a.apply(r, T0 + 500);
    for (const r of [...records].reverse()) b.apply(r, T0 + 500);
    for (const r of records) b.apply(r, T0 + 500);
    expect(b.toJSON()).toEqual(a.toJSON());
    const c = TagState.fromJSON(JSON.parse(JSON.stringify(a.toJSON())), T0 + 500);
    expect(c.toJSON()).toEqual(a.toJSON());
    const merged = new TagState();
    merged.merge(a, T0 + 500);
    merged.merge(b, T0 + 500);
    expect(merged.toJSON()).toEqual(a.toJSON());
  });
});
