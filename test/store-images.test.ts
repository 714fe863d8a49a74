import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfinedFs } from '../lib/fs/confined';
import { nodeFs, type VolumeFs } from '../lib/fs/syscalls';
import { hashKey, loadHasher } from '../lib/store/hash';
import { ImageStore, parseSidecar, type ImageSidecar, type ImageValue } from '../lib/store/image-store';
import { createIntegrity } from '../lib/store/integrity';
import { Layout } from '../lib/store/layout';
import { FaultyFs } from './fault-fs';
import { tempDir } from './helpers';

beforeAll(loadHasher);

const NS = 'shared';
const KEY = '/_next/image?url=%2Fa.png&w=640&q=75';

function image(bytes = Buffer.from('png bytes, not really'), extension = 'png'): ImageValue {
  return { kind: 'IMAGE', buffer: bytes, etag: 'e1', upstreamEtag: 'u1', extension, revalidate: 60 };
}

interface Store {
  images: ImageStore;
  layout: Layout;
  sidecar: string;
  /** The sidecar as written. */
  written(): ImageSidecar;
  rawPath(): string;
}

function store(options: { maxEntryBytes?: number; secret?: string; raw?: VolumeFs } = {}): Store {
  const root = tempDir('nvc-images-');
  const layout = new Layout(root, 'default');
  for (const dir of layout.skeleton()) mkdirSync(dir, { recursive: true }); // what opening the root creates
  const fs = new ConfinedFs(options.raw ?? nodeFs, root, { writer: 'test', fsync: false, fileMode: undefined, dirMode: undefined });
  const integrity = options.secret ? createIntegrity([options.secret]) : undefined;
  const images = new ImageStore(fs, layout, { app: 'default', maxEntryBytes: options.maxEntryBytes ?? 1024 * 1024, integrity });
  const sidecar = layout.sidecarPath(hashKey(KEY), NS);
  const written = () => JSON.parse(readFileSync(sidecar, 'utf8')) as ImageSidecar;
  return { images, layout, sidecar, written, rawPath: () => layout.rawImagePath(hashKey(KEY), NS, written().file) };
}

async function stored(options: Parameters<typeof store>[0] = {}, value = image()): Promise<Store> {
  const s = store(options);
  await s.images.write(KEY, value, { revalidate: 60 }, 1_700_000_000_000, NS);
  return s;
}

const reasonOf = async (s: Store, key = KEY): Promise<string> => {
  const read = await s.images.read(key, NS);
  return read.found ? 'found' : read.reason;
};

