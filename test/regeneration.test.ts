import { existsSync, readdirSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../bin/cli';
import { hashKey } from '../lib/store/hash';
import { FaultyFs } from './fault-fs';
import { openCache, tempDir, walk, type TestCache } from './helpers';
import { appPage } from './values';

const opened: TestCache[] = [];
/** A replica on `dir`, opened at once: its volume clock is calibrated before a test moves fake time. */
async function cache(dir: string, options: Record<string, unknown> = {}, fs?: FaultyFs): Promise<TestCache> {
  const c = await openCache({ dir, tagRefreshMs: 50, regenerationLeaseMs: 2000, ...options }, fs);
  opened.push(c);
  expect(await c.runtime.ready()).toBe(true);
  return c;
}
afterEach(async () => {
  vi.useRealTimers();
  for (const c of opened.splice(0)) await c.runtime.close();
});

const KEY = '/route-cache/APP_PAGE/regen/$/page';
const page = (marker: string, revalidate: number, expire = revalidate * 100) => ({
  value: { ...appPage(), html: `<p>${marker}</p>`, headers: { 'x-next-cache-tags': 'post' } },
  ctx: { kind: 'APP_PAGE', cacheControl: { revalidate, expire } },
});
/** What Next makes of an answer: stale when its age is past the revalidate window. */
function nextSees(got: { lastModified: number; cacheControl?: { revalidate: number | false } } | null): 'miss' | 'fresh' | 'stale' {
  if (!got) return 'miss';
  const revalidate = got.cacheControl?.revalidate;
  return typeof revalidate === 'number' && Date.now() - got.lastModified > revalidate * 1000 ? 'stale' : 'fresh';
}
/** What Next 16.0 makes of it in a process that never set the route: it ignores the answer's cacheControl and judges by a 1 s default. */
function next16Point0Sees(got: { lastModified: number } | null): 'miss' | 'fresh' | 'stale' {
  if (!got) return 'miss';
  return Date.now() - got.lastModified > 1000 ? 'stale' : 'fresh';
}
const leaseFiles = (dir: string): string[] => walk(dir).filter((p) => p.endsWith('.lease'));

describe('one regeneration per staleness across processes', () => {
  it('of three processes finding an entry stale by time, one answers stale (Next regenerates there) and the others fresh; its set gives the lease back', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const [a, b, c] = [await cache(dir), await cache(dir), await cache(dir)];
    await a.handler.set(KEY, page('v1', 1).value, page('v1', 1).ctx);
    vi.advanceTimersByTime(1500);
    const seen = [];
    for (const replica of [a, b, c, b, c, a]) seen.push(nextSees(await replica.handler.get(KEY, { kind: 'APP_PAGE' })));
    expect(seen.filter((s) => s === 'stale')).toHaveLength(1);
    expect(seen.filter((s) => s === 'fresh')).toHaveLength(5);
    expect(leaseFiles(dir)).toHaveLength(1);
    const winner = [a, b, c].find((r) => r.runtime.metrics.regenerationsClaimed === 1)!;
    await winner.handler.set(KEY, page('v2', 1).value, page('v2', 1).ctx);
    expect(leaseFiles(dir)).toHaveLength(0);
    for (const replica of [a, b, c]) expect((await replica.handler.get(KEY, { kind: 'APP_PAGE' }))!.value).toMatchObject({ html: '<p>v2</p>' });
  });

  it('a page inside its window is handed as just written: Next 16.0, judging by its 1 s default in a pod that did not render it, regenerates nothing; past its window the lease holder hands its real age', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const [a, b] = [await cache(dir), await cache(dir)];
    await a.handler.set(KEY, page('v1', 5).value, page('v1', 5).ctx);
    vi.advanceTimersByTime(2500);
    const inside = await b.handler.get(KEY, { kind: 'APP_PAGE' });
    expect(next16Point0Sees(inside)).toBe('fresh');
    expect(nextSees(inside)).toBe('fresh');
    vi.advanceTimersByTime(3000);
    const past = await b.handler.get(KEY, { kind: 'APP_PAGE' });
    expect(b.runtime.metrics.regenerationsClaimed).toBe(1);
    expect(next16Point0Sees(past)).toBe('stale');
    expect(nextSees(past)).toBe('stale');
    expect(Date.now() - past!.lastModified).toBeGreaterThanOrEqual(5500);
  });

  it("a 'max' revalidation: one process regenerates, the others serve the entry fresh meanwhile", async () => {
    const dir = tempDir();
    const [a, b] = [await cache(dir), await cache(dir)];
    await a.handler.set(KEY, page('v1', 60).value, page('v1', 60).ctx);
    await a.handler.revalidateTag(['post'], { expire: 31_536_000 });
    await new Promise((r) => setTimeout(r, 60)); // b's refresh interval (50 ms)
    const first = nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }));
    const second = nextSees(await b.handler.get(KEY, { kind: 'APP_PAGE' }));
    expect([first, second].sort()).toEqual(['fresh', 'stale']);
    expect(b.runtime.metrics.regenerationsDeferred + a.runtime.metrics.regenerationsDeferred).toBe(1);
  });

  it('a holder that dies is taken over once its lease runs out; nothing is served past expire', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const [a, b] = [await cache(dir), await cache(dir)];
    await a.handler.set(KEY, page('v1', 1, 10).value, page('v1', 1, 10).ctx);
    vi.advanceTimersByTime(1500);
    expect(nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale'); // a takes the lease, then "dies" (never sets)
    expect(nextSees(await b.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('fresh');
    vi.advanceTimersByTime(2100); // the lease (2 s, judged from the lease file's mtime on the volume clock) runs out
    expect(nextSees(await b.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale');
    expect(b.runtime.metrics.regenerationsClaimed).toBe(1);
    vi.advanceTimersByTime(7000); // past expire (10 s): a miss, lease or not
    expect(await a.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
    expect(await b.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
  });

  it('a lease taken before the version it is asked about no longer holds: a new version that goes stale is regenerated, not deferred to a dead holder', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const [a, b] = [await cache(dir, { regenerationLeaseMs: 10_000 }), await cache(dir, { regenerationLeaseMs: 10_000 })];
    await a.handler.set(KEY, page('v1', 1).value, page('v1', 1).ctx);
    vi.advanceTimersByTime(1500);
    expect(nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale'); // a takes the lease and "dies"
    expect(nextSees(await b.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('fresh');
    // A new version lands meanwhile (written by b here; a holder that wrote it and died before giving
    // the lease back leaves the same state): the lease file stays, taken before this version.
    await b.handler.set(KEY, page('v2', 1).value, page('v2', 1).ctx);
    expect(leaseFiles(dir)).toHaveLength(1);
    vi.advanceTimersByTime(1500); // v2 is stale; a's lease (10 s) has not run out
    expect(nextSees(await b.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale');
    expect(b.runtime.metrics.regenerationsClaimed).toBe(1);
    expect(nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('fresh'); // b's lease holds for v2
  });

  it('a lease file dated further ahead than the allowed clock skew is not trusted', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const a = await cache(dir);
    await a.handler.set(KEY, page('v1', 1).value, page('v1', 1).ctx);
    const lease = a.runtime.layout.leasePath(hashKey(KEY), 'shared');
    mkdirSync(path.dirname(lease), { recursive: true });
    writeFileSync(lease, JSON.stringify({ v: 1, w: 'forger' }));
    const future = new Date(Date.now() + 10 * 365 * 86_400_000);
    utimesSync(lease, future, future);
    vi.advanceTimersByTime(1500);
    expect(nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale');
    expect(a.runtime.metrics.regenerationsClaimed).toBe(1);
  });

  it('regenerationLeaseMs 0 turns leases off: every process regenerates what it finds stale, as Next alone does', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const [a, b] = [await cache(dir, { regenerationLeaseMs: 0 }), await cache(dir, { regenerationLeaseMs: 0 })];
    await a.handler.set(KEY, page('v1', 1).value, page('v1', 1).ctx);
    vi.advanceTimersByTime(1500);
    expect(nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale');
    expect(nextSees(await b.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale');
    expect(leaseFiles(dir)).toHaveLength(0);
  });

  it('a fresh hit does nothing extra: no lease, no extra file operation', async () => {
    const fs = new FaultyFs();
    const dir = tempDir();
    const a = await cache(dir, {}, fs);
    await a.handler.set(KEY, page('v1', 60).value, page('v1', 60).ctx);
    await a.handler.get(KEY, { kind: 'APP_PAGE' });
    const before = fs.opened.length;
    await a.handler.get(KEY, { kind: 'APP_PAGE' });
    expect(fs.opened.slice(before).filter((p) => p.includes('/leases/'))).toEqual([]);
    expect(fs.opened.length - before).toBe(1); // the entry file itself (the tier is off in these tests)
  });
});

describe('miss coalescing (coalesceMissesMs, opt-in)', () => {
  it('after a hard invalidation, a process that misses while another renders the key waits for that render and serves it', async () => {
    const dir = tempDir();
    const [a, b] = [await cache(dir, { coalesceMissesMs: 3000 }), await cache(dir, { coalesceMissesMs: 3000 })];
    await a.handler.set(KEY, page('v1', 60).value, page('v1', 60).ctx);
    await a.handler.revalidateTag(['post']);
    await new Promise((r) => setTimeout(r, 60));
    expect(await a.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull(); // a takes the render lease: it renders
    const waiting = b.handler.get(KEY, { kind: 'APP_PAGE' });
    await new Promise((r) => setTimeout(r, 150));
    await a.handler.set(KEY, page('v2', 60).value, page('v2', 60).ctx); // a's render lands
    expect((await waiting)!.value).toMatchObject({ html: '<p>v2</p>' });
    expect(b.runtime.metrics).toMatchObject({ coalescedWaits: 1, coalescedHits: 1 });
  });

  it('a miss with no contender costs one exclusive create, and renders at once', async () => {
    const fs = new FaultyFs();
    const dir = tempDir();
    const a = await cache(dir, { coalesceMissesMs: 3000 }, fs);
    await a.runtime.ready();
    const started = performance.now();
    const before = fs.opened.length;
    expect(await a.handler.get(`${KEY}/absent`, { kind: 'APP_PAGE' })).toBeNull();
    expect(performance.now() - started).toBeLessThan(3000);
    const created = fs.opened.slice(before).filter((p) => p.includes('/leases/'));
    expect(created.length).toBeGreaterThan(0);
    expect(a.runtime.metrics.coalescedWaits).toBe(0);
  });
});

describe('leases and the CLI', () => {
  it('stats shows them; gc removes those of processes that died mid-render', async () => {
    const dir = tempDir();
    const a = await cache(dir);
    const lease = a.runtime.layout.leasePath(hashKey(KEY), 'shared');
    mkdirSync(path.dirname(lease), { recursive: true });
    writeFileSync(lease, JSON.stringify({ v: 1, w: 'dead' }));
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(lease, old, old);
    let out = '';
    expect(
      await main(
        ['--json', 'stats', '--dir', dir],
        (t) => (out += t),
        () => {},
      ),
    ).toBe(0);
    expect(JSON.parse(out).leases).toEqual({ total: 1, stale: 1 });
    out = '';
    expect(
      await main(
        ['--json', 'gc', '--dir', dir],
        (t) => (out += t),
        () => {},
      ),
    ).toBe(0);
    expect(JSON.parse(out).leasesRemoved).toBe(1);
    expect(existsSync(lease)).toBe(false);
    expect(readdirSync(path.dirname(lease))).toEqual([]);
  });
});

describe("Next's own staleness check agrees with the service's (found by the end-to-end test under load)", () => {
  // 5 s windows: the volume clock is recalibrated on the real clock meanwhile, which may add some ms to an age here.
  it('a hit judged fresh just before its window ends is still fresh when Next judges it a moment later', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const a = await cache(dir);
    await a.handler.set(KEY, page('v1', 5).value, page('v1', 5).ctx);
    vi.advanceTimersByTime(4800);
    const got = await a.handler.get(KEY, { kind: 'APP_PAGE' });
    vi.advanceTimersByTime(300); // Next looks at the answer on its own clock, after the read returned (a busy event loop)
    // Had Next found it stale, it would regenerate here with no lease: one more render per pod.
    expect(nextSees(got)).toBe('fresh');
    expect(a.runtime.metrics.regenerationsClaimed).toBe(0);
  });

  it('a copy in memory that goes stale while its identity check waits is not served as fresh', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const fs = new FaultyFs();
    const dir = tempDir();
    const a = await cache(dir, { memoryCacheBytes: 10 * 1024 * 1024, memoryTrustMs: 100 }, fs);
    await a.handler.set(KEY, page('v1', 5).value, page('v1', 5).ctx);
    await a.handler.get(KEY, { kind: 'APP_PAGE' }); // kept in memory
    vi.advanceTimersByTime(4800); // past the copy's trust window: the next hit checks its identity on the volume
    const entryFile = (p: string) => p.includes(hashKey(KEY)) && !p.includes('/leases/');
    fs.add({ op: 'open', path: entryFile, times: 1, fault: { hang: true } });
    const opened = fs.opened.length;
    const answer = a.handler.get(KEY, { kind: 'APP_PAGE' });
    await vi.waitUntil(() => fs.opened.slice(opened).some(entryFile));
    vi.advanceTimersByTime(300); // the check is slow: the window (5 s) ends meanwhile
    fs.releaseHung();
    const got = await answer;
    // Stale now: answered through the lease (this process takes it and regenerates), not as a fresh copy.
    expect(a.runtime.metrics.memoryChecks).toBe(1);
    expect(nextSees(got)).toBe('stale');
    expect(a.runtime.metrics.regenerationsClaimed).toBe(1);
  });

  it('a process that read the old version, then takes the lease after its holder wrote the new one and gave it back, does not regenerate it again', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const fs = new FaultyFs();
    const a = await cache(dir);
    const b = await cache(dir, {}, fs);
    await a.handler.set(KEY, page('v1', 1).value, page('v1', 1).ctx);
    vi.advanceTimersByTime(1500);
    expect(nextSees(await a.handler.get(KEY, { kind: 'APP_PAGE' }))).toBe('stale'); // a regenerates
    // b reads v1 (stale) and goes for the lease; it gets there only after a has written v2 and given the lease back.
    const leaseFile = (p: string) => p.includes('/leases/');
    fs.add({ op: 'open', path: leaseFile, times: 1, fault: { hang: true } });
    const opened = fs.opened.length;
    const answer = b.handler.get(KEY, { kind: 'APP_PAGE' });
    await vi.waitUntil(() => fs.opened.slice(opened).some(leaseFile));
    await a.handler.set(KEY, page('v2', 1).value, page('v2', 1).ctx);
    expect(leaseFiles(dir)).toHaveLength(0);
    fs.releaseHung();
    expect(nextSees(await answer)).toBe('fresh');
    expect(b.runtime.metrics.regenerationsClaimed).toBe(0);
    expect(leaseFiles(dir)).toHaveLength(0); // taken, found useless, given back
    expect((await b.handler.get(KEY, { kind: 'APP_PAGE' }))!.value).toMatchObject({ html: '<p>v2</p>' });
  });
});
