import { decodeEntry } from '../store/codec';
import { errorCode, listDir, readWhole } from '../store/fs';
import { hashKey } from '../store/hash';
import { ImageStore, parseSidecar, type ImageSidecar } from '../store/image-store';
import path from 'node:path';
import { SHARED_NAMESPACE } from '../store/layout';
import { openTagLog, type Maintenance } from './context';

export interface Inspection {
  key: string;
  hash: string;
  entry: {
    path: string;
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
  image: { sidecarPath: string; exists: boolean; sidecar?: ImageSidecar; rawPath?: string };
}

/** Where a key lives and what is known about it; `raw` includes the decoded value (Buffers as base64). */
export async function inspectKey(m: Maintenance, key: string, raw: boolean): Promise<Inspection> {
  const hash = hashKey(key);
  // A key may live in any namespace: shared, use-cache, or a build's (newest entry first is not
  // knowable without reading; the first one found is shown).
  const entryNamespaces = await namespacesIn(m, path.dirname(m.layout.entriesDir()));
  const candidates = entryNamespaces.map((ns) => m.layout.entryPath(hash, ns));
  const present = await Promise.all(candidates.map((p) => readOrUndefined(m, p).then((b) => b !== undefined)));
  const entryPath = candidates[present.indexOf(true)] ?? m.layout.entryPath(hash, SHARED_NAMESPACE);
  const images = new ImageStore(m.fs, m.layout, { writer: m.writer, fsync: false });
  const imageNamespaces = await namespacesIn(m, m.layout.imagesRoot);
  const sidecars = imageNamespaces.map((ns) => ({ ns, path: images.sidecarPath(hash, ns) }));
  const found = (await Promise.all(sidecars.map((c) => readOrUndefined(m, c.path).then((b) => (b ? c : undefined))))).find(Boolean);
  const imageNs = found?.ns ?? SHARED_NAMESPACE;
  const result: Inspection = { key, hash, entry: { path: entryPath, exists: false }, image: { sidecarPath: images.sidecarPath(hash, imageNs), exists: false } };
  const bytes = await readOrUndefined(m, entryPath);
  if (bytes) {
    result.entry.exists = true;
    result.entry.bytes = bytes.length;
    const decoded = decodeEntry(bytes, key);
    if (!decoded.ok) {
      result.entry.problem = decoded.reason;
    } else {
      const { record } = decoded;
      const tags = await openTagLog(m);
      const now = m.clock.now();
      Object.assign(result.entry, {
        kind: record.kind,
        writtenAt: new Date(m.clock.toLocal(record.writtenAt)).toISOString(),
        ageSeconds: Math.round((now - record.writtenAt) / 1000),
        cacheControl: record.cacheControl ?? null,
        tags: record.tags,
        tagVerdict: tags.state.verdict(record.tags, record.writtenAt, now),
        invalidatedTags: record.tags.filter((t) => tags.state.verdict([t], record.writtenAt, now) !== 'fresh'),
      });
      if (raw) result.entry.value = printable(record.value);
      await tags.close();
    }
  }
  const sidecarBytes = await readOrUndefined(m, result.image.sidecarPath);
  if (sidecarBytes) {
    result.image.exists = true;
    const sidecar = parseSidecar(sidecarBytes, hash);
    if (sidecar) {
      result.image.sidecar = sidecar;
      result.image.rawPath = path.join(images.dirOf(hash, imageNs), sidecar.file);
    }
  }
  return result;
}

async function namespacesIn(m: Maintenance, dir: string): Promise<string[]> {
  return (await listDir(m.fs, dir)).sort();
}

async function readOrUndefined(m: Maintenance, file: string): Promise<Buffer | undefined> {
  try {
    return await readWhole(m.fs, file);
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
    throw error;
  }
}

/** JSON-safe: Buffers as { base64 }, Maps as objects of their entries. */
function printable(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { type: 'Buffer', bytes: value.length, base64: value.toString('base64') };
  if (value instanceof Map) return { type: 'Map', entries: Object.fromEntries([...value].map(([k, v]) => [String(k), printable(v)])) };
  if (Array.isArray(value)) return value.map(printable);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, printable(v)]));
  return value;
}