describe('image store: a pair of sidecar and raw file, trusted only when they agree', () => {
  it('reads back what it wrote; a missing sidecar is absent', async () => {
    const s = await stored();
    const read = await s.images.read(KEY, NS);
    expect(read.found && read.buffer.toString()).toBe('png bytes, not really');
    expect(await reasonOf(store())).toBe('absent');
  });

  it('a sidecar that is not JSON, not ours, oversized, or naming another key: a miss with its reason', async () => {
    const s = await stored();
    const good = readFileSync(s.sidecar);
    const sidecar = JSON.parse(good.toString()) as ImageSidecar;
    writeFileSync(s.sidecar, '{not json');
    expect(await reasonOf(s)).toBe('bad-sidecar');
    writeFileSync(s.sidecar, JSON.stringify({ ...sidecar, v: 2 }));
    expect(await reasonOf(s)).toBe('bad-sidecar');
    writeFileSync(s.sidecar, good);
    truncateSync(s.sidecar, 64 * 1024 + 1);
    expect(await reasonOf(s)).toBe('bad-sidecar');
    writeFileSync(s.sidecar, good);
    expect(await reasonOf(s, '/another/key')).toBe('absent'); // another key has another hash: another sidecar
    writeFileSync(s.sidecar, JSON.stringify({ ...sidecar, key: '/colliding/key' }));
    expect(await reasonOf(s)).toBe('key-mismatch');
  });

  it('a raw file missing, of another size, with other bytes, or not a regular file: a miss, never the wrong bytes', async () => {
    const s = await stored();
    const raw = s.rawPath();
    const bytes = readFileSync(raw);
    rmSync(raw);
    expect(await reasonOf(s)).toBe('raw-missing');
    writeFileSync(raw, Buffer.concat([bytes, Buffer.from('!')]));
    expect(await reasonOf(s)).toBe('raw-size');
    const flipped = Buffer.from(bytes);
    flipped[0]! ^= 1;
    writeFileSync(raw, flipped);
    expect(await reasonOf(s)).toBe('raw-checksum');
    expect(await reasonOf(s)).toBe('raw-checksum'); // remembered for this version of the file
    rmSync(raw);
    execFileSync('mkfifo', [raw]);
    expect(await reasonOf(s)).toBe('not-a-file');
  });

  it('a sidecar declaring more than the entry cap is refused before the raw file is read', async () => {
    const s = await stored({ maxEntryBytes: 10 }, image(Buffer.alloc(11)));
    expect(await reasonOf(s)).toBe('too-large');
  });

  it('with a secret: an unsealed pair or one sealed elsewhere is refused', async () => {
    const secret = 'a secret of at least sixteen';
    const sealed = await stored({ secret });
    expect(await reasonOf(sealed)).toBe('found');
    const unsealed = await stored();
    const reader = new ImageStore(new ConfinedFs(nodeFs, unsealed.layout.root, { writer: 't', fsync: false, fileMode: undefined, dirMode: undefined }), unsealed.layout, {
      app: 'default',
      maxEntryBytes: 1024 * 1024,
      integrity: createIntegrity([secret]),
    });
    expect((await reader.read(KEY, NS)) as { reason?: string }).toMatchObject({ found: false, reason: 'unsealed' });
    // The same sealed pair copied into another namespace does not verify there.
    const build = path.dirname(sealed.layout.sidecarPath(hashKey(KEY), 'build-2'));
    mkdirSync(build, { recursive: true });
    for (const name of readdirSync(path.dirname(sealed.sidecar))) writeFileSync(path.join(build, name), readFileSync(path.join(path.dirname(sealed.sidecar), name)));
    expect(((await sealed.images.read(KEY, 'build-2')) as { reason?: string }).reason).toBe('forged');
  });

  it('a rewrite replaces the raw file (no orphan); remove takes both; an unknown extension is stored as .bin', async () => {
    const s = await stored();
    const first = s.rawPath();
    await s.images.write(KEY, image(Buffer.from('new bytes'), 'EXE;rm'), undefined, 1_700_000_000_001, NS);
    expect(existsSync(first)).toBe(false);
    expect(s.written().file.endsWith('.bin')).toBe(true);
    expect(readdirSync(path.dirname(s.sidecar))).toHaveLength(2);
    expect(await s.images.remove(hashKey(KEY), NS)).toBe(true);
    expect(readdirSync(path.dirname(s.sidecar))).toEqual([]);
    expect(await s.images.remove(hashKey(KEY), NS)).toBe(false);
  });

  it('a sidecar that cannot be published leaves no orphan raw file behind', async () => {
    const raw = new FaultyFs().add({ op: 'rename', path: '.json', fault: { code: 'ENOSPC' } });
    const s = store({ raw });
    await expect(s.images.write(KEY, image(), undefined, 1, NS)).rejects.toMatchObject({ code: 'ENOSPC' });
    const folder = path.dirname(s.sidecar);
    expect(existsSync(folder) ? readdirSync(folder) : []).toEqual([]);
  });

  it('parseSidecar trusts only a sidecar whose file name its own fields derive', () => {
    const hash = '0123456789abcdef';
    const base = { v: 1, key: 'k', etag: 'e', upstreamEtag: 'u', extension: 'png', revalidate: 1, lastModified: 1, size: 3, checksum: 'fedcba9876543210', file: `${hash}.fedcba9876543210.png` };
    const parse = (fields: object) => parseSidecar(Buffer.from(JSON.stringify({ ...base, ...fields })), hash);
    expect(parse({})).toBeDefined();
    expect(parse({ file: '../../../etc/passwd' })).toBeUndefined();
    expect(parse({ size: -1 })).toBeUndefined();
    expect(parse({ checksum: 'not hex' })).toBeUndefined();
    expect(parse({ seal: 5 })).toBeUndefined();
    expect(parse({ etag: 1 })).toBeUndefined();
    expect(parse({ lastModified: '1' })).toBeUndefined();
    expect(parseSidecar(Buffer.from('null'), hash)).toBeUndefined();
  });
});
