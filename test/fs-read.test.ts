import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfinedFs } from '../lib/fs/confined';
import { readOpened, type ReadLimits } from '../lib/fs/read';
import { FaultyFs } from './fault-fs';
import { codeOf, randomBytes, seededRandom, tempDir } from './helpers';

const KIB = 1024;

/** A real file of `bytes` in a fresh root, and a ConfinedFs on that root over a counting (fault-free unless told) fs. */
function fileOf(bytes: Buffer): { fs: ConfinedFs; raw: FaultyFs; file: string } {
  const root = tempDir('nvc-read-');
  const file = path.join(root, 'data');
  writeFileSync(file, bytes);
  const raw = new FaultyFs();
  return { fs: new ConfinedFs(raw, root, { writer: 'test', fsync: false, fileMode: undefined, dirMode: undefined }), raw, file };
}

/** A format that declares its own length in its first 4 bytes (as entries do in their prefix). */
const declaredU32 = (head: Buffer): number | undefined => (head.length >= 4 ? head.readUInt32LE(0) : undefined);

describe('bounded reads', () => {
  it('refuses a file larger than the cap from its size alone, before reading a byte', async () => {
    const { fs, raw, file } = fileOf(Buffer.alloc(10 * KIB));
    expect(await codeOf(fs.readFile(file, { maxBytes: 10 * KIB - 1 }))).toBe('EFBIG');
    expect(raw.counts.get('read') ?? 0).toBe(0);
    expect((await fs.readFile(file, { maxBytes: 10 * KIB })).length).toBe(10 * KIB);
  });

  it('refuses a file that declares a length past the cap, however small it really is', async () => {
    const head = Buffer.alloc(64);
    head.writeUInt32LE(4_000_000_000, 0);
    const { fs, file } = fileOf(head);
    expect(await codeOf(fs.readFile(file, { maxBytes: 1024 * KIB, declared: declaredU32 }))).toBe('EFBIG');
  });

  it('stops at the declared length, and returns what a truncated file holds when it declares more', async () => {
    const whole = randomBytes(seededRandom(1), 300 * KIB);
    whole.writeUInt32LE(200 * KIB, 0);
    const { fs, file } = fileOf(whole);
    const read = await fs.readFile(file, { maxBytes: 1024 * KIB, declared: declaredU32 });
    expect(read.equals(whole.subarray(0, 200 * KIB))).toBe(true);

    const truncated = Buffer.from(whole.subarray(0, 150 * KIB));
    const short = fileOf(truncated);
    const got = await short.fs.readFile(short.file, { maxBytes: 1024 * KIB, declared: declaredU32 });
    expect(got.equals(truncated)).toBe(true);
  });

  it('reads to end of file, not to the size fstat gave at open: a file that grew is read whole, or refused past the cap', async () => {
    const start = randomBytes(seededRandom(2), 100 * KIB);
    const more = randomBytes(seededRandom(3), 200 * KIB);
    const { fs, file } = fileOf(start);
    const readGrown = async (limits: ReadLimits): Promise<Buffer> => {
      writeFileSync(file, start);
      const { handle, stats } = await fs.openFile(file);
      try {
        appendFileSync(file, more); // after fstat: the size at open is stale (as an NFS client's cached size can be)
        return await readOpened(handle, stats, limits);
      } finally {
        await handle.close();
      }
    };
    expect((await readGrown({ maxBytes: 1024 * KIB })).equals(Buffer.concat([start, more]))).toBe(true);
    expect(await codeOf(readGrown({ maxBytes: 250 * KIB }))).toBe('EFBIG');
  });

  it('returns the right bytes when every read comes back short, from a position, with a declared length beyond the first read', async () => {
    const whole = randomBytes(seededRandom(4), 200 * KIB);
    const { fs, raw, file } = fileOf(whole);
    raw.add({ op: 'read', fault: { shortRead: 7 * KIB } });
    expect((await fs.readFile(file, { maxBytes: 1024 * KIB })).equals(whole)).toBe(true);
    expect((await fs.readFile(file, { maxBytes: 1024 * KIB, position: 150 * KIB })).equals(whole.subarray(150 * KIB))).toBe(true);
    // Declared only once 4 bytes are in, larger than the first (short) read: the rest is read in the same first buffer.
    const declared = Buffer.from(whole);
    declared.writeUInt32LE(30 * KIB, 0);
    writeFileSync(file, declared);
    expect((await fs.readFile(file, { maxBytes: 1024 * KIB, declared: declaredU32 })).equals(declared.subarray(0, 30 * KIB))).toBe(true);
  });

  it('an empty file is an empty buffer', async () => {
    const { fs, file } = fileOf(Buffer.alloc(0));
    expect((await fs.readFile(file, { maxBytes: 10, declared: declaredU32 })).length).toBe(0);
  });
});

/** A whole file through startReading, as the entry store reads it (closing only once the read is idle). */
async function readStarted(fs: ConfinedFs, file: string, limits: ReadLimits): Promise<Buffer> {
  const { handle, read } = await fs.startReading(file, limits);
  try {
    return await read.finish(await read.stats);
  } finally {
    await read.idle();
    await handle.close();
  }
}

