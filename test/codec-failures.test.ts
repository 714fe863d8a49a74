import { beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry, decodeEntryHeader, encodeEntry, entryDeclaredLength, entryHeaderLength, type EntryRecord, type SealContext } from '../lib/store/codec';
import { checksum, loadHasher } from '../lib/store/hash';
import { createIntegrity, MIN_SECRET_LENGTH } from '../lib/store/integrity';
import { appPage, fetchValue } from './values';

beforeAll(loadHasher);

const KEY = '/route-cache/APP_PAGE/abc/$/index';

function record(value: unknown = fetchValue()): EntryRecord {
  return { key: KEY, kind: 'FETCH', writtenAt: 1_700_000_000_000, cacheControl: { revalidate: 60, expire: 3600 }, tags: ['a'], value };
}

const bytesOf = (r: EntryRecord, seal?: SealContext): Buffer => Buffer.concat(encodeEntry(r, seal));

/**
 * Rebuilds a valid-looking unsealed entry (right prefix, right checksum) around a header changed by `edit`:
 * what a bug or a crafted file could hold, to reach the checks after the checksum.
 */
function withHeader(bytes: Buffer, edit: (header: Record<string, unknown>) => void): Buffer {
  const headerEnd = 16 + bytes.readUInt32LE(4);
  const header = JSON.parse(bytes.toString('utf8', 16, headerEnd)) as Record<string, unknown>;
  const parts = bytes.subarray(headerEnd, bytes.length - 8);
  edit(header);
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.from(bytes.subarray(0, 16));
  prefix.writeUInt32LE(json.length, 4);
  prefix.writeBigUInt64LE(BigInt(16 + json.length + parts.length + 8), 8);
  const body = [prefix, json, parts];
  return Buffer.concat([...body, checksum(body)]);
}

describe('entry codec: what it refuses after a valid checksum', () => {
  it('a value with an unknown marker, a part index out of range, a malformed map or wrapped object is corrupt, not a crash', () => {
    const base = bytesOf(record({ kind: 'FETCH', body: Buffer.from('raw part') }));
    const cases: Array<[string, unknown]> = [
      ['unknown marker', { $nvc: 'x' }],
      ['part index out of range', { $nvc: 'b', i: 5 }],
      ['part index not an integer', { $nvc: 's', i: 0.5 }],
      ['map entries not a list', { $nvc: 'm', e: 'nope' }],
      ['map entry not a pair', { $nvc: 'm', e: [['only-key']] }],
      ['wrapped object not an object', { $nvc: 'o', v: [1, 2] }],
    ];
    for (const [name, value] of cases) {
      const forged = withHeader(base, (header) => (header.value = { kind: 'FETCH', body: value }));
      expect(decodeEntry(forged, KEY), name).toEqual({ ok: false, reason: 'corrupt' });
    }
    // The rebuild itself is sound: an unchanged header decodes.
    expect(
      decodeEntry(
        withHeader(base, () => {}),
        KEY,
      ).ok,
    ).toBe(true);
  });

  it('a header that is not an entry header (bad types, too many parts, an unknown seal flag) is corrupt', () => {
    const base = bytesOf(record());
    const edits: Array<[string, (h: Record<string, unknown>) => void]> = [
      ['key not a string', (h) => (h.key = 7)],
      ['writtenAt not finite', (h) => (h.writtenAt = null)],
      ['a tag not a string', (h) => (h.tags = ['a', 1])],
      ['a negative part length', (h) => (h.parts = [-1])],
      ['millions of parts', (h) => (h.parts = new Array(70_000).fill(0))],
      ['seal flag 2', (h) => (h.seal = 2)],
    ];
    for (const [name, edit] of edits) expect(decodeEntry(withHeader(base, edit), KEY), name).toEqual({ ok: false, reason: 'corrupt' });
  });

  it('bytes past the declared length, or parts that do not add up to it, are corrupt', () => {
    const bytes = bytesOf(record());
    expect(decodeEntry(Buffer.concat([bytes, Buffer.from('x')]), KEY)).toEqual({ ok: false, reason: 'corrupt' });
    expect(
      decodeEntry(
        withHeader(bytes, (h) => (h.parts = [1])),
        KEY,
      ),
    ).toEqual({ ok: false, reason: 'corrupt' });
  });

  it('refuses to store what it cannot restore (a function, a symbol, a bigint)', () => {
    for (const value of [() => 1, Symbol('s'), 10n]) {
      expect(() => encodeEntry(record({ kind: 'FETCH', odd: value })), typeof value).toThrow(TypeError);
    }
  });
});

