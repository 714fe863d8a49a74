import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, pollUntil, tempDir, walk } from '../helpers';
import * as fixture from '../../scripts/fixture-app.js';

type Server = Awaited<ReturnType<typeof fixture.startServer>>;
type DataServer = Awaited<ReturnType<typeof fixture.startDataServer>>;

interface Answer {
  status: number;
  cache: string | null;
  cacheControl: string | null;
  body: string;
  render: string | undefined;
  value: string | undefined;
}

async function get(server: Server, pathname: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(server.url + pathname, { headers, redirect: 'manual' });
  const body = await res.text();
  return {
    status: res.status,
    cache: res.headers.get('x-nextjs-cache'),
    cacheControl: res.headers.get('cache-control'),
    body,
    render: /data-render="([^"]*)"/.exec(body)?.[1] ?? /"render":"([^"]*)"/.exec(body)?.[1],
    value: /data-value="([^"]*)"/.exec(body)?.[1],
  };
}

/** Client-side navigation requests: Next answers the first with a redirect adding its `_rsc` cache-busting parameter. */
async function getRsc(server: Server, pathname: string, headers: Record<string, string>): Promise<Answer> {
  const first = await fetch(server.url + pathname, { headers, redirect: 'manual' });
  const location = first.status === 307 ? first.headers.get('location') : null;
  return get(server, location ?? pathname, headers);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** App Router revalidatePath through the fixture's route handler on `server`. */
async function revalidatePathOn(server: Server, pathname: string, type?: 'page' | 'layout'): Promise<void> {
  const query = new URLSearchParams({ path: pathname, ...(type ? { type } : {}) });
  const res = await fetch(`${server.url}/api/revalidate?${query.toString()}`);
  expect(res.status).toBe(200);
}

/**
 * Asks `server` for `pathname` until its answer is no longer the cached one it gave before (another
 * render, or not a HIT): B sees an invalidation at its next tag refresh, polled with a deadline.
 */
async function firstChange(server: Server, pathname: string, before: Answer, timeoutMs = 10_000): Promise<Answer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answer = await get(server, pathname);
    if (answer.cache !== 'HIT' || answer.render !== before.render) return answer;
    if (Date.now() > deadline) throw new Error(`${pathname} on ${server.name} was still the cached answer after ${timeoutMs} ms`);
    await sleep(50);
  }
}

let cacheDir: string;
let data: DataServer;
let a: Server;
let b: Server;

async function startBoth(): Promise<void> {
  [a, b] = await Promise.all([fixture.startServer({ name: 'A', cacheDir, dataPort: data.port }), fixture.startServer({ name: 'B', cacheDir, dataPort: data.port })]);
}

