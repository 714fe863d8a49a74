import { readFileSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { hashKey } from '../lib/store/hash';
import { FaultyFs } from './fault-fs';
import { openCache, tempDir, waitFor, walk, type TestCache } from './helpers';
import { appPage, FETCH_CTX, fetchValue, image, PAGE_CTX } from './values';

const opened: TestCache[] = [];
async function cacheOn(fs: FaultyFs, options: { timeoutMs?: number; concurrency?: number; fsync?: boolean } = {}): Promise<TestCache> {
  const c = await openCache({ dir: tempDir(), ...options }, fs);
  opened.push(c);
  return c;
}
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});

const debris = (root: string) => walk(root).filter((p) => p.includes('.tmp.'));

describe('injected filesystem faults', () => {
  it('ESTALE on read: reopens by path once and serves the entry', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs);
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    fs.add({ op: 'read', path: '.entry', times: 1, fault: { code: 'ESTALE' } });
    expect(await c.handler.get('k', {})).not.toBeNull();
    fs.add({ op: 'read', path: '.entry', times: 2, fault: { code: 'ESTALE' } });
    expect(await c.handler.get('k', {})).toBeNull();
    expect(c.runtime.metrics.misses['io-error']).toBe(1);
  });

  it.each(['EIO', 'EACCES', 'EROFS', 'ENOSPC'])('%s on open or read: gets miss, sets fail quietly without debris, other keys keep working', async (code) => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs);
    await c.handler.set('bad', fetchValue(), FETCH_CTX);
    await c.handler.set('good', fetchValue(), FETCH_CTX);
    const badFile = c.runtime.layout.entryPath(hashKey('bad'));
    fs.add({ op: 'read', path: badFile, fault: { code } });
    fs.add({ op: 'open', path: (p) => p.includes('.tmp.') && p.includes(hashKey('bad')), fault: { code } });
    expect(await c.handler.get('bad', {})).toBeNull();
    await expect(c.handler.set('bad', fetchValue('new'), FETCH_CTX)).resolves.toBeUndefined();
    expect(await c.handler.get('good', {})).not.toBeNull();
    expect(c.runtime.metrics.setFailures).toBe(1);
    expect(debris(c.root)).toEqual([]);
  });

  it('short reads: a read that returns 7 bytes at a time still yields the whole entry', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs);
    const value = appPage({ segments: 20 });
    await c.handler.set('k', value, PAGE_CTX);
    fs.add({ op: 'read', path: '.entry', fault: { shortRead: 7 } });
    const got = await c.handler.get('k', {});
    expect((got!.value as { kind: string; rscData: Buffer }).rscData.equals(value.rscData as Buffer)).toBe(true);
  });

  it.each(['EIO', 'ENOSPC', 'EDQUOT'])('%s at close of the temp file: set fails quietly, no debris, old entry intact', async (code) => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs);
    await c.handler.set('k', fetchValue('old'), FETCH_CTX);
    const file = c.runtime.layout.entryPath(hashKey('k'));
    const before = readFileSync(file);
    fs.add({ op: 'close', path: '.tmp.', times: 1, fault: { code } });
    await expect(c.handler.set('k', fetchValue('new'), FETCH_CTX)).resolves.toBeUndefined();
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(debris(c.root)).toEqual([]);
    expect(c.runtime.metrics.setFailures).toBe(1);
  });

  it.each(['writev', 'rename', 'sync'] as const)('a failing %s leaves no temp file', async (op) => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs, { fsync: true });
    await c.runtime.ready();
    fs.add({ op, path: op === 'rename' ? '.entry' : '.tmp.', times: 1, fault: { code: 'ENOSPC' } });
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(c.runtime.metrics.setFailures).toBe(1);
    expect(debris(c.root)).toEqual([]);
    expect(await c.handler.get('k', {})).toBeNull();
  });

  it('an image whose sidecar cannot be written leaves neither the new raw file nor a temp file behind', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs);
    await c.runtime.ready();
    fs.add({ op: 'rename', path: '.json', times: 1, fault: { code: 'ENOSPC' } });
    await c.handler.set('img', image(Buffer.alloc(4000, 3)), { kind: 'IMAGE', cacheControl: { revalidate: 60 } });
    expect(c.runtime.metrics.setFailures).toBe(1);
    expect(walk(c.root).filter((p) => p.includes('/images/') && !statSync(p).isDirectory())).toEqual([]);
    expect(await c.handler.get('img', { kind: 'IMAGE' })).toBeNull();
  });

  it('a hung read answers a miss within the timeout, other keys keep being served, and a dead mount saturates to instant misses', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs, { timeoutMs: 300, concurrency: 2 });
    await c.handler.set('hung', fetchValue(), FETCH_CTX);
    await c.handler.set('fine', fetchValue(), FETCH_CTX);
    const hungFile = c.runtime.layout.entryPath(hashKey('hung'));
    fs.add({ op: 'open', path: hungFile, fault: { hang: true } });
    const started = performance.now();
    expect(await c.handler.get('hung', {})).toBeNull();
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(c.runtime.metrics.misses['timeout']).toBe(1);
    // One slot is stuck, one is free: other keys are still hits.
    expect(await c.handler.get('fine', {})).not.toBeNull();
    // A second hung call takes the last slot: from now on every get is an immediate miss.
    expect(await c.handler.get('hung', {})).toBeNull();
    expect(c.runtime.service.gateSlots().stuck).toBe(2);
    expect(await c.handler.get('fine', {})).toBeNull();
    expect(c.runtime.metrics.misses['saturated']).toBe(1);
    // The mount comes back: the stuck calls return, slots free up, hits resume.
    fs.rules.length = 0;
    fs.releaseHung();
    expect(await waitFor(() => c.runtime.service.gateSlots().stuck === 0)).toBe(true);
    expect(await c.handler.get('fine', {})).not.toBeNull();
  });

  it('until the tag view has loaded once, entries are not served (they might have been invalidated elsewhere)', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs, { timeoutMs: 200 });
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    const fresh = await openCache({ dir: c.root, timeoutMs: 200 }, fs);
    opened.push(fresh);
    fs.add({ op: 'readdir', path: 'inval', fault: { hang: true } });
    expect(await fresh.handler.get('k', {})).toBeNull();
    expect(fresh.runtime.metrics.misses['tags-loading']).toBe(1);
    fs.rules.length = 0;
    fs.releaseHung();
    expect(await waitFor(async () => (await fresh.handler.get('k', {})) !== null)).toBe(true);
  });

  it('a hung append to the tag index holds a gate slot (never a thread outside the bound) and the set itself completes', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs, { timeoutMs: 200, concurrency: 2 });
    await c.runtime.ready();
    fs.add({ op: 'write', path: '/tags/members/', fault: { hang: true } });
    await c.handler.set('k', fetchValue('x', ['data']), FETCH_CTX);
    expect(await c.handler.get('k', {})).not.toBeNull();
    // Past its 200 ms deadline the hung append counts as stuck: it holds one slot, and only one.
    expect(await waitFor(() => c.runtime.service.gateSlots().stuck === 1)).toBe(true);
    expect(c.runtime.service.gateSlots().stuck).toBe(1);
    fs.rules.length = 0;
    fs.releaseHung();
    expect(await waitFor(() => c.runtime.service.gateSlots().stuck === 0)).toBe(true);
  });

  it('a vanished cache root: gets miss, sets fail quietly, no folder is recreated', async () => {
    const fs = new FaultyFs();
    const c = await cacheOn(fs);
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    const { rmSync, existsSync } = await import('node:fs');
    rmSync(c.root, { recursive: true, force: true });
    expect(await c.handler.get('k', {})).toBeNull();
    await c.handler.set('k2', fetchValue(), FETCH_CTX);
    expect(existsSync(c.root)).toBe(false);
  });
});
