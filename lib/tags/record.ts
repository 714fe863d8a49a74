import { lineChecksum } from '../store/hash';
import type { Invalidation } from './tag-state';

/**
 * One log record per line: `<xxh32 of the JSON, 8 hex> <JSON>\n`, as npm's
 * cacache does in its index buckets. A torn, garbage or foreign line fails its
 * checksum or its shape check and is skipped and counted, never misread.
 */
export const RECORD_VERSION = 1;
/** A longer unterminated tail than this is garbage, not a record still being written. */
export const MAX_LINE_BYTES = 1024 * 1024;

export interface Membership {
  /** Key hash of the entry. */
  hash: string;
  /** Entry namespace (see store/layout.ts). */
  ns: string;
  tags: string[];
}

export function encodeInvalidation(record: Invalidation): string {
  return encodeLine({ v: RECORD_VERSION, tags: record.tags, s: record.stale ?? null, e: record.expired });
}

export function encodeMembership(record: Membership): string {
  return encodeLine({ v: RECORD_VERSION, h: record.hash, n: record.ns, tags: record.tags });
}

function encodeLine(body: object): string {
  return checksummedLine(JSON.stringify(body));
}

/** `<xxh32 of text, 8 hex> <text>\n`: the one line format of segments, snapshots and the tag index. */
export function checksummedLine(text: string): string {
  return `${lineChecksum(text)} ${text}\n`;
}

/** The text of one checksummed line (without its newline), or undefined if it fails its checksum. */
export function verifiedLine(line: string): string | undefined {
  if (line.length < 9 || line[8] !== ' ') return undefined;
  const text = line.slice(9);
  return lineChecksum(text) === line.slice(0, 8) ? text : undefined;
}

export interface ParsedLines<T> {
  records: T[];
  /** Bytes up to and including the last complete line (or skipped garbage): where the next read starts. */
  consumed: number;
  skipped: number;
}

export function parseInvalidations(bytes: Buffer): ParsedLines<Invalidation> {
  return parseLines(bytes, toInvalidation);
}

export function parseMemberships(bytes: Buffer): ParsedLines<Membership> {
  return parseLines(bytes, toMembership);
}

function parseLines<T>(bytes: Buffer, shape: (body: Record<string, unknown>) => T | undefined): ParsedLines<T> {
  const records: T[] = [];
  let skipped = 0;
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(0x0a, start);
    if (end === -1) break;
    if (end > start) {
      const record = parseLine(bytes.toString('utf8', start, end), shape);
      if (record === undefined) skipped++;
      else records.push(record);
    }
    start = end + 1;
  }
  if (bytes.length - start > MAX_LINE_BYTES) {
    skipped++;
    start = bytes.length;
  }
  return { records, consumed: start, skipped };
}

function parseLine<T>(line: string, shape: (body: Record<string, unknown>) => T | undefined): T | undefined {
  const json = verifiedLine(line);
  if (json === undefined) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (body === null || typeof body !== 'object' || (body as { v?: unknown }).v !== RECORD_VERSION) return undefined;
  return shape(body as Record<string, unknown>);
}

function isTagList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((t) => typeof t === 'string');
}

function toInvalidation(body: Record<string, unknown>): Invalidation | undefined {
  const { tags, s, e } = body;
  if (!isTagList(tags) || typeof e !== 'number' || !(s === null || typeof s === 'number')) return undefined;
  return { tags, stale: s ?? undefined, expired: e };
}

function toMembership(body: Record<string, unknown>): Membership | undefined {
  const { h, n, tags } = body;
  if (typeof h !== 'string' || !/^[0-9a-f]{16}$/.test(h) || typeof n !== 'string' || !isTagList(tags)) return undefined;
  return { hash: h, ns: n, tags };
}
