import { readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ENTRY_SUFFIX } from '../lib/store/layout';
import { FaultyFs } from './fault-fs';
import { openCache, tempDir, walk, type TestCache } from './helpers';
import { appPage, PAGE_CTX, sameValue } from './values';

const opened: TestCache[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});

const KEY = '/route-cache/APP_PAGE/large/$/page';

describe('reading a large entry (over the first read of 128 KiB)', () => {
  it('is read whole by its first read once its size is known, the same value every time, and after a rewrite to another size', async () => {
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir() }, fs);
    opened.push(c);
    const large = appPage({ html: `<p>${'x'.repeat(600 * 1024)}</p>`, rsc: Buffer.alloc(200 * 1024, 7) });
    await c.handler.set(KEY, large, PAGE_CTX);
    const readsOf = async (): Promise<number> => {
      const before = fs.counts.get('read') ?? 0;
      expect(sameValue((await c.handler.get(KEY, { kind: 'APP_PAGE' }))!.value, large)).toBe(true);
      return (fs.counts.get('read') ?? 0) - before;
    };
    expect(await readsOf()).toBeGreaterThan(1); // its size is not known yet: 128 KiB first, then the rest
    expect(await readsOf()).toBe(1);
    expect(await readsOf()).toBe(1);
    // Rewritten larger, then small: read right, and small files go back to the usual first read.
    const larger = appPage({ html: `<p>${'y'.repeat(900 * 1024)}</p>` });
    await c.handler.set(KEY, larger, PAGE_CTX);
    expect(sameValue((await c.handler.get(KEY, { kind: 'APP_PAGE' }))!.value, larger)).toBe(true);
    const small = appPage();
    await c.handler.set(KEY, small, PAGE_CTX);
    expect(sameValue((await c.handler.get(KEY, { kind: 'APP_PAGE' }))!.value, small)).toBe(true);
    expect(sameValue((await c.handler.get(KEY, { kind: 'APP_PAGE' }))!.value, small)).toBe(true);
  });

  it('a file of 64 to 128 KiB is read into a buffer of its own size once its size is known; a smaller one always into the 128 KiB scratch buffer', async () => {
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir() }, fs);
    opened.push(c);
    const firstReadOf = async (value: ReturnType<typeof appPage>): Promise<number> => {
      fs.largestReadAsked = 0;
      expect(sameValue((await c.handler.get(KEY, { kind: 'APP_PAGE' }))!.value, value)).toBe(true);
      return fs.largestReadAsked;
    };
    const mid = appPage({ html: `<p>${'m'.repeat(90 * 1024)}</p>` });
    await c.handler.set(KEY, mid, PAGE_CTX);
    const [file] = walk(c.root).filter((f) => f.endsWith(ENTRY_SUFFIX));
    const size = readFileSync(file!).length;
    expect(await firstReadOf(mid)).toBe(128 * 1024);
    expect(await firstReadOf(mid)).toBe(size + 16 * 1024);
    expect(await firstReadOf(mid)).toBe(size + 16 * 1024);
    const small = appPage({ html: `<p>${'s'.repeat(60 * 1024)}</p>` });
    await c.handler.set(KEY, small, PAGE_CTX);
    expect(await firstReadOf(small)).toBe(size + 16 * 1024); // the same key's file: sized from its last read
    for (let i = 0; i < 3; i++) expect(await firstReadOf(small)).toBe(128 * 1024);
  });

  it('a large file that turns out damaged is read no further than 128 KiB by later gets, though its size was known', async () => {
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir() }, fs);
    opened.push(c);
    await c.handler.set(KEY, appPage({ html: 'z'.repeat(700 * 1024) }), PAGE_CTX);
    for (let i = 0; i < 2; i++) expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).not.toBeNull();
    expect(fs.largestReadAsked).toBeGreaterThan(700 * 1024); // its size was known to the second get
    const [file] = walk(c.root).filter((f) => f.endsWith(ENTRY_SUFFIX));
    const bytes = readFileSync(file!);
    const at = bytes.length - 100;
    bytes[at] = bytes[at]! ^ 0xff; // another writer's damage, same size: the checksum fails
    writeFileSync(file!, bytes);
    fs.largestReadAsked = 0;
    for (let i = 0; i < 3; i++) expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
    expect(fs.largestReadAsked).toBe(bytes.length + 16 * 1024); // the first get after the damage, sized from before
    fs.largestReadAsked = 0;
    expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
    expect(fs.largestReadAsked).toBe(128 * 1024);
  });

  it('a large file behind a folder swapped for a link is refused, and read no further than 128 KiB by the gets after the first refusal', async () => {
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir() }, fs);
    opened.push(c);
    await c.handler.set(KEY, appPage({ html: 'z'.repeat(700 * 1024) }), PAGE_CTX);
    for (let i = 0; i < 2; i++) expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).not.toBeNull();
    const [file] = walk(c.root).filter((f) => f.endsWith(ENTRY_SUFFIX));
    // The same file, now outside the root, reached through a link where its shard folder was.
    const shard = path.dirname(file!);
    const outside = path.join(tempDir('nvc-outside-'), 'shard');
    renameSync(shard, outside);
    symlinkSync(outside, shard);
    fs.largestReadAsked = 0;
    expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
    expect(fs.largestReadAsked).toBeGreaterThan(700 * 1024); // the first read starts beside the check, sized from before
    for (let i = 0; i < 2; i++) {
      fs.largestReadAsked = 0;
      expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
      expect(fs.largestReadAsked).toBe(128 * 1024);
    }
  });

  it('a file past maxEntryBytes is never given a first read of its size: each get reads 128 KiB at most', async () => {
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir(), maxEntryBytes: 256 * 1024 }, fs);
    opened.push(c);
    const writer = await openCache({ dir: c.root });
    opened.push(writer);
    await writer.handler.set(KEY, appPage({ html: 'x'.repeat(1024 * 1024) }), PAGE_CTX);
    for (let i = 0; i < 3; i++) expect(await c.handler.get(KEY, { kind: 'APP_PAGE' })).toBeNull();
    expect(fs.largestReadAsked).toBe(128 * 1024);
  });
});
