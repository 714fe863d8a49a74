import { mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../bin/cli';
import { stats } from '../lib/maintenance';
import { decodeEntry, encodeEntry } from '../lib/store/codec';
import { hashKey } from '../lib/store/hash';
import { encodeInvalidation, parseInvalidation } from '../lib/tags/record';
import { openCache, randomBytes, readSegmentFile, seededRandom, tempDir, walk, type TestCache } from './helpers';
import type { CacheOptions } from '../lib/config';
import { appPage, FETCH_CTX, fetchValue, image, PAGE_CTX, sameValue } from './values';

/** Fuzz iterations (fixed seeds, so a failure can be replayed); NVC_FUZZ_COUNT for a longer soak. */
const COUNT = Number(process.env.NVC_FUZZ_COUNT ?? 300);
const opened: TestCache[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});
async function cache(dir = tempDir(), options: CacheOptions = {}): Promise<TestCache> {
  const c = await openCache({ ...options, dir });
  opened.push(c);
  return c;
}

/** One random damage: truncate, flip bytes, splice random bytes in, or overwrite a range. */
function mutate(random: () => number, original: Buffer): Buffer {
  const bytes = Buffer.from(original);
  const at = Math.floor(random() * bytes.length);
  switch (Math.floor(random() * 4)) {
    case 0:
      return bytes.subarray(0, at);
    case 1: {
      for (let i = 0; i < 1 + random() * 8; i++) {
        const j = Math.floor(random() * bytes.length);
        bytes[j] = bytes[j]! ^ (1 + Math.floor(random() * 255));
      }
      return bytes;
    }
    case 2:
      return Buffer.concat([bytes.subarray(0, at), randomBytes(random, 1 + Math.floor(random() * 64)), bytes.subarray(at)]);
    default:
      return Buffer.concat([bytes.subarray(0, at), randomBytes(random, Math.min(64, bytes.length - at)), bytes.subarray(at + 64)]);
  }
}

describe('fuzzing what is on the volume (fixed seed)', () => {
  it(`${COUNT} damaged entry files: every get is a miss or the exact original value, never a throw`, async () => {
    const c = await cache();
    const value = appPage({ segments: 5 });
    await c.handler.set('k', value, PAGE_CTX);
    const file = c.runtime.layout.entryPath(hashKey('k'));
    const original = readFileSync(file);
    const random = seededRandom(101);
    let misses = 0;
    for (let i = 0; i < COUNT; i++) {
      const damaged = mutate(random, original);
      writeFileSync(file, damaged);
      const got = await c.handler.get('k', {});
      if (got === null) misses++;
      else expect(sameValue(got.value, value), `iteration ${i}`).toBe(true);
    }
    expect(misses).toBeGreaterThan(COUNT * 0.9);
  });

  it(`${COUNT} damaged image sidecars and raw files: misses or the exact bytes`, async () => {
    const c = await cache();
    const buffer = randomBytes(seededRandom(5), 5000);
    await c.handler.set('img', image(buffer), { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } });
    const sidecarPath = c.runtime.layout.sidecarPath(hashKey('img'));
    const sidecar = readFileSync(sidecarPath);
    const rawPath = path.join(path.dirname(sidecarPath), JSON.parse(sidecar.toString()).file);
    const raw = readFileSync(rawPath);
    const random = seededRandom(202);
    for (let i = 0; i < COUNT; i++) {
      const damageSidecar = random() < 0.5;
      writeFileSync(damageSidecar ? sidecarPath : rawPath, mutate(random, damageSidecar ? sidecar : raw));
      const got = await c.handler.get('img', { kind: 'IMAGE' });
      if (got) expect((got.value as { kind: string; buffer: Buffer }).buffer.equals(buffer), `iteration ${i}`).toBe(true);
      writeFileSync(sidecarPath, sidecar);
      writeFileSync(rawPath, raw);
    }
  });

  it(`${COUNT} damaged log segments: parsing never throws and never yields a record that was not written`, async () => {
    const written = Array.from({ length: 20 }, (_, i) => ({ tags: [`t${i}`, `_N_T_/p/${i}`], stale: 1000 + i, expired: 2000 + i }));
    const original = Buffer.from(written.map((r) => encodeInvalidation(r)).join(''));
    const valid = new Set(written.map((r) => JSON.stringify(r)));
    const random = seededRandom(303);
    const file = path.join(tempDir('nvc-fuzz-'), 'w.000000.log');
    for (let i = 0; i < COUNT; i++) {
      writeFileSync(file, mutate(random, original));
      const parsed = await readSegmentFile(file, (line) => parseInvalidation(line));
      for (const r of parsed.records) expect(valid.has(JSON.stringify(r)), `iteration ${i}`).toBe(true);
    }
  });
});

