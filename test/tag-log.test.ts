import { spawn } from 'node:child_process';
import { existsSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { compact } from '../lib/maintenance';
import { loadHasher, lineChecksum } from '../lib/store/hash';
import { encodeInvalidation } from '../lib/tags/record';
import { Agent, LIBFAKETIME, sleep, type PageView } from './agent';
import { FaultyFs } from './fault-fs';
import { DIST, openCache, pollUntil, runInvalidator, seededRandom, randomBytes, tempDir, type TestCache } from './helpers';

const agents: Agent[] = [];
const caches: TestCache[] = [];
async function agent(dir: string, options: Parameters<typeof Agent.start>[1] = {}): Promise<Agent> {
  const a = await Agent.start(dir, options);
  agents.push(a);
  return a;
}
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(agents.splice(0).map((a) => a.kill()));
  for (const c of caches.splice(0)) await c.runtime.close();
});

const KEY = '/route-cache/APP_PAGE/x/$/post';

/** The leases (writers/<writer>) on the volume now. */
function leases(dir: string): string[] {
  return readdirSync(path.join(dir, 'apps/default/writers')).map((name) => path.join(dir, 'apps/default/writers', name));
}

/** Dates leases `ms` back, as if their writers (dead: nothing renews them) had been gone that long. */
function ageLeases(files: string[], ms: number): void {
  const then = new Date(Date.now() - ms);
  for (const file of files) utimesSync(file, then, then);
}

describe('invalidations across processes', () => {
  it("B sees A's invalidation after its refresh interval, and still after a restart", async () => {
    const dir = tempDir();
    const a = await agent(dir, { tagRefreshMs: 100 });
    const b = await agent(dir, { tagRefreshMs: 100 });
    await a.call('set', { key: KEY, marker: 'v1', tags: ['post'] });
    expect(await b.call<PageView | null>('get', { key: KEY })).toMatchObject({ html: '<p>v1</p>' });
    await a.call('revalidate', { tags: ['post'] });
    // B's next refresh (every 100 ms) brings it in: asked until then, not slept on.
    expect(
      await pollUntil(
        () => b.call('get', { key: KEY }),
        (view) => view === null,
      ),
    ).toBeNull();
    await b.kill();
    const b2 = await agent(dir, { tagRefreshMs: 100 });
    expect(await b2.call('get', { key: KEY })).toBeNull();
    await a.call('set', { key: KEY, marker: 'v2', tags: ['post'] });
    expect(await b2.call<PageView | null>('get', { key: KEY })).toMatchObject({ html: '<p>v2</p>' });
  });

  it("a 'max' revalidation on A makes B serve stale once, then the regenerated page is fresh", async () => {
    const dir = tempDir();
    const a = await agent(dir, { tagRefreshMs: 100 });
    const b = await agent(dir, { tagRefreshMs: 100 });
    await a.call('set', { key: KEY, marker: 'v1', tags: ['post'], revalidate: 60 });
    await a.call('revalidate', { tags: ['post'], durations: { expire: 31_536_000 } });
    // Until B's refresh brings the revalidation in, it serves v1 as fresh (age under a minute).
    const stale = await pollUntil(
      () => b.call<PageView>('get', { key: KEY }),
      (view) => view.ageMs > 60_000,
    );
    expect(stale.html).toBe('<p>v1</p>');
    expect(stale.ageMs).toBeGreaterThan(60_000);
    await b.call('set', { key: KEY, marker: 'v2', tags: ['post'], revalidate: 60 });
    const fresh = await b.call<PageView>('get', { key: KEY });
    expect(fresh.html).toBe('<p>v2</p>');
    expect(fresh.ageMs).toBeLessThan(60_000);
  });
});

describe('the log format', () => {
  it('skips and counts garbage: random bytes, a half line, a huge line, a future version; good lines still count', async () => {
    await loadHasher();
    const c = await openCache({ dir: tempDir() });
    caches.push(c);
    await c.runtime.ready();
    const good = (tag: string): string => encodeInvalidation({ tags: [tag], stale: 1, expired: 1 });
    const futureJson = JSON.stringify({ v: 2, tags: ['future'], s: 1, e: 1 });
    const lines = [
      good('before'),
      randomBytes(seededRandom(7), 500).toString('latin1').replace(/\n/g, ' ') + '\n',
      good('torn').slice(0, 20) + '\n',
      'x'.repeat(2 * 1024 * 1024) + '\n',
      `${lineChecksum(futureJson)} ${futureJson}\n`,
      good('after'),
    ];
    writeFileSync(path.join(c.runtime.layout.invalidationsDir, 'someone-1-abcdef.000000.log'), lines.join(''));
    await c.runtime.service.refreshTags();
    expect(c.runtime.service.tagVerdict(['before'], 0)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['after'], 0)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['future'], 0)).toBe('fresh');
    expect(c.runtime.service.tagVerdict(['torn'], 0)).toBe('fresh');
    expect(c.runtime.metrics.tagRecordsSkipped).toBe(4);
  });
});

