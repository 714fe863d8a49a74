import { hashKey } from '../store/hash';
import { parseSidecar, type ImageSidecar } from '../store/image-store';
import { isSafeName, SHARED_NAMESPACE } from '../store/layout';
import { listNamesIfFolder, readSmall } from '../tags/files';
import type { ReadOutcome } from '../store/entry-store';
import { openTagLog, type Maintenance } from './context';

type EntryRead = ReadOutcome | { found: false; reason: string; hash: string };

export interface Inspection {
  key: string;
  hash: string;
  entry: {
    path: string;
    namespace: string;
    exists: boolean;
    problem?: string;
    kind?: string;
    writtenAt?: string;
    ageSeconds?: number;
    cacheControl?: unknown;
    tags?: string[];
    bytes?: number;
    /** What a get would do about tags now: fresh, stale (served once, regenerated) or expired (a miss). */
    tagVerdict?: string;
    /** Tags of this entry that have an invalidation on record. */
    invalidatedTags?: string[];
    value?: unknown;
  };
  /** The key's entries in other namespaces (other builds, 'use cache', shared). */
  alsoIn: string[];
  image: { sidecarPath: string; exists: boolean; sidecar?: ImageSidecar; rawPath?: string };
}

/**
 * Where a key lives and what is known about it; `raw` includes the decoded
 * value (Buffers as base64). Writes nothing. A key may live in several
 * namespaces (one per build, 'use cache', shared): the newest entry is shown,
 * the others listed.
 */
export async function inspectKey(m: Maintenance, key: string, raw: boolean): Promise<Inspection> {
  const hash = hashKey(key);
  const namespaces = (await listNamesIfFolder(m.fs, m.layout.entriesRoot)).filter(isSafeName).sort();
  const found: Array<{ namespace: string; read: EntryRead }> = [];
  for (const namespace of namespaces) {
    const read: EntryRead = await m.entries.read(key, namespace).catch((error: unknown) => ({ found: false as const, reason: `unreadable: ${(error as Error).message}`, hash }));
    if (read.found || read.reason !== 'absent') found.push({ namespace, read });
  }
  found.sort((a, b) => (b.read.found ? b.read.record.writtenAt : 0) - (a.read.found ? a.read.record.writtenAt : 0));
  const shown = found[0];
  const namespace = shown?.namespace ?? SHARED_NAMESPACE;
  const result: Inspection = {
    key,
    hash,
    entry: { path: m.layout.entryPath(hash, namespace), namespace, exists: shown !== undefined },
    alsoIn: found.slice(1).map((f) => f.namespace),
    image: { sidecarPath: m.layout.sidecarPath(hash, SHARED_NAMESPACE), exists: false },
  };
  if (shown && !shown.read.found) result.entry.problem = shown.read.reason;
  if (shown?.read.found) {
    const { record, identity } = shown.read;
    const tags = await openTagLog(m);
    try {
      const now = m.clock.now();
      Object.assign(result.entry, {
        kind: record.kind,
        writtenAt: new Date(m.clock.toLocal(record.writtenAt)).toISOString(),
        ageSeconds: Math.round((now - record.writtenAt) / 1000),
        cacheControl: record.cacheControl ?? null,
        tags: record.tags,
        bytes: identity.size,
        tagVerdict: tags.state.verdict(record.tags, record.writtenAt, now),
        invalidatedTags: record.tags.filter((t) => tags.state.verdict([t], record.writtenAt, now) !== 'fresh'),
      });
      if (raw) result.entry.value = printable(record.value);
    } finally {
      await tags.close();
    }
  }
  for (const imageNs of (await listNamesIfFolder(m.fs, m.layout.imagesRoot)).filter(isSafeName).sort()) {
    const sidecarPath = m.layout.sidecarPath(hash, imageNs);
    const bytes = await readSmall(m.fs, sidecarPath);
    if (!bytes) continue;
    result.image = { sidecarPath, exists: true };
    const sidecar = parseSidecar(bytes, hash);
    if (sidecar) {
      result.image.sidecar = sidecar;
      result.image.rawPath = m.layout.rawImagePath(hash, imageNs, sidecar.file);
    }
    break;
  }
  return result;
}

/** JSON-safe: Buffers as { base64 }, Maps as objects of their entries. */
function printable(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { type: 'Buffer', bytes: value.length, base64: value.toString('base64') };
  if (value instanceof Map) return { type: 'Map', entries: Object.fromEntries([...value].map(([k, v]) => [String(k), printable(v)])) };
  if (Array.isArray(value)) return value.map(printable);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, printable(v)]));
  return value;
}
