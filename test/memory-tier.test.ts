import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../bin/cli';
import { hashKey, loadHasher } from '../lib/store/hash';
import { MemoryTier, servedRecord } from '../lib/service/memory-tier';
import { bindUseCacheHandler } from '../lib/next/use-cache';
import { Agent, measureCoherence, sleep } from './agent';
import { FaultyFs } from './fault-fs';
import { openCache, tempDir, type TestCache } from './helpers';
import { appPage, PAGE_CTX, sameValue } from './values';

const opened: TestCache[] = [];
async function cache(options: Parameters<typeof openCache>[0], fs?: FaultyFs): Promise<TestCache> {
  const c = await openCache({ memoryCacheBytes: 10 * 1024 * 1024, tagRefreshMs: 100, memoryTrustMs: 1000, ...options }, fs);
  opened.push(c);
  return c;
}
afterEach(async () => {
  vi.useRealTimers();
  for (const c of opened.splice(0)) await c.runtime.close();
});

const PAGE = '/route-cache/APP_PAGE/mem/$/page';
const tagged = (marker: string, tags = 'post', revalidate = 60) => ({
  value: { ...appPage({ segments: 3 }), html: `<p>${marker}</p>`, headers: { 'x-next-cache-tags': tags } },
  ctx: { kind: 'APP_PAGE', cacheControl: { revalidate, expire: revalidate * 100 } },
});
const htmlOf = (got: { value: unknown } | null): string | undefined => (got?.value as { html?: string } | null)?.html;

const PENDING = Symbol('pending');
/** What `promise` has already resolved to, else PENDING: tells an answer given at once from one that took an async step. */
function answeredAtOnce<T>(promise: Promise<T>): Promise<T | typeof PENDING> {
  return Promise.race([promise, Promise.resolve(PENDING)]);
}

