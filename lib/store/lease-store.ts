import { readFailure, type ConfinedFs } from '../fs/confined';
import path from 'node:path';
import { readOpened } from '../fs/read';
import { writeFully } from '../fs/confined';
import { errorCode } from '../util/errors';
import type { Layout } from './layout';

/**
 * Regeneration leases: a small file per key, created exclusively (O_EXCL:
 * atomic on NFSv3+ and EFS), that says one process is regenerating the
 * entry. Its expiry is the file's own mtime (set by the volume's server, so
 * on the volume clock) plus the lease duration the reader is configured
 * with: nothing the file says about itself can make it live longer, and a
 * holder that died stops holding it after one duration. The body only names
 * the holder (for giving it back); a lease seen before its body was written
 * is held all the same.
 *
 * Leases only save work (one render per staleness across pods instead of
 * one per pod): two processes that both take over an expired lease at once
 * both regenerate, which is what would have happened without leases.
 */
export type LeaseClaim = { won: true } | { won: false; holder: string; takenAt: number; expiresAt: number };

export interface ClaimOptions {
  /** How long a lease holds after its file's mtime. */
  durationMs: number;
  /** The volume clock now. */
  now: number;
  /** An mtime further ahead of `now` than this is not trusted (the lease is replaced). */
  maxSkewMs: number;
  /**
   * When the version being judged was written (volume clock): a lease taken before it was for an
   * older version (its holder wrote this one and died before giving the lease back, or another
   * process wrote it meanwhile) and is replaced like an expired one.
   */
  versionWrittenAt?: number;
}

/** A lease body is one short JSON line. */
const MAX_LEASE_BYTES = 1024;
/** Folders between the leases area and a lease: the namespace and one shard level. */
const LEASE_LEVELS = 2;

export class LeaseStore {
  constructor(
    private readonly fs: ConfinedFs,
    private readonly layout: Layout,
  ) {}

  /**
   * Takes the key's lease, or says who holds it, since and until when
   * (volume clock). An expired lease, one taken before the version being
   * judged was written, or one this process cannot read or trust (a forged
   * or damaged file, an mtime further ahead than `maxSkewMs`), is replaced.
   */
  async claim(hash: string, namespace: string, options: ClaimOptions): Promise<LeaseClaim> {
    const file = this.layout.leasePath(hash, namespace);
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await this.create(file)) return { won: true };
      const current = await this.read(file);
      if (current && holds(current.mtimeMs, options)) {
        return { won: false, holder: current.holder, takenAt: current.mtimeMs, expiresAt: current.mtimeMs + options.durationMs };
      }
      // Expired, superseded, unreadable or untrustworthy: removed, then claimed like a new one (once).
      await this.fs.unlink(file);
    }
    return { won: false, holder: 'unknown', takenAt: options.now, expiresAt: options.now + options.durationMs };
  }

  /** Creates the lease file exclusively with this process's name in it: false if it exists. */
  private async create(file: string): Promise<boolean> {
    let handle;
    try {
      handle = await this.fs.createExclusive(file);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'EEXIST') return false;
      if (code !== 'ENOENT') throw error;
      await this.fs.mkdirs(path.dirname(file), LEASE_LEVELS);
      return this.create(file);
    }
    try {
      await writeFully(handle, Buffer.from(JSON.stringify({ v: 1, w: this.fs.writes.writer }) + '\n'), 0);
    } finally {
      await handle.close();
    }
    return true;
  }

  /** Gives the key's lease back, if this process holds it (another may have taken it over meanwhile). */
  async release(hash: string, namespace: string): Promise<void> {
    const file = this.layout.leasePath(hash, namespace);
    const current = await this.read(file);
    if (current?.holder === this.fs.writes.writer) await this.fs.unlink(file);
  }

  private async read(file: string): Promise<{ holder: string; mtimeMs: number } | undefined> {
    try {
      const { handle, stats } = await this.fs.openFile(file);
      try {
        return { holder: holderOf(await readOpened(handle, stats, { maxBytes: MAX_LEASE_BYTES, firstRead: MAX_LEASE_BYTES })), mtimeMs: stats.mtimeMs };
      } finally {
        await handle.close();
      }
    } catch (error) {
      if (readFailure(error) || errorCode(error) === 'EFBIG') return undefined;
      throw error;
    }
  }
}

/** Whether a lease file with this mtime still holds for the version being judged. */
function holds(mtimeMs: number, options: ClaimOptions): boolean {
  const trusted = mtimeMs <= options.now + options.maxSkewMs;
  const unexpired = mtimeMs + options.durationMs > options.now;
  const forThisVersion = options.versionWrittenAt === undefined || mtimeMs >= options.versionWrittenAt;
  return trusted && unexpired && forThisVersion;
}

/** The holder a lease body names; 'unknown' for one not written yet (still a lease: its mtime counts). */
function holderOf(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { w?: unknown } | null;
    return typeof parsed?.w === 'string' ? parsed.w : 'unknown';
  } catch {
    return 'unknown';
  }
}