describe('entry header reads (stats, gc, purge)', () => {
  it('decodes the header from the first bytes, and says truncated or corrupt when it cannot', () => {
    const bytes = bytesOf(record(appPage()));
    const headerEnd = entryHeaderLength(bytes)!;
    expect(entryDeclaredLength(bytes)).toBe(bytes.length);
    const head = decodeEntryHeader(bytes.subarray(0, headerEnd));
    expect(head).toMatchObject({ ok: true, fileLength: bytes.length, header: { key: KEY, kind: 'FETCH', tags: ['a'] } });
    expect(decodeEntryHeader(bytes.subarray(0, headerEnd - 1))).toEqual({ ok: false, reason: 'truncated' });
    const garbled = Buffer.from(bytes.subarray(0, headerEnd));
    garbled.write('}', 16);
    expect(decodeEntryHeader(garbled)).toEqual({ ok: false, reason: 'corrupt' });
    expect(decodeEntryHeader(Buffer.from('<!DOCTYPE html>'))).toEqual({ ok: false, reason: 'not-an-entry' });
    expect(entryDeclaredLength(Buffer.from('NVC'))).toBeUndefined();
    expect(entryHeaderLength(Buffer.from('not an entry at all'))).toBeUndefined();
  });
});

describe('sealed entries (a secret configured)', () => {
  const secret = 'x'.repeat(MIN_SECRET_LENGTH);
  const sealed = (place = 'app/shared', secrets = [secret]): SealContext => ({ integrity: createIntegrity(secrets), place });

  it('decode only for their place and an accepted secret; the header says they are sealed', () => {
    const seal = sealed();
    const bytes = bytesOf(record(), seal);
    expect(decodeEntry(bytes, KEY, seal).ok).toBe(true);
    expect(decodeEntryHeader(bytes)).toMatchObject({ ok: true, header: { seal: 1 } });
    // Moved to another namespace or app, or checked with another secret: forged.
    expect(decodeEntry(bytes, KEY, sealed('app/build-2'))).toEqual({ ok: false, reason: 'forged' });
    expect(decodeEntry(bytes, KEY, sealed('app/shared', ['y'.repeat(MIN_SECRET_LENGTH)]))).toEqual({ ok: false, reason: 'forged' });
    // During a secret rollover the old secret, listed second, still verifies.
    expect(decodeEntry(bytes, KEY, sealed('app/shared', ['y'.repeat(MIN_SECRET_LENGTH), secret])).ok).toBe(true);
    // A flipped seal byte: forged (the checksum covers everything but the seal).
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 1]! ^= 1;
    expect(decodeEntry(flipped, KEY, seal)).toEqual({ ok: false, reason: 'forged' });
  });

  it('an unsealed entry is refused where seals are required; a sealed one is read unchecked by a replica without the secret', () => {
    expect(decodeEntry(bytesOf(record()), KEY, sealed())).toEqual({ ok: false, reason: 'unsealed' });
    expect(decodeEntry(bytesOf(record(), sealed()), KEY).ok).toBe(true);
  });

  it('integrity needs a secret, and a seal of the wrong length never verifies', () => {
    expect(() => createIntegrity([])).toThrow(/at least one secret/);
    const integrity = createIntegrity([secret]);
    const mark = integrity.seal('p', [Buffer.from('data')]);
    expect(mark.length).toBe(integrity.sealBytes);
    expect(integrity.check('p', [Buffer.from('data')], mark)).toBe(true);
    expect(integrity.check('p', [Buffer.from('data')], mark.subarray(1))).toBe(false);
    // The place's length is sealed too: "a/b" + "c" is not "a/" + "bc".
    expect(createIntegrity([secret]).check('a/', [Buffer.from('bc')], integrity.seal('a/b', [Buffer.from('c')]))).toBe(false);
  });
});