describe('memory tier', () => {
  it('a hot get is served from memory, byte for byte, without touching the volume', async () => {
    const fs = new FaultyFs();
    const c = await cache({ dir: tempDir() }, fs);
    const page = appPage({ segments: 20 });
    await c.handler.set(PAGE, page, PAGE_CTX);
    expect(sameValue((await c.handler.get(PAGE, { kind: 'APP_PAGE' }))!.value, page)).toBe(true);
    const opens = fs.counts.get('open') ?? 0;
    const hot = await c.handler.get(PAGE, { kind: 'APP_PAGE' });
    expect(sameValue(hot!.value, page)).toBe(true);
    expect(fs.counts.get('open') ?? 0).toBe(opens);
    expect(c.runtime.metricsSnapshot()).toMatchObject({ memoryHits: 1, memory: { entries: 1 } });
  });

  it('an invalidation recorded by another process is honoured at the next refresh; the regenerated version is read from the volume', async () => {
    const dir = tempDir();
    const a = await cache({ dir });
    const b = await cache({ dir });
    await a.handler.set(PAGE, tagged('v1').value, tagged('v1').ctx);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>');
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>');
    await a.handler.revalidateTag(['post']);
    await sleep(150); // b's refresh interval (100 ms) passes: the next get refreshes first
    expect(await b.handler.get(PAGE, { kind: 'APP_PAGE' })).toBeNull();
    await a.handler.set(PAGE, tagged('v2').value, tagged('v2').ctx);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v2</p>');
  });

  it("another process's rewrite (a regeneration, res.revalidate(), no tag): served until the copy's trust window ends, then its identity is checked and the new version read", async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const dir = tempDir();
    const a = await cache({ dir });
    const b = await cache({ dir });
    await a.handler.set(PAGE, tagged('v1', '').value, tagged('v1', '').ctx);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>');
    await a.handler.set(PAGE, tagged('v2', '').value, tagged('v2', '').ctx);
    vi.advanceTimersByTime(500);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>'); // within its trust window
    vi.advanceTimersByTime(600);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v2</p>');
    expect(b.runtime.metrics.memoryChecks).toBe(1);
    // Confirmed unchanged: trusted again without a read.
    vi.advanceTimersByTime(1100);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v2</p>');
    expect(b.runtime.metrics.memoryChecks).toBe(2);
    expect(b.runtime.metrics.memoryHits).toBe(2);
  });

  it('a copy that went stale by time is not served from memory: the volume is read, where another pod may already have put a fresh version', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.now() });
    const dir = tempDir();
    const a = await cache({ dir, memoryTrustMs: 60_000 });
    const b = await cache({ dir, memoryTrustMs: 60_000 });
    await a.handler.set(PAGE, tagged('v1', '', 2).value, tagged('v1', '', 2).ctx);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>');
    vi.advanceTimersByTime(2500); // past revalidate (2 s), well within the trust window
    await a.handler.set(PAGE, tagged('v2', '', 2).value, tagged('v2', '', 2).ctx);
    expect(htmlOf(await b.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v2</p>');
  });

  it('a hot get needing no I/O is answered at once (no async step) and counted as any memory hit; a due tag refresh, an ended trust window or an invalidation sends it the full way', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const fs = new FaultyFs();
    const c = await cache({ dir: tempDir(), tagRefreshMs: 5_000, memoryTrustMs: 10_000 }, fs);
    const page = tagged('v1');
    await c.handler.set(PAGE, page.value, page.ctx);
    expect(htmlOf(await c.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>'); // read from the volume, kept
    const opens = fs.counts.get('open') ?? 0;
    const before = { ...c.runtime.metrics };

    const atOnce = await answeredAtOnce(c.handler.get(PAGE, { kind: 'APP_PAGE' }));
    expect(atOnce).not.toBe(PENDING);
    expect(sameValue((atOnce as { value: unknown }).value, page.value)).toBe(true);
    expect(fs.counts.get('open') ?? 0).toBe(opens);
    expect(c.runtime.metrics).toMatchObject({ gets: before.gets + 1, hits: before.hits + 1, memoryHits: before.memoryHits + 1 });

    vi.advanceTimersByTime(5_100); // the tag view's refresh is due: the get waits for it, then serves from memory
    const afterRefresh = c.handler.get(PAGE, { kind: 'APP_PAGE' });
    expect(await answeredAtOnce(afterRefresh)).toBe(PENDING);
    expect(htmlOf(await afterRefresh)).toBe('<p>v1</p>');
    expect(await answeredAtOnce(c.handler.get(PAGE, { kind: 'APP_PAGE' }))).not.toBe(PENDING);

    vi.advanceTimersByTime(4_950); // the copy's trust window ends (its refresh is not due yet): its identity is checked first
    const checked = c.handler.get(PAGE, { kind: 'APP_PAGE' });
    expect(await answeredAtOnce(checked)).toBe(PENDING);
    expect(htmlOf(await checked)).toBe('<p>v1</p>');
    expect(c.runtime.metrics.memoryChecks).toBe(1);

    await c.handler.revalidateTag(['post']); // judged on every hit, the fast one included
    expect(await answeredAtOnce(c.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe(PENDING);
    expect(await c.handler.get(PAGE, { kind: 'APP_PAGE' })).toBeNull();
  });

  it('the at-once path serves nothing the full path would not: a key that is not a string is a miss even when its text is in memory, and a ctx of the wrong shape rejects rather than throws', async () => {
    const c = await cache({ dir: tempDir() });
    const fetchKey = '1';
    await c.handler.set(fetchKey, { kind: 'FETCH', data: { headers: {}, body: 'x', url: 'https://api.example/1', status: 200 }, revalidate: 60 }, { fetchCache: true });
    expect(await c.handler.get(fetchKey, { kind: 'FETCH' })).not.toBeNull();
    expect(await c.handler.get(fetchKey, { kind: 'FETCH' })).not.toBeNull(); // from memory
    expect(await c.handler.get(1 as unknown as string, { kind: 'FETCH' })).toBeNull();
    expect(c.runtime.metrics.misses['bad-key']).toBe(1);

    let answer: Promise<unknown> | undefined;
    expect(() => (answer = c.handler.get(fetchKey, { kind: 'FETCH', tags: 5 } as never))).not.toThrow();
    await expect(answer).rejects.toThrow(TypeError);
  });

  it('purge, a seeded or a vanished volume: past the trust window, nothing that is not on the volume is served', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const dir = tempDir();
    const a = await cache({ dir });
    await a.handler.set(PAGE, tagged('v1').value, tagged('v1').ctx);
    expect(htmlOf(await a.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v1</p>');
    expect(
      await main(
        ['purge', '--key', PAGE, '--dir', dir],
        () => {},
        () => {},
      ),
    ).toBe(0);
    vi.advanceTimersByTime(1100);
    expect(await a.handler.get(PAGE, { kind: 'APP_PAGE' })).toBeNull();
    // The volume goes away and comes back holding something else.
    await a.handler.set(PAGE, tagged('v2').value, tagged('v2').ctx);
    expect(htmlOf(await a.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v2</p>');
    const file = a.runtime.layout.entryPath(hashKey(PAGE), 'shared');
    const saved = readFileSync(file);
    rmSync(path.join(dir, 'apps'), { recursive: true });
    vi.advanceTimersByTime(1100);
    expect(await a.handler.get(PAGE, { kind: 'APP_PAGE' })).toBeNull();
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, saved);
    expect(htmlOf(await a.handler.get(PAGE, { kind: 'APP_PAGE' }))).toBe('<p>v2</p>');
  });

  it('stays within its bound whatever the keys: the least recently used go, and evictions are counted', async () => {
    const c = await cache({ dir: tempDir(), memoryCacheBytes: 256 * 1024 });
    const html = 'x'.repeat(20 * 1024);
    for (let i = 0; i < 40; i++) {
      const key = `${PAGE}/${i}`;
      await c.handler.set(key, { ...appPage(), html }, PAGE_CTX);
      // Read twice: once the tier is full, a key enters on its second read (see the next test).
      await c.handler.get(key, { kind: 'APP_PAGE' });
      await c.handler.get(key, { kind: 'APP_PAGE' });
    }
    const { memory } = c.runtime.metricsSnapshot();
    expect(memory.bytes).toBeLessThanOrEqual(256 * 1024);
    expect(memory.entries).toBeGreaterThan(0);
    expect(memory.evictions).toBeGreaterThan(0);
    expect(memory.entries + memory.evictions).toBe(40);
  });

  it('once full, a scan of keys read once evicts nothing (they are turned away and counted); a key read again enters', async () => {
    const c = await cache({ dir: tempDir(), memoryCacheBytes: 256 * 1024 });
    const html = 'x'.repeat(20 * 1024);
    const keys = Array.from({ length: 40 }, (_, i) => `${PAGE}/${i}`);
    for (const key of keys) await c.handler.set(key, { ...appPage(), html }, PAGE_CTX);
    for (const key of keys) await c.handler.get(key, { kind: 'APP_PAGE' });
    const afterScan = c.runtime.metricsSnapshot().memory;
    expect(afterScan.evictions).toBe(0);
    expect(afterScan.entries).toBeGreaterThan(0);
    expect(afterScan.entries + afterScan.rejections).toBe(40);
    // The hot pages (the first ones read) are still served from memory.
    const hitsBefore = c.runtime.metrics.memoryHits;
    await c.handler.get(keys[0]!, { kind: 'APP_PAGE' });
    expect(c.runtime.metrics.memoryHits).toBe(hitsBefore + 1);
    // A key turned away is let in on its second read.
    await c.handler.get(keys[39]!, { kind: 'APP_PAGE' });
    const afterSecondRead = c.runtime.metricsSnapshot().memory;
    expect(afterSecondRead.evictions).toBeGreaterThan(0);
    await c.handler.get(keys[39]!, { kind: 'APP_PAGE' });
    expect(c.runtime.metrics.memoryHits).toBe(hitsBefore + 2);
    expect(afterSecondRead.bytes).toBeLessThanOrEqual(256 * 1024);
  });

  it('a damaged file never enters memory', async () => {
    const c = await cache({ dir: tempDir() });
    await c.handler.set(PAGE, tagged('v1').value, tagged('v1').ctx);
    const file = c.runtime.layout.entryPath(hashKey(PAGE), 'shared');
    const bytes = readFileSync(file);
    bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0xff;
    writeFileSync(file, bytes);
    expect(await c.handler.get(PAGE, { kind: 'APP_PAGE' })).toBeNull();
    expect(c.runtime.metricsSnapshot().memory.entries).toBe(0);
  });

  it("takes Next's cacheMaxMemorySize unless memoryCacheBytes is set; 0 from either turns it off", async () => {
    const dir = tempDir();
    const fromNext = await openCache({ dir });
    opened.push(fromNext);
    // openCache turns the tier off (memoryCacheBytes 0): an explicit option wins over what Next passes.
    fromNext.runtime.useNextMemorySize(50 * 1024 * 1024);
    expect(fromNext.runtime.metricsSnapshot().memory.maxBytes).toBe(0);
    const { resolveOptions } = await import('../lib/config');
    const { Runtime } = await import('../lib/service/runtime');
    const runtime = new Runtime({ settings: { ...resolveOptions({ logLevel: 'silent' }, {}), dir }, createParents: true });
    expect(runtime.metricsSnapshot().memory.maxBytes).toBe(50 * 1024 * 1024);
    runtime.useNextMemorySize(0);
    expect(runtime.metricsSnapshot().memory.maxBytes).toBe(0);
    runtime.useNextMemorySize(1024 * 1024);
    expect(runtime.metricsSnapshot().memory.maxBytes).toBe(1024 * 1024);
    await runtime.close();
  });

  it("'use cache' entries share the tier", async () => {
    const c = await cache({ dir: tempDir() });
    const useCache = bindUseCacheHandler(() => c.runtime);
    const body = new TextEncoder().encode('computed');
    const stream = () => new ReadableStream<Uint8Array>({ start: (ctl) => (ctl.enqueue(body), ctl.close()) });
    await useCache.set('uc-key', Promise.resolve({ value: stream(), tags: [], stale: 0, timestamp: Date.now(), expire: 600, revalidate: 60 }));
    expect(await useCache.get('uc-key', [])).toBeDefined();
    expect(await useCache.get('uc-key', [])).toBeDefined();
    expect(c.runtime.metrics.memoryHits).toBe(1);
  });
});

describe('memory tier across processes', () => {
  it("rewrites, invalidations and purges on A while B reads in a loop: B never serves a version older than the volume's for longer than the bound", { timeout: 60_000 }, async () => {
    const dir = tempDir('nvc-memory-');
    const refreshMs = 200;
    // The trust window (= the refresh interval) + one refresh + scheduling slack on a busy machine.
    const bound = refreshMs + 200 + 500;
    const a = await Agent.start(dir, { tagRefreshMs: refreshMs });
    const b = await Agent.start(dir, { tagRefreshMs: refreshMs });
    try {
      const result = await measureCoherence(a, b, {
        purge: (key) =>
          main(
            ['purge', '--key', key, '--dir', dir],
            () => {},
            () => {},
          ),
        settleMs: bound,
      });
      console.log(`memory coherence: ${result.reads} reads, ${result.memoryHits} from memory, longest served after being superseded ${result.worstMs} ms (bound ${bound} ms)${result.worstCase ? `: ${result.worstCase}` : ''}`);
      expect(result.memoryHits).toBeGreaterThan(0);
      expect(result.worstMs).toBeLessThanOrEqual(bound);
      expect(result.lastServed).toBe(result.lastPublished);
    } finally {
      await Promise.all([a.kill(), b.kill()]);
    }
  });
});

describe('memory tier admission (the tier alone)', () => {
  const identity = { dev: 1, ino: 2, size: 3, mtimeMs: 4, ctimeMs: 5 };
  const recordOf = (key: string) => ({ key, kind: 'FETCH', writtenAt: 0, tags: [], value: { kind: 'FETCH', data: { body: 'x'.repeat(1000), headers: { a: 'b' } } } });

  it('a scan of a hundred thousand keys read once, while the tier keeps growing, is turned away without a hang; a key read twice gets in', async () => {
    await loadHasher();
    const tier = new MemoryTier(64 * 1024, 1000);
    for (let i = 0; i < 100_000; i++) tier.put('ns', recordOf(`/scan/${i}`), identity);
    expect(tier.stats().rejections).toBeGreaterThan(99_000);
    // The bound grows while a table of turned-away keys sized for the old one is in use (Next passes its size late).
    tier.resize(64 * 1024 * 1024);
    for (let i = 0; i < 40_000; i++) tier.put('ns', recordOf(`/more/${i}`), identity);
    const stats = tier.stats();
    expect(stats.bytes).toBeLessThanOrEqual(64 * 1024 * 1024);
    expect(stats.rejections).toBeGreaterThan(100_000);
    expect(tier.get('ns', '/more/39999')).toBeUndefined();
    tier.put('ns', recordOf('/more/39999'), identity); // its second read
    expect(tier.get('ns', '/more/39999')).toBeDefined();
  });

  it("keeps its own copy of a record: equal to it, not the decoder's objects; a Buffer that is part of a larger one (the file read) gets its own memory", async () => {
    await loadHasher();
    const tier = new MemoryTier(1024 * 1024, 1000);
    const file = Buffer.allocUnsafeSlow(64);
    file.write('headerrsc bytestree');
    const rsc = file.subarray(6, 15); // a part of the file, as the decoder hands it out
    const tree = Buffer.allocUnsafeSlow(4);
    tree.write('tree'); // owns its memory
    const record = { key: '/page', kind: 'APP_PAGE', writtenAt: 0, tags: ['t'], value: { kind: 'APP_PAGE', html: '<p>x</p>', rscData: rsc, segmentData: new Map([['/_tree', tree]]), headers: { 'x-next-cache-tags': 't' } } };
    tier.put('ns', record, identity);
    const kept = tier.get('ns', '/page')!.record;
    expect(kept).not.toBe(record);
    expect(kept.tags).not.toBe(record.tags);
    expect(kept.value).not.toBe(record.value);
    expect(sameValue(kept.value, record.value)).toBe(true);
    const value = kept.value as typeof record.value;
    expect(value.rscData.equals(rsc)).toBe(true);
    expect(value.rscData.buffer).not.toBe(file.buffer);
    expect(value.rscData.byteLength).toBe(value.rscData.buffer.byteLength);
    expect(value.segmentData).toBeInstanceOf(Map);
    expect(value.segmentData.get('/_tree')).toBe(tree);
  });

  it('keeps and serves keys named __proto__ as own keys (a fetch header from Object.fromEntries, a body from JSON.parse)', async () => {
    await loadHasher();
    const tier = new MemoryTier(1024 * 1024, 1000);
    const headers = Object.fromEntries([['__proto__', 'h']]) as Record<string, string>;
    const body = JSON.parse('{"__proto__": {"isAdmin": true}}') as Record<string, unknown>;
    const record = { key: '/f', kind: 'FETCH', writtenAt: 0, tags: [], value: { kind: 'FETCH', data: { headers, body: 'b', url: 'u', status: 200 }, extra: body } };
    tier.put('ns', record, identity);
    for (const got of [tier.get('ns', '/f')!.record, servedRecord(tier.get('ns', '/f')!)]) {
      const value = got.value as typeof record.value;
      expect(Object.getOwnPropertyDescriptor(value.data.headers, '__proto__')?.value).toBe('h');
      expect(Object.getPrototypeOf(value.extra)).toBe(Object.prototype);
      expect(Object.getOwnPropertyDescriptor(value.extra, '__proto__')?.value).toEqual({ isAdmin: true });
    }
  });

  it("keeps a value's text of 1 to 128 KiB as bytes, outside V8's heap, and serves it back equal in objects of each hit's own", async () => {
    await loadHasher();
    const tier = new MemoryTier(16 * 1024 * 1024, 1000);
    const html = '<p>é € 😀</p>'.repeat(200); // 2- to 4-byte characters, some straddling any boundary
    const huge = 'a'.repeat(200 * 1024);
    const longKey = `/page/${'k'.repeat(2000)}`;
    const rsc = Buffer.from('rsc bytes');
    const ascii = '<p>plain ascii</p>'.repeat(100); // served as Latin-1, known ASCII since it was kept
    const record = { key: longKey, kind: 'APP_PAGE', writtenAt: 0, tags: ['t'], value: { kind: 'APP_PAGE', html, rscData: rsc, postponed: huge, headers: { 'x-next-cache-tags': 't' }, ascii } };
    tier.put('ns', record, identity);
    const kept = tier.get('ns', longKey)!;
    const keptValue = kept.record.value as Record<string, unknown>;
    expect(typeof keptValue.html).not.toBe('string');
    expect(typeof keptValue.ascii).not.toBe('string');
    expect(keptValue.postponed).toBe(huge); // too long to decode on every hit: kept as the string it is
    expect(kept.record.key).toBe(longKey); // the record's own fields stay as they are
    const served = servedRecord(kept);
    expect(served.key).toBe(longKey);
    expect(sameValue(served.value, record.value)).toBe(true);
    expect((served.value as typeof record.value).html).toBe(html);
    expect((served.value as typeof record.value).ascii).toBe(ascii);
    expect((served.value as typeof record.value).rscData.equals(rsc)).toBe(true);
    const again = servedRecord(kept);
    expect(again.value).not.toBe(served.value);
    expect(again.tags).not.toBe(served.tags);
    expect((again.value as typeof record.value).headers).not.toBe((served.value as typeof record.value).headers);
  });

  it('keeps text that is not well-formed (a lone surrogate) as the string it is: its bytes would serve U+FFFD instead', async () => {
    await loadHasher();
    const tier = new MemoryTier(16 * 1024 * 1024, 1000);
    const text = `${'x'.repeat(2000)}\ud83dtail`;
    tier.put('ns', { key: '/pages-data', kind: 'PAGES', writtenAt: 0, tags: [], value: { kind: 'PAGES', html: '', pageData: { text } } }, identity);
    const kept = tier.get('ns', '/pages-data')!;
    expect((kept.record.value as { pageData: { text: unknown } }).pageData.text).toBe(text);
    expect((servedRecord(kept).value as { pageData: { text: string } }).pageData.text).toBe(text);
  });
});
