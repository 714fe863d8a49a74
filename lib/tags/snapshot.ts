import { decodeSingleLine, encodeLine, type LineSeal } from './lines';
import { TagState, type TagStateJson } from './tag-state';

/**
 * The compactor's output: the folded tag state plus, per segment, how many
 * bytes of it are already folded in. A process starting up reads the
 * snapshot and only the segment bytes after those offsets, so start-up cost
 * is bounded by what was written since the last compaction.
 * Stored as one checksummed (or sealed) line, replaced atomically by rename.
 */
export interface TagSnapshot {
  id: string;
  /** Volume time of the compaction. */
  createdAt: number;
  state: TagState;
  folded: Map<string, number>;
  /** Records folded in so far, for stats. */
  records: number;
}

interface SnapshotJson {
  v: 1;
  id: string;
  createdAt: number;
  tags: TagStateJson;
  folded: Record<string, number>;
  records: number;
}

export function encodeSnapshot(snapshot: TagSnapshot, seal?: LineSeal): Buffer {
  const body: SnapshotJson = {
    v: 1,
    id: snapshot.id,
    createdAt: snapshot.createdAt,
    tags: snapshot.state.toJSON(),
    folded: Object.fromEntries(snapshot.folded),
    records: snapshot.records,
  };
  return Buffer.from(encodeLine(JSON.stringify(body), seal), 'utf8');
}

/** undefined for anything that is not an intact snapshot of this version. */
export function decodeSnapshot(bytes: Buffer, now: number, seal?: LineSeal): TagSnapshot | undefined {
  const json = decodeSingleLine(bytes, seal);
  if (json === undefined) return undefined;
  let body: Partial<SnapshotJson>;
  try {
    body = JSON.parse(json) as Partial<SnapshotJson>;
  } catch {
    return undefined;
  }
  if (body.v !== 1 || typeof body.id !== 'string' || typeof body.createdAt !== 'number' || typeof body.folded !== 'object' || body.folded === null) {
    return undefined;
  }
  const folded = new Map<string, number>();
  for (const [name, offset] of Object.entries(body.folded)) {
    if (Number.isInteger(offset) && offset >= 0) folded.set(name, offset);
  }
  return {
    id: body.id,
    createdAt: body.createdAt,
    state: TagState.fromJSON(body.tags, now),
    folded,
    records: typeof body.records === 'number' ? body.records : 0,
  };
}
