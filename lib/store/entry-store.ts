import { decodeEntry, encodeEntry, entryDeclaredLength, type DecodeFailure, type EntryRecord } from './codec';
import { errorCode, readWhole, type VolumeFs } from './fs';
import { hashKey } from './hash';
import { Layout, SHARED_NAMESPACE } from './layout';
import { writeAtomic } from './atomic';
import path from 'node:path';
import { ShardGuard, UnsafePathError } from './shard-guard';

export type MissReason = 'absent' | DecodeFailure | 'not-a-file';

export type ReadOutcome = { found: true; record: EntryRecord; hash: string } | { found: false; reason: MissReason; hash: string };

export interface EntryStoreOptions {
  writer: string;
  fsync: boolean;
  mode?: number | undefined;
  dirMode?: number | undefined;
}

/**
 * The sharded entry store: one file per key, at a path derived from the key's
 * hash, published atomically. It knows nothing about Next.js or tags.
 */
export class EntryStore {
  private readonly guard: ShardGuard;

  constructor(
    private readonly fs: VolumeFs,
    readonly layout: Layout,
    private readonly options: EntryStoreOptions,
  ) {
    this.guard = new ShardGuard(fs);
  }

  /** Errors other than "absent" and "not a regular file" propagate: the caller decides how to degrade. */
  async read(key: string, namespace: string = SHARED_NAMESPACE): Promise<ReadOutcome> {
    const hash = hashKey(key);
    const file = this.layout.entryPath(hash, namespace);
    let bytes: Buffer;
    try {
      bytes = await readRetryingStale(this.fs, file);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return { found: false, reason: 'absent', hash };
      // O_NOFOLLOW refuses a planted symlink with ELOOP; a directory gives EISDIR on read.
      if (code === 'ELOOP' || code === 'EISDIR') return { found: false, reason: 'not-a-file', hash };
      throw error;
    }
    const decoded = decodeEntry(bytes, key);
    if (!decoded.ok) return { found: false, reason: decoded.reason, hash };
    // Checked after a successful read (once per shard folder and process), so misses cost nothing extra.
    if (!(await this.guard.isSafe(path.dirname(file), SHARD_DEPTH))) return { found: false, reason: 'not-a-file', hash };
    return { found: true, record: decoded.record, hash };
  }

  async write(record: EntryRecord, namespace: string = SHARED_NAMESPACE): Promise<string> {
    const hash = hashKey(record.key);
    await writeAtomic(this.fs, await this.safePath(hash, namespace), encodeEntry(record), this.options);
    return hash;
  }

  /** Writes only if no entry exists for the key (seeding never overwrites a runtime render): true if written. */
  async writeIfAbsent(record: EntryRecord, namespace: string = SHARED_NAMESPACE): Promise<boolean> {
    return writeAtomic(this.fs, await this.safePath(hashKey(record.key), namespace), encodeEntry(record), { ...this.options, ifAbsent: true });
  }

  private async safePath(hash: string, namespace: string): Promise<string> {
    const file = this.layout.entryPath(hash, namespace);
    if (!(await this.guard.isSafe(path.dirname(file), SHARD_DEPTH))) throw new UnsafePathError(path.dirname(file));
    return file;
  }

}

/** A namespace folder and two shard levels sit between the area root and an entry. */
const SHARD_DEPTH = 3;

/**
 * ESTALE: on NFS a handle whose file another client replaced by rename goes
 * stale. Reopening by path finds the new file; a second ESTALE propagates.
 */
export async function readRetryingStale(fs: VolumeFs, file: string): Promise<Buffer> {
  try {
    return await readWhole(fs, file, 0, entryDeclaredLength);
  } catch (error) {
    if (errorCode(error) !== 'ESTALE') throw error;
    return await readWhole(fs, file, 0, entryDeclaredLength);
  }
}
