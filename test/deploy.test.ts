import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cli } from './cli-in-process';
import { checkRoot } from '../lib/maintenance';
import { nodeFs, type VolumeFs } from '../lib/fs/syscalls';
import { hashKey } from '../lib/store/hash';
import { isRoot, openCache, tempDir, walk, type TestCache } from './helpers';
import { FETCH_CTX, fetchValue, PAGE_CTX, appPage } from './values';

const opened: TestCache[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});
async function cache(options: Parameters<typeof openCache>[0]): Promise<TestCache> {
  const c = await openCache(options);
  opened.push(c);
  return c;
}

describe('several apps on one volume', () => {
  it("never see each other's entries or tags", async () => {
    const dir = tempDir();
    const shop = await cache({ dir, app: 'shop' });
    const blog = await cache({ dir, app: 'blog' });
    await shop.handler.set('same-key', fetchValue('shop'), FETCH_CTX);
    await blog.handler.set('same-key', fetchValue('blog'), FETCH_CTX);
    expect(((await shop.handler.get('same-key', {}))!.value as { kind: string; data: { body: string } }).data.body).toBe('shop');
    expect(((await blog.handler.get('same-key', {}))!.value as { kind: string; data: { body: string } }).data.body).toBe('blog');
    await shop.handler.revalidateTag(['data']);
    expect(await shop.handler.get('same-key', {})).toBeNull();
    expect(await blog.handler.get('same-key', {})).not.toBeNull();
    const shopStats = JSON.parse((await cli('--json', 'stats', '--dir', dir, '--app', 'shop')).out);
    expect(shopStats.entries.total.count).toBe(1);
    // The CLI across every app: one document keyed by app.
    const all = JSON.parse((await cli('--json', '--all-apps', 'stats', '--dir', dir)).out);
    expect(Object.keys(all)).toEqual(['blog', 'shop']);
    expect(all.blog.entries.total.count).toBe(1);
    const human = await cli('--all-apps', 'compact', '--dir', dir);
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/== app blog ==[\s\S]*== app shop ==/);
    expect((await cli('--all-apps', 'stats', '--dir', dir, '--app', 'shop')).code).toBe(2);
  });
});

describe('mixed library versions on one volume', () => {
  it('an entry of another format version is a miss, and neither verify --repair nor gc deletes it', async () => {
    const dir = tempDir();
    const c = await cache({ dir });
    await c.handler.set('k', appPage(), PAGE_CTX);
    const file = c.runtime.layout.entryPath(hashKey('k'));
    const bytes = readFileSync(file);
    bytes[3] = 2;
    writeFileSync(file, bytes);
    expect(await c.handler.get('k', {})).toBeNull();
    const report = JSON.parse((await cli('--json', 'verify', '--repair', '--dir', dir)).out);
    expect(report.foreignVersion).toBe(1);
    await cli('gc', '--dir', dir, '--grace', '0s');
    expect(readFileSync(file).equals(bytes)).toBe(true);
  });
});

describe('file and folder modes', () => {
  it('fileMode and dirMode apply whatever the umask, so pods of one fsGroup can all write', async () => {
    const dir = tempDir();
    const previous = process.umask(0o077);
    try {
      const c = await cache({ dir, fileMode: '664', dirMode: '2775' });
      await c.handler.set('k', fetchValue(), FETCH_CTX);
      const file = c.runtime.layout.entryPath(hashKey('k'));
      expect(statSync(file).mode & 0o7777).toBe(0o664);
      expect(statSync(path.dirname(file)).mode & 0o7777).toBe(0o2775);
      expect(statSync(c.runtime.layout.tagsDir).mode & 0o7777).toBe(0o2775);
      expect(statSync(c.runtime.layout.marker).mode & 0o7777).toBe(0o664);
    } finally {
      process.umask(previous);
    }
  });
});

describe('check', () => {
  const slowFs = (ms: number): VolumeFs => ({ ...nodeFs, open: async (p, f, m) => (await new Promise((r) => setTimeout(r, ms)), nodeFs.open(p, f, m)) });

  it('passes on an empty folder and on a cache root; fails clearly on a missing, foreign or slow one', async () => {
    const empty = tempDir();
    expect(await checkRoot({ dir: empty, maxLatencyMs: 1000 })).toMatchObject({ ok: true, format: null });
    const c = await cache({ dir: tempDir() });
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(await checkRoot({ dir: c.root, maxLatencyMs: 1000 })).toMatchObject({ ok: true, format: 1 });
    expect(await checkRoot({ dir: path.join(empty, 'not-mounted'), maxLatencyMs: 1000 })).toMatchObject({ ok: false, failure: 'missing' });
    const foreign = tempDir();
    writeFileSync(path.join(foreign, 'index.html'), 'someone else');
    expect(await checkRoot({ dir: foreign, maxLatencyMs: 1000 })).toMatchObject({ ok: false, failure: 'foreign' });
    const future = tempDir();
    writeFileSync(path.join(future, 'next-volume-cache.json'), '{"format": 7}');
    expect(await checkRoot({ dir: future, maxLatencyMs: 1000 })).toMatchObject({ ok: false, failure: 'incompatible-format' });
    expect(await checkRoot({ dir: empty, maxLatencyMs: 20, fs: slowFs(50) })).toMatchObject({ ok: false, failure: 'slow' });
    const viaCli = await cli('check', '--dir', path.join(empty, 'not-mounted'));
    expect(viaCli.code).toBe(1);
    expect(viaCli.err).toMatch(/not ok \(missing\).*is the volume mounted/);
    expect((await cli('check', '--dir', c.root)).code).toBe(0);
    expect(walk(empty)).toEqual([]); // the probe left nothing behind
  });

  const mounts: string[] = [];
  afterAll(() => {
    for (const m of mounts) execFileSync('umount', ['-l', m]);
  });
  it.skipIf(!isRoot())('fails on a read-only mount (needs root for the bind mount)', async () => {
    const source = tempDir();
    mkdirSync(path.join(source, 'x'));
    const ro = tempDir();
    execFileSync('mount', ['--bind', source, ro]);
    mounts.push(ro);
    execFileSync('mount', ['-o', 'remount,bind,ro', ro]);
    writeFileSync(path.join(source, 'next-volume-cache.json'), '{"format": 1}');
    expect(await checkRoot({ dir: ro, maxLatencyMs: 1000 })).toMatchObject({ ok: false, failure: 'read-only' });
  });
});
