import { afterEach, describe, expect, it, vi } from 'vitest';
import { bindUseCacheHandler, type UseCacheEntry, type UseCacheHandler } from '../lib/next/use-cache';
import { bindHandler } from '../lib/next/handler';
import { openCache, tempDir, type TestCache } from './helpers';
import { appPage, PAGE_CTX } from './values';

const opened: TestCache[] = [];
async function handlers(dir = tempDir()): Promise<{ useCache: UseCacheHandler; c: TestCache }> {
  const c = await openCache({ dir });
  opened.push(c);
  return { useCache: bindUseCacheHandler(() => c.runtime), c };
}
afterEach(async () => {
  vi.useRealTimers();
  for (const c of opened.splice(0)) await c.runtime.close();
});

function streamOf(text: string, failAfterFirst = false): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      if (failAfterFirst) controller.error(new Error('boom'));
      else controller.close();
    },
  });
}

async function text(stream: ReadableStream<Uint8Array>): Promise<string> {
  return new Response(stream).text();
}

function entry(body: string, overrides: Partial<UseCacheEntry> = {}): UseCacheEntry {
  return { value: streamOf(body), tags: ['t1'], stale: 30, timestamp: Date.now(), expire: 3600, revalidate: 60, ...overrides };
}

describe("'use cache' handler contract", () => {
  it('returns a fresh stream on every get, with the entry fields as stored', async () => {
    // The clock stands still: the timestamp must come back exact, however long the set and gets take on a loaded machine.
    vi.useFakeTimers({ toFake: ['Date'] });
    const { useCache } = await handlers();
    const timestamp = Date.now() - 1000;
    await useCache.set('k', Promise.resolve(entry('hello ✓', { timestamp })));
    const a = await useCache.get('k', []);
    const b = await useCache.get('k', []);
    expect(await text(a!.value)).toBe('hello ✓');
    expect(await text(b!.value)).toBe('hello ✓');
    expect(a).toMatchObject({ tags: ['t1'], stale: 30, expire: 3600, revalidate: 60 });
    expect(a!.timestamp).toBe(timestamp);
  });

  it('a get for a key whose set is in flight waits for it', async () => {
    const { useCache } = await handlers();
    let resolve!: (e: UseCacheEntry) => void;
    const setting = useCache.set('k', new Promise<UseCacheEntry>((r) => (resolve = r)));
    const getting = useCache.get('k', []);
    setTimeout(() => resolve(entry('late')), 50);
    expect(await text((await getting)!.value)).toBe('late');
    await setting;
  });

  it('a stream that errors mid-way is not stored, and expire: 0 entries are not stored', async () => {
    const { useCache } = await handlers();
    await useCache.set('broken', Promise.resolve({ ...entry(''), value: streamOf('part', true) }));
    expect(await useCache.get('broken', [])).toBeUndefined();
    await useCache.set('dynamic', Promise.resolve(entry('x', { expire: 0 })));
    expect(await useCache.get('dynamic', [])).toBeUndefined();
  });

  it('revalidate: -1 round-trips, and entries past expire are misses', async () => {
    const { useCache } = await handlers();
    await useCache.set('r', Promise.resolve(entry('x', { revalidate: -1 })));
    expect((await useCache.get('r', []))!.revalidate).toBe(-1);
    await useCache.set('old', Promise.resolve(entry('x', { expire: 1, timestamp: Date.now() - 2000 })));
    expect(await useCache.get('old', [])).toBeUndefined();
  });

  it('tags and soft tags: expired is a miss, stale comes back with revalidate -1; getExpiration is Infinity (get checks soft tags)', async () => {
    const { useCache } = await handlers();
    await useCache.set('k', Promise.resolve(entry('x', { tags: ['product'] })));
    expect(await useCache.getExpiration(['product'])).toBe(Infinity);
    await useCache.updateTags(['product'], { expire: 3600 });
    expect((await useCache.get('k', []))!.revalidate).toBe(-1);
    await useCache.set('k2', Promise.resolve(entry('x', { tags: [] })));
    await useCache.updateTags(['_N_T_/shop']);
    expect(await useCache.get('k2', ['_N_T_/shop'])).toBeUndefined();
    expect(await useCache.get('k2', ['_N_T_/elsewhere'])).not.toBeUndefined();
    await useCache.updateTags(['product']);
    expect(await useCache.get('k', [])).toBeUndefined();
  });

  it('one tag state for both handlers: revalidateTag through the page handler invalidates a use-cache entry, and updateTags a page', async () => {
    const { useCache, c } = await handlers();
    const Page = bindHandler(() => c.runtime);
    const page = new Page({});
    await useCache.set('uc', Promise.resolve(entry('x', { tags: ['shared-tag'] })));
    await page.set('/route-cache/APP_PAGE/h/$/p', appPage({ tags: 'other-tag' }), PAGE_CTX);
    await page.revalidateTag(['shared-tag']);
    expect(await useCache.get('uc', [])).toBeUndefined();
    await useCache.updateTags(['other-tag']);
    expect(await page.get('/route-cache/APP_PAGE/h/$/p', {})).toBeNull();
    // Both calls for one app call (Next makes them) share one record.
    await Promise.all([page.revalidateTag(['dup']), useCache.updateTags(['dup'])]);
    expect(c.runtime.metrics.invalidations).toBe(3);
  });
});

describe("'use cache' entries and the CLI", () => {
  it('are counted by stats, found by purge --tag, and removed by gc once past expire', async () => {
    const dir = tempDir();
    const { useCache, c } = await handlers(dir);
    await c.runtime.ready(); // the volume clock is calibrated on the real clock first
    // Written 2 s ago on this process's clock, so already past its 1 s expire: nothing waits for it to pass.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 2000 });
    try {
      await useCache.set('short', Promise.resolve(entry('x', { expire: 1, tags: ['a'] })));
    } finally {
      vi.useRealTimers();
    }
    await useCache.set('long', Promise.resolve(entry('y', { tags: ['b'] })));
    await c.runtime.close();
    const { stats, gc, purge } = await import('../lib/maintenance');
    const s = await stats({ dir, logLevel: 'silent' });
    expect(s.entries.byNamespace['use-cache']?.count).toBe(2);
    expect(s.entries.byKind['USE_CACHE']?.count).toBe(2);
    expect((await gc({ dir, logLevel: 'silent', graceMs: 0 })).expired.count).toBe(1);
    expect((await purge({ dir, logLevel: 'silent', selection: { tags: ['b'] } })).deleted).toBe(1);
    expect((await stats({ dir, logLevel: 'silent' })).entries.total.count).toBe(0);
  });
});
