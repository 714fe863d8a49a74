import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, pollUntil, tempDir, waitFor, walk } from '../helpers';
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

/**
 * B's answers for `pathname` until `changed` holds (its tag refresh, every 200 ms, brought A's invalidation in).
 * Until then B answers from its cache without side effects (a HIT, a cached fetch).
 */
function afterRefresh(server: Server, pathname: string, changed: (answer: Answer) => boolean): Promise<Answer> {
  return pollUntil(() => get(server, pathname), changed, 15_000, 50);
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

  it("2. revalidateTag(t, {expire: 0}) on A: B's next request after the refresh interval is fresh", async () => {
    await get(a, '/blog/a');
    const before = await get(b, '/blog/a');
    expect(before.cache).toBe('HIT');
    await fetch(`${a.url}/api/revalidate?tag=_N_T_/blog/a`);
    const after = await afterRefresh(b, '/blog/a', (answer) => answer.cache !== 'HIT');
    expect(after.cache).toBe('MISS');
    expect(after.render).not.toBe(before.render);
    expect(after.render).toMatch(/\|B\|/);
  });

  it("2. revalidateTag(t, 'max') on A: B serves stale once, then fresh", async () => {
    await get(a, '/blog/c');
    const before = await get(b, '/blog/c');
    expect(before.cache).toBe('HIT');
    await fetch(`${a.url}/api/revalidate?tag=_N_T_/blog/c&mode=max`);
    const stale = await afterRefresh(b, '/blog/c', (answer) => answer.cache !== 'HIT');
    expect(stale.cache).toBe('STALE');
    expect(stale.render).toBe(before.render);
    // The background regeneration on B: wait for it (bounded), without assuming how long it takes.
    const fresh = await pollUntil(
      () => get(b, '/blog/c'),
      (answer) => answer.render !== before.render,
      10_000,
      100,
    );
    expect(fresh.cache).toBe('HIT');
    expect(fresh.render).not.toBe(before.render);
    expect((await get(a, '/blog/c')).render).toBe(fresh.render);
  });

  it('2. revalidatePath on A re-renders the page on B', async () => {
    await get(a, '/isr');
    const before = await get(b, '/isr');
    await fetch(`${a.url}/api/revalidate?path=/isr`);
    const after = await afterRefresh(b, '/isr', (answer) => answer.cache !== 'HIT');
    expect(after.cache).toBe('MISS');
    expect(after.render).not.toBe(before.render);
  });

  it('2. fetch data is shared, and a tag revalidation on A refetches on B; updateTag from a Server Action too', async () => {
    const first = await get(a, '/data');
    const shared = await get(b, '/data');
    expect(shared.value).toBe(first.value);
    await fetch(`${a.url}/api/revalidate?tag=data`);
    const refetched = await afterRefresh(b, '/data', (answer) => answer.value !== first.value);
    expect(Number(refetched.value)).toBeGreaterThan(Number(first.value));
    expect((await get(a, '/data')).value).toBe(refetched.value);
    // updateTag is only allowed in a Server Action: post the fixture's form to A.
    const form = new FormData();
    form.set(`$ACTION_ID_${fixture.updateTagActionId()}`, '');
    form.set('tag', 'data');
    const action = await fetch(`${a.url}/action`, { method: 'POST', body: form });
    expect(action.status).toBe(200);
    const afterAction = await afterRefresh(b, '/data', (answer) => answer.value !== refetched.value);
    expect(Number(afterAction.value)).toBeGreaterThan(Number(refetched.value));
  });

  it('2. unstable_cache results are shared and invalidated across servers', async () => {
    const first = await get(a, '/cached');
    expect((await get(b, '/cached')).value).toBe(first.value);
    await fetch(`${a.url}/api/revalidate?tag=computed`);
    const after = await afterRefresh(b, '/cached', (answer) => answer.value !== first.value);
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
    const after = await get(b, '/pages-isr');
    expect(after.render).not.toBe(before.render);
    expect(after.render).toMatch(/\|A\|/);
  });

  it('4. an image optimized by A is a HIT on B with identical bytes', async () => {
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
        await waitFor(() => /EROFS/.test(c.output()));
        expect(c.output()).toMatch(/EROFS/);
        expect((await get(c, '/isr')).status).toBe(200);
        expect(readdirSync(path.join(readOnly, 'apps'))).toEqual(['default']);
      } finally {
        await c.stop();
      }
    } finally {
      execFileSync('umount', ['-l', readOnly]);
    }
  });
});
