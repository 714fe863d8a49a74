import type { Invalidation } from './tag-state';
import { decodeLine, encodeLine, type LineSeal } from './lines';

/**
 * The records of the tag logs, one per line (see lines.ts for the line
 * format): invalidations, and memberships (which entries carry which tags,
 * for the CLI's tag index). A line whose JSON has the wrong shape or version
 * is skipped and counted like a damaged one.
 */
export const RECORD_VERSION = 1;

export interface Membership {
  /** Key hash of the entry. */
  hash: string;
  /** Entry namespace (see store/layout.ts). */
  ns: string;
  tags: string[];
}

export function encodeInvalidation(record: Invalidation, seal?: LineSeal): string {
  return encodeLine(JSON.stringify({ v: RECORD_VERSION, tags: record.tags, s: record.stale ?? null, e: record.expired }), seal);
}

export function encodeMembership(record: Membership, seal?: LineSeal): string {
  return encodeLine(JSON.stringify({ v: RECORD_VERSION, h: record.hash, n: record.ns, tags: record.tags }), seal);
}

export function parseInvalidation(line: string, seal?: LineSeal): Invalidation | undefined {
  return parseRecord(line, seal, toInvalidation);
}

export function parseMembership(line: string, seal?: LineSeal): Membership | undefined {
  return parseRecord(line, seal, toMembership);
}

function parseRecord<T>(line: string, seal: LineSeal | undefined, shape: (body: Record<string, unknown>) => T | undefined): T | undefined {
  const json = decodeLine(line, seal);
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
  if (!isTagList(tags) || typeof e !== 'number' || !Number.isFinite(e) || !(s === null || (typeof s === 'number' && Number.isFinite(s)))) return undefined;
  return { tags, stale: s ?? undefined, expired: e };
}

function toMembership(body: Record<string, unknown>): Membership | undefined {
  const { h, n, tags } = body;
  if (typeof h !== 'string' || !/^[0-9a-f]{16}$/.test(h) || typeof n !== 'string' || !isTagList(tags)) return undefined;
  return { hash: h, ns: n, tags };
}