describe('the cost of a refresh', () => {
  async function idleRefreshOps(segments: number): Promise<number> {
    // The refresh interval (1 ms) is measured with performance.now(): this process's runs on a fake one from the
    // start, stepped past the interval instead of slept past it.
    vi.useFakeTimers({ toFake: ['performance'] });
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir(), tagRefreshMs: 1 }, fs);
    caches.push(c);
    await c.runtime.ready();
    for (let i = 0; i < segments; i++) {
      writeFileSync(path.join(c.runtime.layout.invalidationsDir, `w${i}-1-abcdef.000000.log`), encodeInvalidation({ tags: [`t${i}`], stale: 1, expired: 1 }));
    }
    await c.handler.revalidateTag(['bump']);
    vi.advanceTimersByTime(2);
    await c.runtime.service.refreshTags();
    expect(c.runtime.service.tagVerdict([`t${segments - 1}`], 0)).toBe('expired');
    vi.advanceTimersByTime(2);
    const before = [...fs.counts.values()].reduce((a, b) => a + b, 0);
    await c.runtime.service.refreshTags();
    vi.useRealTimers();
    return [...fs.counts.values()].reduce((a, b) => a + b, 0) - before;
  }

  it('with nothing new is the same small constant with 1 and with 100 writers: open, read and close of the head', async () => {
    const one = await idleRefreshOps(1);
    const hundred = await idleRefreshOps(100);
    expect(one).toBe(3);
    expect(hundred).toBe(one);
  });
});

describe('compaction', () => {
  it('folds segments into a snapshot that a new process starts from, and deletes segments of gone writers', async () => {
    const dir = tempDir();
    const a = await agent(dir, { leaseTimeoutMs: 2000 });
    for (let i = 0; i < 20; i++) await a.call('revalidate', { tags: [`t${i}`] });
    await a.kill();
    ageLeases(leases(dir), 3000); // A was killed 3 s ago: past its 2 s lease
    const result = await compact({ dir, leaseTimeoutMs: 2000, logLevel: 'silent' });
    expect(result.recordsFolded).toBe(20);
    expect(result.segmentsDeleted).toBe(1);
    expect(readdirSync(path.join(dir, 'apps/default/tags/inval'))).toEqual([]);
    const b = await agent(dir);
    expect(await b.call('unexpired', { tags: Array.from({ length: 20 }, (_, i) => `t${i}`) })).toEqual([]);
    const again = await compact({ dir, leaseTimeoutMs: 2000, logLevel: 'silent' });
    expect(again.recordsFolded).toBe(0);
    expect(again.tags).toBe(20);
  });

  it('4 writers invalidating while compactions run and are SIGKILLed at random: no acknowledged invalidation is ever lost', async () => {
    const dir = tempDir();
    const lease = '3000';
    const reader = await agent(dir, { tagRefreshMs: 50, leaseTimeoutMs: 3000 });
    await reader.call('refresh');
    const acknowledged: string[] = [];
    // Wave 1 writers are killed mid-flight: their segments are left for the compactor to judge gone.
    const runWave = async (wave: number, ms: number) => {
      const acks = await Promise.all([0, 1, 2, 3].map((w) => runInvalidator(dir, ms, `w${wave}x${w}`, Number(lease), wave === 1 ? { killAfterMs: ms - 200 } : {})));
      acknowledged.push(...acks.flat());
    };
    let chaos = true;
    const random = seededRandom(11);
    let compactions = 0;
    let killed = 0;
    const compactor = (async () => {
      while (chaos) {
        const child = spawn(process.execPath, [path.join(DIST, 'bin/cli.js'), 'compact', '--dir', dir, '--lease-timeout-ms', lease, '--lock-stale-ms', '2000'], { stdio: 'ignore' });
        const timer = setTimeout(() => child.kill('SIGKILL'), Math.floor(random() * 300));
        const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
        clearTimeout(timer);
        compactions++;
        if (code === null) killed++;
        await reader.call('refresh');
      }
    })();
    const readerLease = leases(dir);
    await runWave(1, 3000);
    // Wave 1 was killed: date its leases past the 3 s timeout, so the compactor may delete their segments during wave 2.
    ageLeases(
      leases(dir).filter((file) => !readerLease.includes(file)),
      4000,
    );
    await runWave(2, 3000);
    chaos = false;
    await compactor;
    // A clean final compaction folds everything; a lock left by a killed run is stale after 2 s, and `wait` retries until then.
    const final = await compact({ dir, leaseTimeoutMs: 3000, lockStaleMs: 2000, logLevel: 'silent', wait: true });
    console.log(`chaos: ${acknowledged.length} acknowledged invalidations, ${compactions} compactions (${killed} SIGKILLed), final deleted ${final.segmentsDeleted} segments`);
    expect(acknowledged.length).toBeGreaterThan(200);
    expect(killed).toBeGreaterThan(0);
    // The long-lived reader, which refreshed all along, and a brand-new process both hold every one.
    expect(await reader.call('unexpired', { tags: acknowledged })).toEqual([]);
    const fresh = await agent(dir);
    expect(await fresh.call('unexpired', { tags: acknowledged })).toEqual([]);
    expect(readdirSync(path.join(dir, 'apps/default/tags/inval')).filter((n) => n.startsWith('.tmp.'))).toHaveLength(0);
  });

  it('a writer paused past its lease starts a new segment, so none of its appends is lost to a compactor that judged it gone', async () => {
    const dir = tempDir();
    const writer = await agent(dir, { leaseTimeoutMs: 2000 });
    const reader = await agent(dir, { tagRefreshMs: 50 });
    await writer.call('revalidate', { tags: ['before-pause'] });
    const pid = (writer as unknown as { child: { pid: number } }).child.pid;
    process.kill(pid, 'SIGSTOP');
    // Real time, not a faked one: the writer (another process) must find on its own clock, once resumed, that its lease lapsed.
    await sleep(2600);
    const result = await compact({ dir, leaseTimeoutMs: 2000, logLevel: 'silent' });
    expect(result.segmentsDeleted).toBe(1);
    process.kill(pid, 'SIGCONT');
    await writer.call('revalidate', { tags: ['after-pause'] });
    const segments = readdirSync(path.join(dir, 'apps/default/tags/inval'));
    expect(segments.some((n) => n.endsWith('.000001.log'))).toBe(true);
    expect(await reader.call('unexpired', { tags: ['before-pause', 'after-pause'] })).toEqual([]);
  });
});