describe('symlinks planted in the cache root', () => {
  it('a shard folder replaced by a link outside is never read through, written through or walked', async () => {
    const c = await cache();
    await c.handler.set('k', fetchValue('inside'), FETCH_CTX);
    const file = c.runtime.layout.entryPath(hashKey('k'));
    const shard = path.dirname(file);
    const outside = tempDir('nvc-outside-');
    // The outside folder even holds a valid copy of the entry: it must still never be served.
    writeFileSync(path.join(outside, path.basename(file)), readFileSync(file));
    renameSync(shard, `${shard}.moved`);
    symlinkSync(outside, shard);
    const fresh = await cache(c.root);
    expect(await fresh.handler.get('k', {})).toBeNull();
    await fresh.handler.set('k', fetchValue('new'), FETCH_CTX);
    expect(readdirSync(outside)).toEqual([path.basename(file)]);
    expect(readFileSync(path.join(outside, path.basename(file))).equals(readFileSync(path.join(`${shard}.moved`, path.basename(file))))).toBe(true);
    let out = '';
    expect(
      await main(
        ['--json', 'verify', '--repair', '--dir', c.root],
        (t) => (out += t),
        () => {},
      ),
    ).toBe(0);
    expect(existsSync(path.join(outside, path.basename(file)))).toBe(true);
    expect(
      await main(
        ['purge', '--all', '--yes', '--dir', c.root],
        () => {},
        () => {},
      ),
    ).toBe(0);
    expect(existsSync(path.join(outside, path.basename(file)))).toBe(true);
  });
});

describe("keys and tags at and beyond Next's limits", () => {
  it('128 tags of 256 characters, 1024-character path tags, and a 10 MB tag list are recorded and honoured', async () => {
    // Appending 10 MB takes 1-2 s here and over 4 s on a busy machine: past the 2 s default
    // deadline of one filesystem call, which this test is not about.
    const c = await cache(undefined, { timeoutMs: 60_000 });
    const many = Array.from({ length: 128 }, (_, i) => `${'t'.repeat(250)}${String(i).padStart(6, '0')}`);
    const pathTag = `_N_T_/${'segment/'.repeat(127)}`;
    await c.handler.set('f'.repeat(64), fetchValue('x', many), { fetchCache: true, tags: many });
    await c.handler.revalidateTag([many[127]!]);
    expect(await c.handler.get('f'.repeat(64), { kind: 'FETCH', tags: many })).toBeNull();
    await c.handler.set('g'.repeat(64), fetchValue('y', []), FETCH_CTX);
    await c.handler.revalidateTag([pathTag]);
    expect(await c.handler.get('g'.repeat(64), { kind: 'FETCH', softTags: [pathTag] })).toBeNull();
    // Far beyond any limit: a tag list of ~10 MB is split into records that each fit a log line.
    const huge = Array.from({ length: 10_000 }, (_, i) => `huge-${i}-${'x'.repeat(1000)}`);
    await c.handler.revalidateTag(huge);
    const other = await cache(c.root);
    await other.handler.get('warm', {});
    expect(huge.filter((t) => other.runtime.service.tagVerdict([t], 1) !== 'expired')).toEqual([]);
    // A single tag too long for any log line is refused, not acknowledged and lost.
    await expect(c.handler.revalidateTag(['z'.repeat(2 * 1024 * 1024)])).rejects.toThrow(/too long to record/);
  });

  it('a 100 KB key and keys made of every kind of character round-trip and stay in the root', async () => {
    const c = await cache();
    const keys = ['k'.repeat(100_000), '\u0000\u0001\n\r\t', '../'.repeat(1000), '日本語/😀/\ud83d', 'CON', 'a/b\\c'];
    for (const key of keys) {
      await c.handler.set(key, fetchValue(key.slice(0, 10)), FETCH_CTX);
      expect(await c.handler.get(key, {})).not.toBeNull();
    }
    mkdirSync(path.join(c.root, 'probe'));
    expect(readdirSync(c.root).sort()).toEqual(['apps', 'next-volume-cache.json', 'probe']);
  });
});

describe('names read from the volume', () => {
  it('an entry whose header names the kind "__proto__" is tallied by stats as that kind, and pollutes no prototype', async () => {
    const dir = tempDir();
    const c = await cache(dir);
    await c.handler.set('forged-kind', fetchValue('x', []), FETCH_CTX);
    await c.runtime.close();
    opened.splice(0);
    const file = walk(dir).find((p) => p.endsWith('.entry'))!;
    const record = decodeEntry(readFileSync(file), 'forged-kind');
    expect(record.ok).toBe(true);
    if (!record.ok) return;
    writeFileSync(file, Buffer.concat(encodeEntry({ ...record.record, kind: '__proto__' })));
    const result = await stats({ dir, logLevel: 'silent' });
    expect(Object.keys(result.entries.byKind)).toEqual(['__proto__']);
    expect(result.entries.byKind['__proto__']).toMatchObject({ count: 1 });
    expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain('count');
  });
});
