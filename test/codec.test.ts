import { beforeAll, describe, expect, it } from 'vitest';
import { decodeEntry, decodeText, encodeEntry, type EntryRecord } from '../lib/store/codec';
import { loadHasher } from '../lib/store/hash';
import { appPage, appRoute, fetchValue, image, pages, redirect, sameValue } from './values';
import { randomBytes, seededRandom } from './helpers';

beforeAll(loadHasher);

function record(value: unknown, key = '/route-cache/APP_PAGE/abc/$/index'): EntryRecord {
  return {
    key,
    kind: value === null ? 'NULL' : String((value as { kind: string }).kind),
    writtenAt: 1_700_000_000_123,
    cacheControl: { revalidate: 60, expire: 3600 },
    tags: ['a', '_N_T_/layout'],
    value,
  };
}

function roundTrip(r: EntryRecord): EntryRecord {
  const decoded = decodeEntry(Buffer.concat(encodeEntry(r)), r.key);
  if (!decoded.ok) throw new Error(`decode failed: ${decoded.reason}`);
  return decoded.record;
}

describe('entry codec', () => {
  it.each([
    ['APP_PAGE', appPage()],
    ['APP_PAGE with 200 segments', appPage({ segments: 200 })],
    ['APP_PAGE with empty rscData', appPage({ rsc: Buffer.alloc(0) })],
    ['APP_ROUTE', appRoute()],
    ['APP_ROUTE with a 5 MB body', appRoute(randomBytes(seededRandom(1), 5 * 1024 * 1024))],
    ['PAGES (with our marker key inside user data)', pages()],
    ['REDIRECT', redirect()],
    ['FETCH', fetchValue()],
    ['IMAGE', image()],
    ['null (notFound)', null],
  ])('round-trips %s with every runtime type restored', (_name, value) => {
    const back = roundTrip(record(value));
    expect(sameValue(back.value, value)).toBe(true);
    expect(back.cacheControl).toEqual({ revalidate: 60, expire: 3600 });
    expect(back.writtenAt).toBe(1_700_000_000_123);
    expect(back.tags).toEqual(['a', '_N_T_/layout']);
  });

  it('restores Buffers as Buffers and Maps as Maps, byte for byte', () => {
    const value = appPage({ segments: 50 });
    const back = roundTrip(record(value)).value as Record<string, unknown>;
    expect(Buffer.isBuffer(back.rscData)).toBe(true);
    expect((back.rscData as Buffer).equals(value.rscData as Buffer)).toBe(true);
    expect(back.segmentData).toBeInstanceOf(Map);
    const original = value.segmentData as Map<string, Buffer>;
    const restored = back.segmentData as Map<string, Buffer>;
    expect([...restored.keys()]).toEqual([...original.keys()]);
    for (const [k, v] of original) expect(Buffer.isBuffer(restored.get(k)) && restored.get(k)!.equals(v)).toBe(true);
  });

  it('stores binary parts raw, not as base64 or JSON arrays', () => {
    const body = randomBytes(seededRandom(2), 100_000);
    const bytes = Buffer.concat(encodeEntry(record(appRoute(body))));
    expect(bytes.length).toBeLessThan(body.length + 1_000);
    expect(bytes.indexOf(body)).toBeGreaterThan(0);
  });

  it('keeps long HTML as a raw UTF-8 part and lone surrogates exactly', () => {
    const html = '<p>' + 'ü'.repeat(5000) + '</p>';
    const lone = 'x'.repeat(2000) + '\ud800' + 'tail';
    const back = roundTrip(record({ kind: 'PAGES', html, pageData: { lone }, headers: {}, status: 200 })).value as Record<string, unknown>;
    expect(back.html).toBe(html);
    expect((back.pageData as { lone: string }).lone).toBe(lone);
  });

  it('round-trips unicode, 2 KB and lone-surrogate keys', () => {
    for (const key of ['/route-cache/APP_PAGE/x/$/日本/ünï/[slug]/%20 sp', '/k/' + 'é'.repeat(2048), 'a\ud800b', 'a\udc00b']) {
      expect(roundTrip(record(fetchValue(), key)).key).toBe(key);
    }
  });

  it('is a miss for another key with the same file (hash collision)', () => {
    const bytes = Buffer.concat(encodeEntry(record(fetchValue(), 'one')));
    expect(decodeEntry(bytes, 'two')).toEqual({ ok: false, reason: 'key-mismatch' });
  });

  it('rejects a file truncated at any byte, including every section boundary', () => {
    const bytes = Buffer.concat(encodeEntry(record(appPage({ segments: 3 }))));
    for (let length = 0; length < bytes.length; length++) {
      const decoded = decodeEntry(bytes.subarray(0, length), '/route-cache/APP_PAGE/abc/$/index');
      expect(decoded.ok, `truncated at ${length}`).toBe(false);
    }
  });

  it('rejects any single flipped byte', () => {
    const bytes = Buffer.concat(encodeEntry(record(appPage())));
    for (let i = 0; i < bytes.length; i += 7) {
      const copy = Buffer.from(bytes);
      copy[i] = copy[i]! ^ 0x5a;
      expect(decodeEntry(copy, '/route-cache/APP_PAGE/abc/$/index').ok, `flipped byte ${i}`).toBe(false);
    }
  });

  it('rejects random bytes, an empty file and a future format version', () => {
    const random = seededRandom(3);
    for (let i = 0; i < 200; i++) {
      expect(decodeEntry(randomBytes(random, Math.floor(random() * 300)), 'k').ok).toBe(false);
    }
    expect(decodeEntry(Buffer.alloc(0), 'k')).toEqual({ ok: false, reason: 'truncated' });
    const future = Buffer.concat(encodeEntry(record(fetchValue(), 'k')));
    future[3] = 2;
    expect(decodeEntry(future, 'k')).toEqual({ ok: false, reason: 'foreign-version' });
  });
});

