import { existsSync, mkdirSync, readdirSync, rmSync, truncateSync, writeFileSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashKey } from '../lib/store/hash';
import { openCache, tempDir, walk, randomBytes, seededRandom, type TestCache } from './helpers';
import { appPage, appRoute, FETCH_CTX, fetchValue, image, PAGE_CTX, pages, redirect, sameValue } from './values';

const opened: TestCache[] = [];
async function cache(dir = tempDir()): Promise<TestCache> {
  const c = await openCache({ dir });
  opened.push(c);
  return c;
}
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});

describe('handler round trips', () => {
  it('the equality helper itself tells different values apart', () => {
    const a = appPage();
    const b = appPage();
    (b.segmentData as Map<string, Buffer>).set('/_tree', Buffer.from('other'));
    expect(sameValue(a, appPage())).toBe(true);
    expect(sameValue(a, b)).toBe(false);
    expect(sameValue({ x: Buffer.from('a') }, { x: 'a' })).toBe(false);
  });

  it.each([
    ['APP_PAGE', appPage({ segments: 40 }), PAGE_CTX],
    ['APP_ROUTE 5 MB', appRoute(randomBytes(seededRandom(9), 5 * 1024 * 1024)), PAGE_CTX],
    ['PAGES', pages(), { kind: 'PAGES', cacheControl: { revalidate: 10, expire: 100 } }],
    ['REDIRECT', redirect(), { kind: 'PAGES', cacheControl: { revalidate: false } }],
    ['FETCH', fetchValue(), FETCH_CTX],
    ['IMAGE', image(), { kind: 'IMAGE', cacheControl: { revalidate: 14400, expire: undefined } }],
    ['null', null, { kind: 'PAGES', cacheControl: { revalidate: 5, expire: 50 } }],
  ] as const)('%s: get returns what set stored, with cacheControl and a fresh lastModified', async (_name, value, ctx) => {
    const { handler } = await cache();
    const key = `/route-cache/${_name}/x/$/日本語/${'k'.repeat(2000)}`;
    await handler.set(key, value, ctx);
    const before = Date.now();
    const got = await handler.get(key, { kind: ctx.kind === 'IMAGE' ? 'IMAGE' : 'APP_PAGE' });
    expect(got).not.toBeNull();
    expect(sameValue(got!.value, value)).toBe(true);
    if (ctx.cacheControl) expect(got!.cacheControl).toEqual(ctx.cacheControl);
    expect(got!.lastModified).toBeLessThanOrEqual(Date.now());
    expect(got!.lastModified).toBeGreaterThan(before - 5_000);
  });

  it("a miss is null and a second key never sees the first key's entry", async () => {
    const { handler } = await cache();
    await handler.set('a\ud800', fetchValue('one'), FETCH_CTX);
    await handler.set('a\udc00', fetchValue('two'), FETCH_CTX);
    expect(((await handler.get('a\ud800', {}))!.value as { kind: string; data: { body: string } }).data.body).toBe('one');
    expect(((await handler.get('a\udc00', {}))!.value as { kind: string; data: { body: string } }).data.body).toBe('two');
    expect(await handler.get('a\ufffd', {})).toBeNull();
  });

  it('stores entries in a two-level shard tree named by hash, never by key', async () => {
    const { handler, root } = await cache();
    await handler.set('/blog/../../etc/passwd', fetchValue(), FETCH_CTX);
    const entries = walk(root).filter((p) => p.endsWith('.entry'));
    expect(entries).toHaveLength(1);
    expect(path.relative(root, entries[0]!)).toMatch(/^apps\/default\/entries\/shared\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{16}\.entry$/);
  });
});

describe('hostile keys', () => {
  it('never create a path outside the cache root', async () => {
    const parent = tempDir();
    const root = path.join(parent, 'root');
    const { handler } = await cache(root);
    const keys = ['../../etc/passwd', '../outside', 'a\u0000b', '/'.repeat(10_240), '\ud800\udfff\ud800', '..', '.', '', 'C:\\Windows', '%2e%2e/%2e%2e'];
    for (const key of keys) {
      await handler.set(key, fetchValue(), FETCH_CTX);
      expect(await handler.get(key, {})).not.toBeNull();
    }
    expect(readdirSync(parent)).toEqual(['root']);
    for (const p of walk(root)) expect(p.startsWith(root + path.sep)).toBe(true);
  });
});

describe('corrupt entries are misses and get never throws', () => {
  async function storedFile(c: TestCache, key: string): Promise<string> {
    await c.handler.set(key, appPage(), PAGE_CTX);
    return c.runtime.layout.entryPath(hashKey(key));
  }

  it('truncated at every 50th byte, zero length, random bytes, future version, a directory, a symlink', async () => {
    const c = await cache();
    const key = '/route-cache/APP_PAGE/x/$/index';
    const file = await storedFile(c, key);
    const good = readFileSync(file);
    for (let length = 0; length < good.length; length += 50) {
      writeFileSync(file, good.subarray(0, length));
      await expect(c.handler.get(key, {})).resolves.toBeNull();
    }
    writeFileSync(file, randomBytes(seededRandom(4), 4096));
    await expect(c.handler.get(key, {})).resolves.toBeNull();
    const future = Buffer.from(good);
    future[3] = 9;
    writeFileSync(file, future);
    await expect(c.handler.get(key, {})).resolves.toBeNull();
    truncateSync(file, 0);
    await expect(c.handler.get(key, {})).resolves.toBeNull();
    rmSync(file);
    mkdirSync(file);
    await expect(c.handler.get(key, {})).resolves.toBeNull();
    rmSync(file, { recursive: true });
    const outside = path.join(tempDir(), 'secret');
    writeFileSync(outside, good);
    symlinkSync(outside, file);
    await expect(c.handler.get(key, {})).resolves.toBeNull();
    expect(c.runtime.metrics.misses['truncated']).toBeGreaterThan(0);
    expect(c.runtime.metrics.misses['not-a-file']).toBe(2);
    // The good bytes are served again once they are back.
    rmSync(file);
    writeFileSync(file, good);
    expect(await c.handler.get(key, {})).not.toBeNull();
  });
});

describe('an unusable volume degrades to misses', () => {
  it('a missing mount point: get is null, set is a no-op, nothing is created', async () => {
    const parent = tempDir();
    const root = path.join(parent, 'not-mounted', 'cache');
    // A configured dir does not get its parents created (the runtime's createParents is false).
    const c = await openCache({ dir: root }, undefined, false);
    opened.push(c);
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(await c.handler.get('k', {})).toBeNull();
    expect(existsSync(path.join(parent, 'not-mounted'))).toBe(false);
    expect(c.runtime.metrics.misses['unavailable']).toBe(1);
    await expect(c.handler.revalidateTag(['t'])).rejects.toThrow(/cannot record the invalidation/);
  });

  it('a root that is a file, not a folder', async () => {
    const parent = tempDir();
    const root = path.join(parent, 'file');
    writeFileSync(root, 'x');
    const c = await cache(root);
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(await c.handler.get('k', {})).toBeNull();
  });

  it('a root holding a newer format is left alone', async () => {
    const root = tempDir();
    writeFileSync(path.join(root, 'next-volume-cache.json'), JSON.stringify({ format: 99 }));
    const c = await cache(root);
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(await c.handler.get('k', {})).toBeNull();
    expect(readdirSync(root)).toEqual(['next-volume-cache.json']);
  });
});