beforeAll(async () => {
  await fixture.buildFixture({ log: (m: string) => console.log(m) });
  cacheDir = tempDir('nvc-e2e-');
  data = await fixture.startDataServer();
  await startBoth();
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await data?.stop();
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

describe('a real Next.js app, two servers, one cache folder', () => {
  it('1. a page rendered by A is a HIT on B with identical HTML, and its RSC payload and segments are served by B', async () => {
    const first = await get(a, '/isr');
    expect(first.status).toBe(200);
    const onB = await get(b, '/isr');
    expect(onB.cache).toBe('HIT');
    expect(onB.body).toBe((await get(a, '/isr')).body);
    expect(onB.render).toMatch(/^isr\|A\|/);
    // Client-side navigation: the RSC payload (rscData) and a segment prefetch (segmentData) from B.
    const rsc = await getRsc(b, '/isr', { RSC: '1' });
    expect(rsc.status).toBe(200);
    expect(rsc.cache).toBe('HIT');
    expect(rsc.body).toContain('isr|A|');
    const segment = { RSC: '1', 'Next-Router-Prefetch': '1', 'Next-Router-Segment-Prefetch': '/_tree' };
    const tree = await getRsc(b, '/isr', segment);
    expect(tree.status).toBe(200);
    expect(tree.cache).toBe('HIT');
    expect(tree.body).toContain('__PAGE__');
    expect(tree.body).toBe((await getRsc(a, '/isr', segment)).body);
  });

  it('7. Cache-Control on B matches what A produced', async () => {
    await get(a, '/blog/b');
    const onA = await get(a, '/blog/b');
    const onB = await get(b, '/blog/b');
    expect(onB.cache).toBe('HIT');
    expect(onB.cacheControl).toBe(onA.cacheControl);
    expect(onB.cacheControl).toContain('s-maxage=60');
  });

  it.skipIf(!fixture.FEATURES.cacheControlFromHandler)('7. a path first rendered at run time by A keeps its Cache-Control on B', async () => {
    await get(a, '/blog/rendered-at-run-time');
    const onA = await get(a, '/blog/rendered-at-run-time');
    const onB = await get(b, '/blog/rendered-at-run-time');
    expect(onB.cache).toBe('HIT');
    expect(onB.cacheControl).toBe(onA.cacheControl);
    expect(onB.cacheControl).toContain('s-maxage=60');
  });

  it("2. revalidateTag(t, {expire: 0}) on A: B's first request that sees it renders fresh", async () => {
    await get(a, '/blog/a');
    const before = await get(b, '/blog/a');
    expect(before.cache).toBe('HIT');
    await fetch(`${a.url}/api/revalidate?tag=_N_T_/blog/a`);
    const after = await pollUntil(
      () => get(b, '/blog/a'),
      (r) => r.render !== before.render,
    );
    expect(after.cache).toBe('MISS');
    expect(after.render).not.toBe(before.render);
    expect(after.render).toMatch(/\|B\|/);
  });

  it("2. revalidateTag(t, 'max') on A: B serves stale once, then fresh", async () => {
    await get(a, '/blog/c');
    const before = await get(b, '/blog/c');
    expect(before.cache).toBe('HIT');
    await fetch(`${a.url}/api/revalidate?tag=_N_T_/blog/c&mode=max`);
    const stale = await pollUntil(
      () => get(b, '/blog/c'),
      (r) => r.cache !== 'HIT',
    );
    expect(stale.cache).toBe('STALE');
    expect(stale.render).toBe(before.render);
    // The background regeneration on B: wait for it (bounded), without assuming how long it takes.
    const fresh = await pollUntil(
      () => get(b, '/blog/c'),
      (r) => r.render !== before.render,
    );
    expect(fresh.cache).toBe('HIT');
    expect(fresh.render).not.toBe(before.render);
    expect((await get(a, '/blog/c')).render).toBe(fresh.render);
  });

  it('2. revalidatePath on A re-renders the page on B', async () => {
    await get(a, '/isr');
    const before = await get(b, '/isr');
    await fetch(`${a.url}/api/revalidate?path=/isr`);
    const after = await pollUntil(
      () => get(b, '/isr'),
      (r) => r.render !== before.render,
    );
    expect(after.cache).toBe('MISS');
    expect(after.render).not.toBe(before.render);
  });

  it('2. fetch data is shared, and a tag revalidation on A refetches on B; updateTag from a Server Action too', async () => {
    const first = await get(a, '/data');
    const shared = await get(b, '/data');
    expect(shared.value).toBe(first.value);
    await fetch(`${a.url}/api/revalidate?tag=data`);
    const refetched = await pollUntil(
      () => get(b, '/data'),
      (r) => r.value !== first.value,
    );
    expect(Number(refetched.value)).toBeGreaterThan(Number(first.value));
    expect((await get(a, '/data')).value).toBe(refetched.value);
    // updateTag is only allowed in a Server Action: post the fixture's form to A.
    const form = new FormData();
    form.set(`$ACTION_ID_${fixture.updateTagActionId()}`, '');
    form.set('tag', 'data');
    const action = await fetch(`${a.url}/action`, { method: 'POST', body: form });
    expect(action.status).toBe(200);
    const afterAction = await pollUntil(
      () => get(b, '/data'),
      (r) => r.value !== refetched.value,
    );
    expect(Number(afterAction.value)).toBeGreaterThan(Number(refetched.value));
  });

  it('2. unstable_cache results are shared and invalidated across servers', async () => {
    const first = await get(a, '/cached');
    expect((await get(b, '/cached')).value).toBe(first.value);
    await fetch(`${a.url}/api/revalidate?tag=computed`);
    const after = await pollUntil(
      () => get(b, '/cached'),
      (r) => r.value !== first.value,
    );
    expect(after.value).not.toBe(first.value);
    expect(after.value).toMatch(/\|B\|/);
  });

  it('3. route handler and Pages Router entries (page, notFound, redirect) are shared', async () => {
    const route = await get(a, '/api/time');
    const routeB = await get(b, '/api/time');
    expect(routeB.cache).toBe('HIT');
    expect(routeB.body).toBe(route.body);
    for (const pathname of ['/pages-isr', '/gone', '/moved/x']) {
      const onA = await get(a, pathname);
      const onB = await get(b, pathname);
      expect(onB.cache, pathname).toBe('HIT');
      expect(onB.status, pathname).toBe(onA.status);
    }
    expect((await get(b, '/gone')).status).toBe(404);
    expect((await get(b, '/moved/y')).status).toBe(307);
  });

  it('3. Pages on-demand revalidation on A is seen by B', async () => {
    await get(a, '/pages-isr');
    const before = await get(b, '/pages-isr');
    const res = await fetch(`${a.url}/api/revalidate-pages`);
    expect(res.status).toBe(200);
    // A rewrite without a tag: B's memory tier may serve its copy until the copy's trust window
    // (memoryTrustMs, by default the tag refresh interval) ends, then finds the new file.
    const after = await pollUntil(
      () => get(b, '/pages-isr'),
      (answer) => answer.render !== before.render,
    );
    expect(after.render).not.toBe(before.render);
    expect(after.render).toMatch(/\|A\|/);
  });

  it("3. App Router revalidatePath('/pages-isr') on A: B renders the Pages Router page again", async () => {
    await get(a, '/pages-isr');
    const before = await get(b, '/pages-isr');
    expect(before.cache).toBe('HIT');
    await revalidatePathOn(a, '/pages-isr');
    const after = await firstChange(b, '/pages-isr', before);
    expect(after.cache).toBe('MISS');
    expect(after.render).toMatch(/^pages\|B\|/);
  });

  it("3. revalidatePath('/', 'layout') on A reaches every Pages Router entry on B; revalidatePath('/moved/[id]', 'page') a dynamic route's", async () => {
    const page = await get(b, '/pages-isr');
    await get(a, '/moved/x');
    expect((await get(b, '/moved/x')).cache).toBe('HIT');
    await revalidatePathOn(a, '/', 'layout');
    const after = await firstChange(b, '/pages-isr', page);
    expect(after.cache).toBe('MISS');
    expect(after.render).toMatch(/^pages\|B\|/);
    const moved = await get(b, '/moved/x');
    expect(moved.cache).toBe('MISS');
    expect(moved.status).toBe(307);
    expect((await get(b, '/moved/x')).cache).toBe('HIT');
    await revalidatePathOn(a, '/moved/[id]', 'page');
    const again = await firstChange(b, '/moved/x', await get(b, '/moved/x'));
    expect(again.cache).toBe('MISS');
  });

  it.skipIf(!fixture.FEATURES.imagesThroughHandler)('4. an image optimized by A is a HIT on B with identical bytes', async () => {
    const url = '/_next/image?url=%2Fphoto.png&w=256&q=75';
    const onA = await fetch(a.url + url, { headers: { accept: 'image/webp' } });
    const bytesA = Buffer.from(await onA.arrayBuffer());
    expect(onA.status).toBe(200);
    const onB = await fetch(b.url + url, { headers: { accept: 'image/webp' } });
    const bytesB = Buffer.from(await onB.arrayBuffer());
    expect(onB.headers.get('x-nextjs-cache')).toBe('HIT');
    expect(bytesB.equals(bytesA)).toBe(true);
    expect(onB.headers.get('content-type')).toBe(onA.headers.get('content-type'));
  });

  it('5. after restarting both servers, the cache and the invalidations survive', async () => {
    const page = await get(a, '/blog/b');
    await fetch(`${a.url}/api/revalidate?tag=data`);
    await Promise.all([a.stop(), b.stop()]);
    await startBoth();
    const cached = await get(b, '/blog/b');
    expect(cached.cache).toBe('HIT');
    expect(cached.render).toBe(page.render);
    const requestsBefore = data.requests;
    await get(a, '/data');
    expect(data.requests).toBe(requestsBefore + 1); // the invalidated fetch is fetched again after the restart
  });

  it('6. a corrupted entry file is a miss, never a 500', async () => {
    await get(a, '/isr');
    const entries = walk(cacheDir).filter((p) => p.endsWith('.entry'));
    expect(entries.length).toBeGreaterThan(5);
    for (const file of entries) writeFileSync(file, readFileSync(file).subarray(0, 40));
    for (const pathname of ['/isr', '/blog/a', '/pages-isr', '/api/time', '/data', '/gone']) {
      const res = await get(b, pathname);
      expect(res.status, pathname).not.toBe(500);
      expect(res.cache === null || res.cache === 'MISS', pathname).toBe(true);
    }
  });
});

if (!fixture.FEATURES.cacheControlFromHandler) {
  console.log(
    `SKIP e2e Cache-Control of a path rendered at run time: next@${fixture.NEXT_VERSION} ignores the cacheControl a handler returns (Next 16.4+): another server sends no Cache-Control for such a path and treats it as stale after 1 s`,
  );
}
if (!fixture.FEATURES.imagesThroughHandler) console.log(`SKIP e2e image sharing: next@${fixture.NEXT_VERSION} has no images.customCacheHandler (Next 16.2+)`);

const needRoot = isRoot() ? describe : describe.skip;
if (!isRoot()) console.log('SKIP e2e read-only volume: needs root for a read-only bind mount (CI runs as root)');

needRoot('the cache folder becomes read-only', () => {
  it('6. the site keeps serving from the cache and renders what it cannot store', async () => {
    await get(a, '/blog/b');
    const readOnly = tempDir('nvc-e2e-ro-');
    execFileSync('mount', ['--bind', cacheDir, readOnly]);
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly]);
    try {
      const c = await fixture.startServer({ name: 'C', cacheDir: readOnly, dataPort: data.port });
      try {
        const cached = await get(c, '/blog/b');
        expect(cached.status).toBe(200);
        expect(cached.cache).toBe('HIT');
        const fresh = await get(c, '/blog/never-rendered');
        expect(fresh.status).toBe(200);
        expect(fresh.render).toMatch(/\|C\|/);
        // Next runs revalidations after the response and logs a failure: the log must say it was not recorded.
        await fetch(`${c.url}/api/revalidate?tag=anything`);
        expect(
          await pollUntil(
            () => Promise.resolve(c.output()),
            (out) => /EROFS/.test(out),
          ),
        ).toMatch(/EROFS/);
        expect((await get(c, '/isr')).status).toBe(200);
        expect(readdirSync(path.join(readOnly, 'apps'))).toEqual(['default']);
      } finally {
        await c.stop();
      }
    } finally {
      execFileSync('umount', ['-l', readOnly]);
      rmSync(readOnly, { recursive: true, force: true });
    }
  });
});
