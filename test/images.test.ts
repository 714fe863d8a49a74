import { existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../lib/store/hash';
import { openCache, randomBytes, runChild, seededRandom, tempDir, waitFor, walk, type TestCache } from './helpers';
import { FaultyFs } from './fault-fs';

const opened: TestCache[] = [];
async function cache(dir = tempDir()): Promise<TestCache> {
  const c = await openCache({ dir });
  opened.push(c);
  return c;
}
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});

const IMAGE_CTX = { kind: 'IMAGE', cacheControl: { revalidate: 14400, expire: undefined } };
const GET_CTX = { kind: 'IMAGE', isFallback: false };
const images: Record<string, Buffer> = {};

beforeAll(async () => {
  const base = sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 30, b: 90 } } });
  images.png = await base.clone().png().toBuffer();
  images.webp = await base.clone().webp().toBuffer();
  images.avif = await base.clone().avif().toBuffer();
  images.jpeg = await base.clone().jpeg().toBuffer();
  // ~10 MB: noise does not compress.
  const noise = randomBytes(seededRandom(21), 1900 * 1800 * 3);
  images.big = await sharp(noise, { raw: { width: 1900, height: 1800, channels: 3 } })
    .png({ compressionLevel: 0 })
    .toBuffer();
});

function imageValue(extension: string, buffer: Buffer, etag = 'etag-' + extension) {
  return { kind: 'IMAGE', buffer, etag, upstreamEtag: 'upstream-' + extension, extension: extension === 'big' ? 'png' : extension, revalidate: 14400 };
}

describe('images as raw files with a JSON sidecar', () => {
  it.each(['png', 'webp', 'avif', 'jpeg', 'big'])('%s round-trips exactly, and the raw file is the image itself', async (kind) => {
    const c = await cache();
    const buffer = images[kind]!;
    if (kind === 'big') expect(buffer.length).toBeGreaterThan(10_000_000);
    await c.handler.set(`img-${kind}`, imageValue(kind, buffer), IMAGE_CTX);
    const got = await c.handler.get(`img-${kind}`, GET_CTX);
    expect(got).not.toBeNull();
    const value = got!.value as Record<string, unknown>;
    expect(Buffer.isBuffer(value.buffer) && value.buffer.equals(buffer)).toBe(true);
    expect(value).toMatchObject({ kind: 'IMAGE', etag: `etag-${kind}`, upstreamEtag: `upstream-${kind}`, revalidate: 14400 });
    expect(got!.cacheControl).toEqual({ revalidate: 14400 });
    expect(Date.now() - got!.lastModified).toBeLessThan(5000);
    const files = walk(path.join(c.root, 'apps/default/images')).filter((p) => statSync(p).isFile());
    expect(files).toHaveLength(2);
    const raw = files.find((f) => !f.endsWith('.json'))!;
    const sidecar = JSON.parse(
      readFileSync(
        files.find((f) => f.endsWith('.json'))!,
        'utf8',
      ),
    );
    expect(sidecar).toMatchObject({ key: `img-${kind}`, size: buffer.length, contentType: kind === 'jpeg' ? 'image/jpeg' : `image/${kind === 'big' ? 'png' : kind}` });
    expect(readFileSync(raw).equals(buffer)).toBe(true);
    expect((await sharp(raw).metadata()).format).toBe(kind === 'big' ? 'png' : kind === 'avif' ? 'heif' : kind);
    expect(walk(c.root).filter((p) => p.includes('/entries/') && p.endsWith('.entry'))).toEqual([]);
  });

  it('replacing an image removes the superseded raw file', async () => {
    const c = await cache();
    await c.handler.set('img', imageValue('png', images.png!), IMAGE_CTX);
    await c.handler.set('img', imageValue('webp', images.webp!), IMAGE_CTX);
    const dir = path.dirname(c.runtime.layout.sidecarPath(hashKey('img')));
    expect(readdirSync(dir).sort()).toHaveLength(2);
    expect(((await c.handler.get('img', GET_CTX))!.value as { kind: string; extension: string }).extension).toBe('webp');
  });

  it('a hit marks the raw file as used (mtime on the volume clock), at most once per period', async () => {
    const fs = new FaultyFs();
    const c = await openCache({ dir: tempDir() }, fs);
    opened.push(c);
    await c.handler.set('img', imageValue('png', images.png!), IMAGE_CTX);
    const raw = readdirSync(path.dirname(c.runtime.layout.sidecarPath(hashKey('img')))).find((n) => n.endsWith('.png'))!;
    const rawPath = path.join(path.dirname(c.runtime.layout.sidecarPath(hashKey('img'))), raw);
    utimesSync(rawPath, new Date('2020-01-01'), new Date('2020-01-01'));
    await c.handler.get('img', GET_CTX);
    expect(await waitFor(() => Date.now() - statSync(rawPath).mtimeMs < 5000)).toBe(true);
    // The touch is started before get returns: a second hit within the period starts none.
    expect(fs.counts.get('utimes')).toBe(1);
    await c.handler.get('img', GET_CTX);
    expect(fs.counts.get('utimes')).toBe(1);
  });
});