describe('keys named __proto__', () => {
  it('round-trip as own keys: never lost, never made the prototype', () => {
    // JSON.parse and Object.fromEntries (how Next builds a fetch's headers) make own keys of that name.
    const headers = Object.fromEntries([
      ['__proto__', 'from an upstream header'],
      ['content-type', 'application/json'],
    ]) as Record<string, string>;
    const body = JSON.parse('{"__proto__": {"isAdmin": true}, "name": "x"}') as Record<string, unknown>;
    const value = { ...fetchValue(), data: { headers, body: 'b', url: 'https://api.example/x', status: 200 }, extra: body };
    const back = roundTrip(record(value)).value as { data: { headers: Record<string, string> }; extra: Record<string, unknown> };
    expect(Object.keys(back.data.headers)).toEqual(['__proto__', 'content-type']);
    expect(Object.getOwnPropertyDescriptor(back.data.headers, '__proto__')?.value).toBe('from an upstream header');
    expect(Object.getPrototypeOf(back.extra)).toBe(Object.prototype);
    expect((back.extra as { isAdmin?: unknown }).isAdmin).toBeUndefined();
    expect(Object.getOwnPropertyDescriptor(back.extra, '__proto__')?.value).toEqual({ isAdmin: true });
  });
});

describe('long text (decoded in pieces)', () => {
  it('comes back identical whatever characters straddle the pieces, and in a page', () => {
    // 1, 2, 3 and 4 bytes per character, in runs that put every kind of character across a piece's end.
    const alphabet = ['a', 'é', '中', '😀', '<p class="x">'];
    for (const [i, size] of [129 * 1024, 300 * 1024, 1100 * 1024].entries()) {
      const random = seededRandom(10 + i);
      let text = '';
      while (text.length < size) text += alphabet[Math.floor(random() * alphabet.length)]!.repeat(1 + Math.floor(random() * 7));
      const bytes = Buffer.from(text, 'utf8');
      expect(decodeText(bytes)).toBe(text);
      for (const shift of [1, 2, 3]) expect(decodeText(bytes.subarray(shift))).toBe(bytes.subarray(shift).toString('utf8'));
      const page = appPage({ html: text });
      expect(sameValue(roundTrip(record(page)).value, page)).toBe(true);
    }
    const ascii = '<div class="row">lorem ipsum</div>\n'.repeat(20_000);
    expect(decodeText(Buffer.from(ascii))).toBe(ascii);
  });

  it('copies all-ASCII text as is and decodes text with one character past ASCII as UTF-8, at every size', () => {
    // All-ASCII text takes the Latin-1 copy: a single byte of 0x80 or more must send it back to UTF-8.
    for (const size of [1024, 2048, 56 * 1024, 129 * 1024, 300 * 1024]) {
      const ascii = 'lorem ipsum <b>dolor</b> '.repeat(Math.ceil(size / 25)).slice(0, size);
      expect(decodeText(Buffer.from(ascii))).toBe(ascii);
      for (const at of [0, size >> 1, size - 1]) {
        for (const odd of ['é', '\u00ff', '中', '😀']) {
          const text = ascii.slice(0, at) + odd + ascii.slice(at);
          expect(decodeText(Buffer.from(text, 'utf8'))).toBe(text);
        }
      }
    }
  });
});
