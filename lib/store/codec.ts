import { isAscii } from 'node:buffer';
import { checksum } from './hash';
import { FORMAT_VERSION } from './layout';
import type { Integrity } from './integrity';
import { setOwn } from '../util/own';

/**
 * One cache entry as one self-describing file:
 *
 *   "NVC" <format byte> | header length (u32 LE) | file length (u64 LE) | header JSON | binary parts... | xxh64 of all before (8 bytes LE) [| seal]
 *
 * The file length up front lets a reader stop at the end without a final
 * empty read, tells a truncated file at once, and is checked against the
 * reader's size cap before any memory is reserved.
 * The header holds the full original key (checked on read, so a hash
 * collision is a miss and never another page), the kind, the write time,
 * cacheControl, tags, and the value as JSON in which every Buffer, every Map
 * and every long string is a reference to a raw part: binary data is stored as
 * is, never base64, and comes back with its runtime type.
 * With a secret configured, the header says `"seal": 1` and a seal (see
 * integrity.ts) over the app, the namespace and every byte before it follows
 * the checksum: a file forged or moved from elsewhere does not verify.
 */
export interface CacheControl {
  revalidate: number | false;
  expire?: number | undefined;
}

export interface EntryRecord {
  key: string;
  /** The value's `kind`, or "NULL" for a null value (a Pages `notFound`). */
  kind: string;
  /** When it was written, on the volume's clock (ms). */
  writtenAt: number;
  cacheControl?: CacheControl | undefined;
  tags: string[];
  value: unknown;
}

export type DecodeFailure = 'truncated' | 'not-an-entry' | 'foreign-version' | 'corrupt' | 'checksum' | 'key-mismatch' | 'unsealed' | 'forged';

export type DecodeResult = { ok: true; record: EntryRecord } | { ok: false; reason: DecodeFailure };

/** What binds a sealed entry to its place: a copy moved to another app or namespace does not verify. */
export interface SealContext {
  integrity: Integrity;
  /** `<app>/<namespace>`. */
  place: string;
}

const MAGIC = Buffer.from('NVC', 'latin1');
const PREFIX_BYTES = 16;
const CHECKSUM_BYTES = 8;
/** Strings at least this long go to a raw UTF-8 part instead of being escaped inside JSON. */
const STRING_PART_MIN = 1024;
/** More raw parts than any value Next produces (a page's segments are hundreds): a header listing millions is damage. */
export const MAX_PARTS = 65_536;
const MARK = '$nvc';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

interface Header extends EntryHeader {
  value: Json;
}

/** What an entry says about itself without its value: enough for stats, gc, purge and inspect. */
export interface EntryHeader {
  key: string;
  kind: string;
  writtenAt: number;
  cacheControl?: CacheControl;
  tags: string[];
  parts: number[];
  /** 1 when a seal follows the checksum. */
  seal?: number;
}

export function encodeEntry(record: EntryRecord, seal?: SealContext): Buffer[] {
  const parts: Buffer[] = [];
  const header: Header = {
    key: record.key,
    kind: record.kind,
    writtenAt: record.writtenAt,
    ...(record.cacheControl ? { cacheControl: record.cacheControl } : {}),
    tags: record.tags,
    value: pack(record.value, parts),
    parts: [],
    ...(seal ? { seal: 1 } : {}),
  };
  header.parts = parts.map((p) => p.byteLength);
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.allocUnsafe(PREFIX_BYTES);
  MAGIC.copy(prefix, 0);
  prefix.writeUInt8(FORMAT_VERSION, 3);
  prefix.writeUInt32LE(headerBytes.byteLength, 4);
  const bodyLength = PREFIX_BYTES + headerBytes.byteLength + parts.reduce((n, p) => n + p.byteLength, 0) + CHECKSUM_BYTES;
  prefix.writeBigUInt64LE(BigInt(bodyLength + (seal ? seal.integrity.sealBytes : 0)), 8);
  const body = [prefix, headerBytes, ...parts];
  const sealed = [...body, checksum(body)];
  return seal ? [...sealed, seal.integrity.seal(seal.place, sealed)] : sealed;
}

type Prefix = { ok: true; headerEnd: number; fileLength: number } | { ok: false; reason: DecodeFailure };

/** The fixed 16-byte prefix: magic, format, header length, file length. */
function readPrefix(bytes: Buffer): Prefix {
  if (bytes.byteLength >= 3 && !bytes.subarray(0, 3).equals(MAGIC)) return { ok: false, reason: 'not-an-entry' };
  if (bytes.byteLength < PREFIX_BYTES) return { ok: false, reason: 'truncated' };
  if (bytes.readUInt8(3) !== FORMAT_VERSION) return { ok: false, reason: 'foreign-version' };
  const headerEnd = PREFIX_BYTES + bytes.readUInt32LE(4);
  const fileLength = Number(bytes.readBigUInt64LE(8));
  if (fileLength < headerEnd + CHECKSUM_BYTES) return { ok: false, reason: 'corrupt' };
  return { ok: true, headerEnd, fileLength };
}

