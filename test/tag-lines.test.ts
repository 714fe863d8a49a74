import { appendFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfinedFs } from '../lib/fs/confined';
import { nodeFs } from '../lib/fs/syscalls';
import { loadHasher } from '../lib/store/hash';
import { createIntegrity } from '../lib/store/integrity';
import { decodeLine, decodeSingleLine, encodeLine, MAX_LINE_BYTES, scanLines, type LineSeal } from '../lib/tags/lines';
import { tempDir } from './helpers';

beforeAll(loadHasher);

const MIB = 1024 * 1024;

/** A real segment file with `content`, and a ConfinedFs on its folder. */
function segment(content: string | Buffer): { fs: ConfinedFs; file: string } {
  const root = tempDir('nvc-lines-');
  const file = path.join(root, 'segment.log');
  writeFileSync(file, content);
  return { fs: new ConfinedFs(nodeFs, root, { writer: 'test', fsync: false, fileMode: undefined, dirMode: undefined }), file };
}

async function scan(fs: ConfinedFs, file: string, position = 0, maxLine?: number): Promise<{ lines: string[]; consumed: number; tooLong: number }> {
  const lines: string[] = [];
  const result = await scanLines(fs, file, position, (line) => lines.push(line), maxLine);
  return { lines, ...result };
}

describe('scanLines over real files', () => {
  it('delivers every line of a file larger than one read chunk (1 MiB), including the line across the chunk boundary', async () => {
    const lines = Array.from({ length: 30_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 97)}`);
    const content = lines.join('\n') + '\n';
    expect(Buffer.byteLength(content)).toBeGreaterThan(MIB);
    const { fs, file } = segment(content);
    const scanned = await scan(fs, file);
    expect(scanned.lines).toEqual(lines);
    expect(scanned).toMatchObject({ consumed: Buffer.byteLength(content), tooLong: 0 });
  });

  it('skips a line longer than the limit by scanning it (across chunks), counts it, and keeps the lines around it', async () => {
    const huge = 'h'.repeat(MAX_LINE_BYTES + MIB / 2);
    const content = `before\n${huge}\nafter\n`;
    const { fs, file } = segment(content);
    const scanned = await scan(fs, file);
    expect(scanned.lines).toEqual(['before', 'after']);
    expect(scanned).toMatchObject({ consumed: Buffer.byteLength(content), tooLong: 1 });
    // The limit is the caller's: a short one skips short lines the same way.
    const small = segment(`ok\n${'y'.repeat(101)}\nfine\n`);
    expect(await scan(small.fs, small.file, 0, 100)).toMatchObject({ lines: ['ok', 'fine'], tooLong: 1 });
  });

  it('leaves an unterminated tail (a line being written) for the next read, which starts where this one stopped', async () => {
    const { fs, file } = segment('one\ntwo\npart');
    const first = await scan(fs, file);
    expect(first).toEqual({ lines: ['one', 'two'], consumed: 8, tooLong: 0, beyondEnd: false });
    appendFileSync(file, 'ial\nthree\n');
    const next = await scan(fs, file, first.consumed);
    expect(next).toEqual({ lines: ['partial', 'three'], consumed: statSync(file).size, tooLong: 0, beyondEnd: false });
    // Nothing new: nothing delivered, the position stays.
    expect(await scan(fs, file, next.consumed)).toEqual({ lines: [], consumed: next.consumed, tooLong: 0, beyondEnd: false });
  });

  it('gives up on an unterminated tail that is already too long to be a record: counted, and consumed', async () => {
    const content = `ok\n${'z'.repeat(50)}`;
    const { fs, file } = segment(content);
    expect(await scan(fs, file, 0, 20)).toEqual({ lines: ['ok'], consumed: Buffer.byteLength(content), tooLong: 1, beyondEnd: false });
  });

  it('does not hand empty lines on', async () => {
    const { fs, file } = segment('\n\na\n\n');
    expect(await scan(fs, file)).toEqual({ lines: ['a'], consumed: 5, tooLong: 0, beyondEnd: false });
  });
});

describe('the line codec', () => {
  const sealFor = (place: string, ...secrets: string[]): LineSeal => ({ integrity: createIntegrity(secrets.length ? secrets : ['a secret of sixteen+']), place });

  it('checksummed lines: round trip; a changed character, a missing space or a foreign prefix fails', () => {
    const line = encodeLine('{"tags":["a"]}');
    expect(line.endsWith('\n')).toBe(true);
    const text = line.slice(0, -1);
    expect(decodeLine(text)).toBe('{"tags":["a"]}');
    expect(decodeLine(text.replace('"a"', '"b"'))).toBeUndefined();
    expect(decodeLine(text.replace(' ', ''))).toBeUndefined();
    expect(decodeLine(`0${text}`)).toBeUndefined();
    // A checksummed line where a sealed one is required is refused.
    expect(decodeLine(text, sealFor('app/inval'))).toBeUndefined();
  });

  it('sealed lines verify only for their place and an accepted secret; a replica without the secret reads them unchecked', () => {
    const seal = sealFor('app/inval', 'first secret, long enough');
    const text = encodeLine('record', seal).slice(0, -1);
    expect(text.startsWith('~')).toBe(true);
    expect(decodeLine(text, seal)).toBe('record');
    expect(decodeLine(text, { ...seal, place: 'other-app/inval' })).toBeUndefined();
    expect(decodeLine(text, sealFor('app/inval', 'another secret, long enough'))).toBeUndefined();
    // Rolling secrets: the new one seals, the old one still verifies what it sealed.
    expect(decodeLine(text, sealFor('app/inval', 'another secret, long enough', 'first secret, long enough'))).toBe('record');
    expect(decodeLine(text.replace('record', 'forged'), seal)).toBeUndefined();
    expect(decodeLine(text)).toBe('record');
  });

  it('a single-line file (a snapshot) must be exactly one intact, terminated line', () => {
    const line = encodeLine('snapshot');
    expect(decodeSingleLine(Buffer.from(line))).toBe('snapshot');
    expect(decodeSingleLine(Buffer.alloc(0))).toBeUndefined();
    expect(decodeSingleLine(Buffer.from(line.slice(0, -1)))).toBeUndefined();
    expect(decodeSingleLine(Buffer.from(line + line))).toBeUndefined();
  });
});
