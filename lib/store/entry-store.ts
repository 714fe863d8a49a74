import type { Stats } from 'node:fs';
import { errorCode } from '../util/errors';
import { readFailure, type ConfinedFs } from '../fs/confined';
import { UNCOPIED_ROOM } from '../fs/read';
import type { VolumeFile } from '../fs/syscalls';
import { decodeEntry, encodeEntry, entryDeclaredLength, type DecodeFailure, type EntryRecord, type SealContext } from './codec';
import { hashKey } from './hash';
import type { Integrity } from './integrity';
import { SHARD_DEPTH, type Layout } from './layout';
import { RememberedFailures } from './remembered-failures';

export type MissReason = 'absent' | DecodeFailure | 'not-a-file' | 'too-large';

export type ReadOutcome =
  { found: true; record: EntryRecord; hash: string; identity: FileIdentity } | { found: false; reason: MissReason; hash: string; /** Judged from an earlier read of the same file, not read again. */ remembered?: boolean };

/** What tells one version of a file from another without reading it (published by rename: a new version is a new inode). */
export interface FileIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface EntryStoreOptions {
  app: string;
  /** Largest entry file read; a larger one (or one declaring more) is a miss before any memory is reserved for it. */
  maxEntryBytes: number;
  /** With a secret: only entries sealed for their app and namespace are read. */
  integrity?: Integrity | undefined;
}

/**
 * The sharded entry store: one file per key, at a path derived from the key's
 * hash, published atomically. It knows nothing about Next.js or tags.
 */
export class EntryStore {
  private readonly failures = new RememberedFailures<MissReason>();
  private readonly largeSizes = new LargeFileSizes();

  constructor(
    private readonly fs: ConfinedFs,
    readonly layout: Layout,
    private readonly options: EntryStoreOptions,
  ) {}

  /**
   * Reads and decodes the entry for `key`. Absent, not a regular file, too
   * large, damaged or forged: a miss with its reason. A file that failed is
   * remembered by identity for a while, so that a damaged file is not read
   * again on every get. Other errors (EIO, a hung mount) propagate: the
   * caller decides how to degrade.
   */
  async read(key: string, namespace: string, hold?: Hold): Promise<ReadOutcome> {
    const hash = hashKey(key);
    const file = this.layout.entryPath(hash, namespace);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.readOnce(file, key, hash, namespace, hold);
      } catch (error) {
        // ESTALE: on NFS a handle whose file another client replaced by rename goes stale.
        // Reopening by path finds the new file; a second ESTALE propagates.
        if (errorCode(error) === 'ESTALE' && attempt === 1) continue;
        const failure = readFailure(error);
        if (failure) return { found: false, reason: failure, hash };
        throw error;
      }
    }
  }

  async write(record: EntryRecord, namespace: string): Promise<string> {
    const hash = hashKey(record.key);
    await this.fs.writeAtomic(this.layout.entryPath(hash, namespace), encodeEntry(record, this.sealFor(namespace)), { createParents: SHARD_DEPTH });
    return hash;
  }

  /** Writes only if no entry exists for the key (seeding never overwrites a runtime render): true if written. */
  writeIfAbsent(record: EntryRecord, namespace: string): Promise<boolean> {
    const file = this.layout.entryPath(hashKey(record.key), namespace);
    return this.fs.writeAtomic(file, encodeEntry(record, this.sealFor(namespace)), { ifAbsent: true, createParents: SHARD_DEPTH });
  }

  /**
   * The identity of the key's file now (one open, fstat and close: on NFS a
   * fresh open revalidates the attributes), or undefined when it is gone or
   * not a regular file. Other errors propagate.
   */
  async identify(key: string, namespace: string, hold?: Hold): Promise<FileIdentity | undefined> {
    try {
      const { handle, stats } = await this.fs.openFile(this.layout.entryPath(hashKey(key), namespace));
      await closeRead(handle, hold);
      return identityOf(stats);
    } catch (error) {
      if (readFailure(error)) return undefined;
      throw error;
    }
  }

  /** How entries of a namespace are sealed and checked (undefined without a secret). */
  sealFor(namespace: string): SealContext | undefined {
    return this.options.integrity ? { integrity: this.options.integrity, place: `${this.options.app}/${namespace}` } : undefined;
  }

  private async readOnce(file: string, key: string, hash: string, namespace: string, hold: Hold | undefined): Promise<ReadOutcome> {
    // The fstat runs beside the first read: a get is two round trips (open, then both), not three.
    // The first read is sized from the file's last good read, if it was large (see LargeFileSizes):
    // allocated before the fstat, so at most maxEntryBytes + 1, and once per get in flight.
    const firstRead = this.largeSizes.recall(file, this.options.maxEntryBytes);
    const { handle, read } = await this.fs.startReading(file, { maxBytes: this.options.maxEntryBytes, declared: entryDeclaredLength, firstRead }).catch((error: unknown) => {
      // Refused (a folder on the way is a link) or gone: its next get reads no more than a first read's 128 KiB of it.
      this.largeSizes.forget(file);
      throw error;
    });
    let stats: Stats | undefined;
    let bytes: Buffer;
    try {
      stats = await read.stats;
      const known = this.failures.recall(file, stats);
      if (known) return this.failed(file, { found: false, reason: known, hash, remembered: true });
      bytes = await read.finish(stats);
    } catch (error) {
      this.largeSizes.forget(file);
      if (stats && errorCode(error) === 'EFBIG') this.failures.remember(file, stats, 'too-large');
      throw error;
    } finally {
      await closeRead(handle, hold, read.idle());
    }
    const decoded = decodeEntry(bytes, key, this.sealFor(namespace));
    if (!decoded.ok) {
      this.failures.remember(file, stats, decoded.reason);
      return this.failed(file, { found: false, reason: decoded.reason, hash });
    }
    // Only a good read sizes the next one: a damaged file is read no further than its first 128 KiB.
    this.largeSizes.note(file, bytes.length);
    return { found: true, record: decoded.record, hash, identity: identityOf(stats) };
  }

  private failed(file: string, outcome: ReadOutcome): ReadOutcome {
    this.largeSizes.forget(file);
    return outcome;
  }
}