/** The length an entry file declares in its prefix, once its first 16 bytes are read. */
export function entryDeclaredLength(head: Buffer): number | undefined {
  const prefix = readPrefix(head);
  return prefix.ok ? prefix.fileLength : undefined;
}

/** Bytes needed to decode the header, once the first 16 are known. */
export function entryHeaderLength(head: Buffer): number | undefined {
  const prefix = readPrefix(head);
  return prefix.ok ? prefix.headerEnd : undefined;
}

function parseHeader(bytes: Buffer, headerEnd: number): Header | undefined {
  let header: unknown;
  try {
    header = JSON.parse(bytes.toString('utf8', PREFIX_BYTES, headerEnd));
  } catch {
    return undefined;
  }
  return isHeader(header) ? header : undefined;
}

/**
 * Decodes only the prefix and header of an entry (from its first bytes); the
 * checksum over the whole file is not verified here (that is `verify`'s job).
 */
export function decodeEntryHeader(head: Buffer): { ok: true; header: EntryHeader; fileLength: number } | { ok: false; reason: DecodeFailure } {
  const prefix = readPrefix(head);
  if (!prefix.ok) return prefix;
  if (head.byteLength < prefix.headerEnd) return { ok: false, reason: 'truncated' };
  const header = parseHeader(head, prefix.headerEnd);
  if (!header) return { ok: false, reason: 'corrupt' };
  const { key, kind, writtenAt, cacheControl, tags, parts, seal } = header;
  return { ok: true, header: { key, kind, writtenAt, cacheControl, tags, parts, ...(seal ? { seal } : {}) }, fileLength: prefix.fileLength };
}

/**
 * Decodes a whole entry file. With `seal`, only an entry sealed for that
 * place with an accepted key decodes; without it, a seal is skipped unread
 * (a replica without the secret still reads what one with it wrote).
 */
export function decodeEntry(file: Buffer, expectedKey: string, seal?: SealContext): DecodeResult {
  const prefix = readPrefix(file);
  if (!prefix.ok) return prefix;
  const { headerEnd, fileLength } = prefix;
  if (file.byteLength < fileLength) return { ok: false, reason: 'truncated' };
  if (file.byteLength > fileLength) return { ok: false, reason: 'corrupt' };
  const header = parseHeader(file, headerEnd);
  if (!header) return { ok: false, reason: file.byteLength < headerEnd ? 'truncated' : 'corrupt' };
  const sealBytes = header.seal === 1 ? (seal?.integrity.sealBytes ?? fileLength - headerEnd - sum(header.parts) - CHECKSUM_BYTES) : 0;
  const bodyEnd = headerEnd + sum(header.parts);
  if (bodyEnd + CHECKSUM_BYTES + sealBytes !== fileLength || sealBytes < 0) return { ok: false, reason: 'corrupt' };
  const checksummed = file.subarray(0, bodyEnd);
  if (!checksum([checksummed]).equals(file.subarray(bodyEnd, bodyEnd + CHECKSUM_BYTES))) return { ok: false, reason: 'checksum' };
  if (seal) {
    if (header.seal !== 1) return { ok: false, reason: 'unsealed' };
    if (!seal.integrity.check(seal.place, [file.subarray(0, bodyEnd + CHECKSUM_BYTES)], file.subarray(bodyEnd + CHECKSUM_BYTES))) return { ok: false, reason: 'forged' };
  }
  if (header.key !== expectedKey) return { ok: false, reason: 'key-mismatch' };
  const parts: Buffer[] = [];
  let offset = headerEnd;
  for (const length of header.parts) {
    parts.push(file.subarray(offset, offset + length));
    offset += length;
  }
  let value: unknown;
  try {
    value = unpack(header.value, parts);
  } catch {
    return { ok: false, reason: 'corrupt' };
  }
  return { ok: true, record: { key: header.key, kind: header.kind, writtenAt: header.writtenAt, cacheControl: header.cacheControl, tags: header.tags, value } };
}

function sum(numbers: number[]): number {
  let total = 0;
  for (const n of numbers) total += n;
  return total;
}

export function isHeader(h: unknown): h is Header {
  if (typeof h !== 'object' || h === null) return false;
  const o = h as Record<string, unknown>;
  return (
    typeof o.key === 'string' &&
    typeof o.kind === 'string' &&
    typeof o.writtenAt === 'number' &&
    Number.isFinite(o.writtenAt) &&
    Array.isArray(o.tags) &&
    o.tags.every((t) => typeof t === 'string') &&
    Array.isArray(o.parts) &&
    o.parts.length <= MAX_PARTS &&
    o.parts.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) &&
    (o.seal === undefined || o.seal === 1)
  );
}

