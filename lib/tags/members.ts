import { decodeSingleLine, encodeLine, type LineSeal } from './lines';
import type { Membership } from './record';

/**
 * The folded tag index: for each entry (`<namespace>/<key hash>`), the tags
 * it was stored with. Advisory: `purge --tag` re-reads each entry's own tags
 * before deleting it, and `--scan` finds what the index missed.
 */
export interface MemberIndex {
  members: Map<string, Set<string>>;
  folded: Map<string, number>;
}

export function encodeMembers(index: MemberIndex, seal?: LineSeal): Buffer {
  const members: Record<string, string[]> = {};
  for (const [id, tags] of index.members) members[id] = [...tags];
  return Buffer.from(encodeLine(JSON.stringify({ v: 1, members, folded: Object.fromEntries(index.folded) }), seal), 'utf8');
}

export function decodeMembers(bytes: Buffer, seal?: LineSeal): MemberIndex | undefined {
  const json = decodeSingleLine(bytes, seal);
  if (json === undefined) return undefined;
  let body: { v?: unknown; members?: unknown; folded?: unknown };
  try {
    body = JSON.parse(json) as typeof body;
  } catch {
    return undefined;
  }
  if (body.v !== 1 || typeof body.members !== 'object' || body.members === null) return undefined;
  const members = new Map<string, Set<string>>();
  for (const [id, tags] of Object.entries(body.members as Record<string, unknown>)) {
    if (/^[A-Za-z0-9._-]+\/[0-9a-f]{16}$/.test(id) && Array.isArray(tags)) {
      members.set(id, new Set(tags.filter((t): t is string => typeof t === 'string')));
    }
  }
  const folded = new Map<string, number>();
  for (const [name, offset] of Object.entries((body.folded ?? {}) as Record<string, unknown>)) {
    if (typeof offset === 'number' && Number.isInteger(offset) && offset >= 0) folded.set(name, offset);
  }
  return { members, folded };
}

/** Entries (`<namespace>/<hash>`) carrying any of `tags`. */
export function entriesWithTags(index: MemberIndex, tags: readonly string[]): string[] {
  const wanted = new Set(tags);
  const out: string[] = [];
  for (const [id, entryTags] of index.members) {
    for (const tag of entryTags) {
      if (wanted.has(tag)) {
        out.push(id);
        break;
      }
    }
  }
  return out;
}

export function emptyMembers(): MemberIndex {
  return { members: new Map(), folded: new Map() };
}

/** Adds membership records to an index (a union: the index only grows until compaction prunes it). */
export function foldMemberships(index: MemberIndex, records: Iterable<Membership>): void {
  for (const record of records) {
    const id = `${record.ns}/${record.hash}`;
    const tags = index.members.get(id) ?? new Set<string>();
    for (const tag of record.tags) tags.add(tag);
    index.members.set(id, tags);
  }
}
