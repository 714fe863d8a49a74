import { decodeEntry, encodeEntry, entryDeclaredLength, type DecodeFailure, type EntryRecord } from './codec';
import { errorCode, readWhole, unlinkIfExists, type VolumeFs } from './fs';
import { hashKey } from './hash';
import { Layout, SHARED_NAMESPACE } from './layout';
import { writeAtomic } from './atomic';

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
  constructor(
    private readonly fs: VolumeFs,
    readonly layout: Layout,
    private readonly options: EntryStoreOptions,
  ) {}

  pathOf(key: string, namespace: string = SHARED_NAMESPACE): string {
    return this.layout.entryPath(hashKey(key), namespace);
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
    return decoded.ok ? { found: true, record: decoded.record, hash } : { found: false, reason: decoded.reason, hash };
  }

  async write(record: EntryRecord, namespace: string = SHARED_NAMESPACE): Promise<string> {
    const hash = hashKey(record.key);
    await writeAtomic(this.fs, this.layout.entryPath(hash, namespace), encodeEntry(record), this.options);
    return hash;
  }

  /** Writes only if no entry exists for the key (seeding never overwrites a runtime render): true if written. */
  async writeIfAbsent(record: EntryRecord, namespace: string = SHARED_NAMESPACE): Promise<boolean> {
    return writeAtomic(this.fs, this.layout.entryPath(hashKey(record.key), namespace), encodeEntry(record), { ...this.options, ifAbsent: true });
  }

  /** Removing an entry that is already gone is not an error. */
  remove(key: string, namespace: string = SHARED_NAMESPACE): Promise<boolean> {
    return unlinkIfExists(this.fs, this.pathOf(key, namespace));
  }
}

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