const hasFaketime = existsSync(LIBFAKETIME);
if (!hasFaketime) console.log('SKIP clock skew: libfaketime not installed (apt-get install faketime)');

describe.skipIf(!hasFaketime)('clock skew of ±60 s between replicas', () => {
  it('loses no invalidation, makes no regeneration loop, and reports true ages', async () => {
    const dir = tempDir();
    const behind = await agent(dir, { clockShift: '-60s', tagRefreshMs: 50 });
    const ahead = await agent(dir, { clockShift: '+60s', tagRefreshMs: 50 });
    const exact = await agent(dir, { tagRefreshMs: 50 });
    const clocks = await Promise.all([behind.call<number>('now'), ahead.call<number>('now')]);
    expect(clocks[1] - clocks[0]).toBeGreaterThan(110_000);

    await behind.call('set', { key: KEY, marker: 'v1', tags: ['post'], revalidate: 30 });
    for (const reader of [ahead, exact, behind]) {
      const view = await reader.call<PageView>('get', { key: KEY });
      expect(view.html).toBe('<p>v1</p>');
      expect(view.ageMs).toBeGreaterThanOrEqual(0);
      expect(view.ageMs).toBeLessThan(5_000); // not 60 or 120 s: a reader ahead would otherwise see it stale forever
    }
    // The replica ahead invalidates; everyone sees it, including the one 60 s behind.
    await ahead.call('revalidate', { tags: ['post'] });
    for (const reader of [exact, behind, ahead])
      expect(
        await pollUntil(
          () => reader.call('get', { key: KEY }),
          (view) => view === null,
        ),
      ).toBeNull();
    // The replica behind regenerates: its entry is newer than the invalidation on the volume's clock. The 20 ms
    // are real time on that shared clock, past the replicas' calibration error (a few ms), not a wait for any logic.
    await sleep(20);
    await behind.call('set', { key: KEY, marker: 'v2', tags: ['post'], revalidate: 30 });
    for (const reader of [ahead, exact, behind]) expect(await reader.call<PageView>('get', { key: KEY })).toMatchObject({ html: '<p>v2</p>' });
    // And the other way round.
    await behind.call('revalidate', { tags: ['post'] });
    for (const reader of [exact, behind, ahead])
      expect(
        await pollUntil(
          () => reader.call('get', { key: KEY }),
          (view) => view === null,
        ),
      ).toBeNull();
    await sleep(20);
    await ahead.call('set', { key: KEY, marker: 'v3', tags: ['post'], revalidate: 30 });
    for (const reader of [ahead, exact, behind]) expect(await reader.call<PageView>('get', { key: KEY })).toMatchObject({ html: '<p>v3</p>' });
  });
});