describe('bad input around images', () => {
  async function stored() {
    const c = await cache();
    await c.handler.set('img', imageValue('png', images.png!), IMAGE_CTX);
    const sidecarPath = c.runtime.layout.sidecarPath(hashKey('img'));
    const sidecar = JSON.parse(readFileSync(sidecarPath, 'utf8'));
    return { c, sidecarPath, sidecar, rawPath: path.join(path.dirname(sidecarPath), sidecar.file) };
  }

  it('invalid JSON, a sidecar pointing outside the root, a raw file of the wrong size or replaced by a symlink: misses, nothing outside read or deleted', async () => {
    const { c, sidecarPath, sidecar, rawPath } = await stored();
    const outside = path.join(tempDir(), 'secret.png');
    writeFileSync(outside, images.png!);
    writeFileSync(sidecarPath, '{not json');
    expect(await c.handler.get('img', GET_CTX)).toBeNull();
    writeFileSync(sidecarPath, JSON.stringify({ ...sidecar, file: path.relative(path.dirname(sidecarPath), outside) }));
    expect(await c.handler.get('img', GET_CTX)).toBeNull();
    writeFileSync(sidecarPath, JSON.stringify(sidecar));
    expect(await c.handler.get('img', GET_CTX)).not.toBeNull();
    writeFileSync(rawPath, images.png!.subarray(0, 100));
    expect(await c.handler.get('img', GET_CTX)).toBeNull();
    writeFileSync(rawPath, Buffer.from(images.png!).fill(1, 50, 60));
    expect(await c.handler.get('img', GET_CTX)).toBeNull();
    rmSync(rawPath);
    expect(await c.handler.get('img', GET_CTX)).toBeNull();
    symlinkSync(outside, rawPath);
    expect(await c.handler.get('img', GET_CTX)).toBeNull();
    // A new write replaces the planted link with a real file; the link's target is untouched.
    await c.handler.set('img', imageValue('webp', images.webp!), IMAGE_CTX);
    expect(readFileSync(outside).equals(images.png!)).toBe(true);
    expect(c.runtime.metrics.misses).toMatchObject({ 'bad-sidecar': 2, 'raw-size': 1, 'raw-checksum': 1, 'raw-missing': 1, 'not-a-file': 1 });
  });
});

describe('images across processes', () => {
  it('writers replacing the same keys never let a reader see bytes that do not hash to their etag', async () => {
    const dir = tempDir();
    const runs = [...['w1', 'w2'].map((id) => runChild('image-stress.js', ['writer', dir, '4000', id])), ...['r1', 'r2', 'r3'].map((id) => runChild('image-stress.js', ['reader', dir, '4000', id]))];
    const results = await Promise.all(runs);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const counts = results.map((r) => JSON.parse(r.stdout) as { role: string; writes: number; hits: number; mismatches: number });
    const hits = counts.reduce((n, c) => n + c.hits, 0);
    const writes = counts.reduce((n, c) => n + c.writes, 0);
    console.log(`images: ${writes} writes, ${hits} verified hits, ${counts.reduce((n, c) => n + c.mismatches, 0)} mismatches`);
    expect(writes).toBeGreaterThan(50);
    expect(hits).toBeGreaterThan(50);
    expect(counts.reduce((n, c) => n + c.mismatches, 0)).toBe(0);
  });

  it('a writer SIGKILLed between the raw file and the sidecar leaves no servable half-entry, only an orphan', async () => {
    const c = await cache();
    await c.handler.set('img', imageValue('png', images.png!), IMAGE_CTX);
    const result = await runChild('image-crash.js', [c.root, 'img']);
    expect(result.signal).toBe('SIGKILL');
    const dir = path.dirname(c.runtime.layout.sidecarPath(hashKey('img')));
    expect(readdirSync(dir).filter((n) => n.endsWith('.png'))).toHaveLength(2);
    const got = await c.handler.get('img', GET_CTX);
    expect((got!.value as { kind: string; buffer: Buffer }).buffer.equals(images.png!)).toBe(true);
    const fresh = await runChild('image-crash.js', [c.root, 'never-published']);
    expect(fresh.signal).toBe('SIGKILL');
    expect(await c.handler.get('never-published', GET_CTX)).toBeNull();
    expect(existsSync(c.runtime.layout.sidecarPath(hashKey('never-published')))).toBe(false);
  });
});