interface WellFormed {
  isWellFormed(): boolean;
}

/** Whether a string survives UTF-8 unchanged: a lone surrogate has no UTF-8 form (it would come back as U+FFFD). */
export function hasUtf8Form(text: string): boolean {
  return (text as unknown as WellFormed).isWellFormed();
}

function pack(value: unknown, parts: Buffer[]): Json {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') {
    // A lone surrogate would not survive UTF-8; such strings stay in JSON, which escapes them.
    if (value.length >= STRING_PART_MIN && hasUtf8Form(value)) {
      return { [MARK]: 's', i: parts.push(Buffer.from(value, 'utf8')) - 1 };
    }
    return value;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  if (value instanceof Uint8Array) {
    return { [MARK]: 'b', i: parts.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength)) - 1 };
  }
  if (value instanceof Map) {
    return { [MARK]: 'm', e: [...value].map(([k, v]) => [pack(k, parts), pack(v, parts)]) };
  }
  if (Array.isArray(value)) return value.map((v) => pack(v, parts));
  if (typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) setOwn(out, k, pack(v, parts));
    }
    // An object of the caller's that happens to use our marker key is wrapped, so it round-trips too.
    return MARK in out ? { [MARK]: 'o', v: out } : out;
  }
  throw new TypeError(`next-volume-cache: cannot store a value of type ${typeof value}`);
}

function unpack(json: Json, parts: Buffer[]): unknown {
  if (json === null || typeof json !== 'object') return json;
  if (Array.isArray(json)) return json.map((v) => unpack(v, parts));
  const mark = json[MARK];
  if (mark === undefined) return unpackObject(json, parts);
  switch (mark) {
    case 's':
      return decodeText(partAt(parts, json.i));
    case 'b':
      return partAt(parts, json.i);
    case 'm': {
      if (!Array.isArray(json.e)) throw new Error('bad map');
      return new Map(
        json.e.map((pair) => {
          if (!Array.isArray(pair) || pair.length !== 2) throw new Error('bad map entry');
          return [unpack(pair[0]!, parts), unpack(pair[1]!, parts)];
        }),
      );
    }
    case 'o': {
      const inner = json.v;
      if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) throw new Error('bad object');
      return unpackObject(inner, parts);
    }
    default:
      throw new Error('unknown marker');
  }
}

/** Text longer than this is decoded in pieces of about this size (see decodeText). */
const TEXT_PIECE_BYTES = 64 * 1024;

/**
 * UTF-8 bytes as a string. Text that is all ASCII (most html and JSON; the
 * check runs at several GB/s) is copied as Latin-1, which needs no decoding
 * pass: for a 55 KB page body about 2.5 µs instead of 6, on every cold read
 * and on every hit the memory tier serves from bytes.
 *
 * A string of more than about 128 KB is allocated by V8 in its large-object
 * space: fresh pages from the kernel for every one, which made decoding a
 * 600 KB page's html take 400 µs (six times the cost per byte of a small
 * one, more than reading the whole file). Decoded in pieces that fit the
 * young generation and joined, it takes 65 to 100 µs; V8 joins pieces
 * lazily, flattening the text only when something needs it flat (writing an
 * html response does, once; a client navigation, which is served the RSC
 * payload, never does). Pieces end on character boundaries: the bytes are
 * UTF-8 this module wrote from a well-formed string, so the result is the
 * same as one decode.
 */
export function decodeText(bytes: Buffer): string {
  const encoding = isAscii(bytes) ? 'latin1' : 'utf8';
  if (bytes.length <= 2 * TEXT_PIECE_BYTES) return bytes.toString(encoding);
  let text = '';
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(bytes.length, start + TEXT_PIECE_BYTES);
    // Back off continuation bytes (10xxxxxx): a piece never splits a character.
    while (end < bytes.length && end > start && (bytes[end]! & 0xc0) === 0x80) end--;
    if (end === start) end = Math.min(bytes.length, start + TEXT_PIECE_BYTES);
    text += bytes.toString(encoding, start, end);
    start = end;
  }
  return text;
}

function unpackObject(json: { [key: string]: Json }, parts: Buffer[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) setOwn(out, k, unpack(v, parts));
  return out;
}

function partAt(parts: Buffer[], index: Json | undefined): Buffer {
  if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= parts.length) {
    throw new Error('bad part index');
  }
  // A view, not a copy: the file's buffer lives only as long as the request holds the value.
  return parts[index]!;
}