describe('a read started beside its fstat (the request path)', () => {
  it('reads the same bytes as readFile, whatever the size against its first read, from a position, with short reads', async () => {
    const random = seededRandom(5);
    for (const size of [0, 1, 4 * KIB, 128 * KIB - 1, 128 * KIB, 128 * KIB + 1, 1024 * KIB + 7]) {
      const whole = randomBytes(random, size);
      if (size >= 4) whole.writeUInt32LE(size, 0);
      const { fs, raw, file } = fileOf(whole);
      for (const limits of [{ maxBytes: 2048 * KIB }, { maxBytes: 2048 * KIB, declared: declaredU32 }, { maxBytes: 2048 * KIB, position: Math.floor(size / 3) }]) {
        expect((await readStarted(fs, file, limits)).equals(await fs.readFile(file, limits))).toBe(true);
      }
      raw.add({ op: 'read', fault: { shortRead: 5 * KIB } });
      expect((await readStarted(fs, file, { maxBytes: 2048 * KIB, declared: declaredU32 })).equals(whole)).toBe(true);
    }
  });

  it('its fstat and first read are in flight together: the fstat answers while the read is held', async () => {
    const { fs, raw, file } = fileOf(randomBytes(seededRandom(6), 10 * KIB));
    raw.add({ op: 'read', times: 1, fault: { hang: true } });
    const { handle, read } = await fs.startReading(file, { maxBytes: 1024 * KIB });
    expect((await read.stats).size).toBe(10 * KIB);
    raw.releaseHung();
    expect((await read.finish(await read.stats)).length).toBe(10 * KIB);
    await read.idle();
    await handle.close();
  });

  it('refuses anything but a regular file (ENOTREG), and is idle only once the read it began has ended', async () => {
    const { fs, raw, file } = fileOf(Buffer.alloc(1));
    const folder = path.join(path.dirname(file), 'a-folder');
    mkdirSync(folder);
    raw.add({ op: 'read', times: 1, fault: { hang: true } });
    const { handle, read } = await fs.startReading(folder, { maxBytes: 1024 * KIB });
    expect(await codeOf(read.stats)).toBe('ENOTREG');
    let idle = false;
    const idling = read.idle().then(() => (idle = true));
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(idle).toBe(false); // the read into its buffer is still held: closing now could hand its descriptor to another file
    raw.releaseHung();
    await idling;
    await handle.close();
  });

  it('refuses a file larger than the cap from its fstat (EFBIG), without reading on', async () => {
    const { fs, raw, file } = fileOf(Buffer.alloc(600 * KIB));
    const { handle, read } = await fs.startReading(file, { maxBytes: 500 * KIB });
    expect(await codeOf(read.finish(await read.stats))).toBe('EFBIG');
    await read.idle();
    await handle.close();
    expect(raw.counts.get('read')).toBe(1);
  });

  it('with a first read sized for the file (a size known from before), reads it whole in one read, and right when the size was wrong', async () => {
    const random = seededRandom(8);
    const size = 600 * KIB;
    const whole = randomBytes(random, size);
    whole.writeUInt32LE(size, 0);
    const { fs, raw, file } = fileOf(whole);
    const fitted = await readStarted(fs, file, { maxBytes: 2048 * KIB, declared: declaredU32, firstRead: size + 16 * KIB });
    expect(fitted.equals(whole)).toBe(true);
    expect(raw.counts.get('read')).toBe(1);
    expect(fitted.buffer.byteLength).toBe(size + 16 * KIB); // the buffer read into, handed out without a copy
    // The file grew, or shrank, since its size was noted: the same bytes as readFile either way.
    for (const firstRead of [size - 100 * KIB, 2 * size + 1, 300 * KIB]) {
      for (const limits of [
        { maxBytes: 2048 * KIB, firstRead },
        { maxBytes: 2048 * KIB, declared: declaredU32, firstRead },
      ]) {
        expect((await readStarted(fs, file, limits)).equals(whole)).toBe(true);
      }
    }
    // Much larger than the file: the bytes are copied out rather than keeping the rest of the buffer alive.
    const small = await readStarted(fs, file, { maxBytes: 4096 * KIB, firstRead: size + 17 * KIB });
    expect(small.equals(whole)).toBe(true);
    expect(small.buffer.byteLength).toBe(size);
  });

  it('a first read of a pooled size is copied out: a later read into the reused buffer changes nothing handed out', async () => {
    const random = seededRandom(9);
    const first = fileOf(randomBytes(random, 100 * KIB));
    const second = fileOf(randomBytes(random, 100 * KIB));
    const got = await readStarted(first.fs, first.file, { maxBytes: 1024 * KIB, firstRead: 128 * KIB });
    const snapshot = Buffer.from(got);
    await readStarted(second.fs, second.file, { maxBytes: 1024 * KIB, firstRead: 128 * KIB });
    expect(got.equals(snapshot)).toBe(true);
    expect(got.buffer.byteLength).toBeLessThan(128 * KIB);
  });

  it('concurrent reads never share a buffer: each gets its own file', async () => {
    const random = seededRandom(7);
    const files = Array.from({ length: 40 }, (_, i) => fileOf(randomBytes(random, (i % 5) * 50 * KIB + 100)));
    for (let round = 0; round < 3; round++) {
      const got = await Promise.all(files.map(({ fs, file }) => readStarted(fs, file, { maxBytes: 1024 * KIB })));
      got.forEach((bytes, i) => expect(bytes.length).toBe((i % 5) * 50 * KIB + 100));
      const again = await Promise.all(files.map(({ fs, file }) => fs.readFile(file, { maxBytes: 1024 * KIB })));
      got.forEach((bytes, i) => expect(bytes.equals(again[i]!)).toBe(true));
    }
  });
});