/** Lets a caller's gate keep its slot for work that need not delay the caller (see FsGate.run). */
export type Hold = (work: Promise<unknown>) => void;

/**
 * Closing a file that was only read: with a `hold`, the caller does not wait
 * for it (one round trip less per get; its slot stays held until it is done),
 * and a failed close of a read file changes nothing that was read. `after`:
 * reads still in flight on the handle, which the close waits for.
 */
async function closeRead(handle: VolumeFile, hold: Hold | undefined, after: Promise<void> = Promise.resolve()): Promise<void> {
  const closing = after.then(() => handle.close()).catch(() => undefined);
  if (hold) hold(closing);
  else await closing;
}

/**
 * The sizes of the large entry files (over 64 KiB) read lately, by path. A
 * started read's first read runs beside the fstat, before the size is
 * known, into a pooled scratch buffer of 128 KiB: a larger file fills it,
 * and it is copied out before the rest is read, one round trip more; a file
 * that fits is copied out of it whole (90 KB: about 6 µs). Sized from an
 * earlier read, the first read takes the whole file into a buffer of its
 * own, handed out without a copy. A wrong size costs nothing but that: the
 * read goes on (larger) or stops (smaller) as it would anyway. Only files
 * read and decoded whole are noted, and any failure forgets one. Smaller
 * files are not: their copy costs next to nothing (see LARGE_FILE_MIN).
 */
class LargeFileSizes {
  private readonly sizes = new Map<string, number>();

  /** A first-read size for `file`: its last size plus some room (a rewrite may have grown it), within `maxBytes`. */
  recall(file: string, maxBytes: number): number | undefined {
    const size = this.sizes.get(file);
    return size === undefined ? undefined : Math.min(maxBytes + 1, size + LARGE_FILE_ROOM);
  }

  /** Notes the size of a file read and decoded whole (so within the cap); a small one is forgotten. */
  note(file: string, size: number): void {
    if (size <= LARGE_FILE_MIN) {
      this.forget(file);
      return;
    }
    if (this.sizes.size >= MAX_LARGE_FILES && !this.sizes.has(file)) this.sizes.delete(this.sizes.keys().next().value!);
    this.sizes.set(file, size);
  }

  forget(file: string): void {
    this.sizes.delete(file);
  }
}
/** Files up to this size are copied out of the scratch buffer: sizing their read saves next to nothing. */
const LARGE_FILE_MIN = 64 * 1024;
/** Large files whose size is remembered (the oldest noted goes first); a few bytes each. */
const MAX_LARGE_FILES = 4096;
/** Room over the last size: a rewrite a little larger is still read whole at once, and handed out without a copy. */
const LARGE_FILE_ROOM = UNCOPIED_ROOM;

export function identityOf(stats: Stats): FileIdentity {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.ino === b.ino && a.dev === b.dev && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}
