import os from 'node:os';
import path from 'node:path';
import { constants } from 'node:fs';
import { writeAtomic } from './atomic';
import { errorCode, readWhole, READ_FLAGS, type VolumeFs } from './fs';
import { FORMAT_VERSION, Layout, TEMP_PREFIX } from './layout';
import type { VolumeClock } from './clock';

const READ_ONLY_CODES = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);

export class VolumeError extends Error {
  constructor(
    message: string,
    readonly code: 'not-a-cache-root' | 'foreign-format' | 'unreachable',
  ) {
    super(message);
    this.name = 'VolumeError';
  }
}

export interface MarkerFile {
  format: number;
  createdBy: string;
}

/** A unique id for this process: the name of its lease, log segments and temp files. */
export function newWriterId(): string {
  const host = os.hostname().replace(/[^A-Za-z0-9-]/g, '-').slice(0, 40) || 'host';
  const random = Math.random().toString(36).slice(2, 8).padEnd(6, '0');
  return `${host}-${process.pid}-${random}`;
}

/**
 * The root of the cache on the volume: its marker, the app's folders, and
 * this process's lease (the file whose mtime calibrates the volume clock and
 * tells the compactor this writer is alive).
 */
export class Volume {
  constructor(
    private readonly fs: VolumeFs,
    readonly layout: Layout,
    readonly writer: string,
    private readonly clock: VolumeClock,
    private readonly modes: { fileMode?: number | undefined; dirMode?: number | undefined } = {},
  ) {}

  /**
   * Creates the root and the app's folders if needed, and checks the format
   * marker. Only the root itself is created, not its parents, unless
   * `createParents` (the single-machine default under `.next/cache`): a
   * configured mount point that is missing means the volume is not there.
   */
  async open(createParents: boolean): Promise<void> {
    if (createParents) await this.fs.mkdir(this.layout.root, { recursive: true });
    else await this.ensureDir(this.layout.root);
    await this.ensureMarker();
    for (const dir of this.layout.skeleton()) {
      await this.ensureDir(dir);
    }
    try {
      await this.renewLease();
    } catch (error) {
      // A volume we may read but not write (read-only mount, another UID's
      // files, a full disk) still serves hits; writes will fail one by one.
      if (!READ_ONLY_CODES.has(errorCode(error) ?? '')) throw error;
      this.writable = false;
    }
  }

  /** false when the lease could not be written at open: reads only, clock uncalibrated. */
  writable = true;

  /** Reads the marker; a folder without one is not a cache root (the CLI refuses to touch it). */
  async readMarker(): Promise<MarkerFile | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readWhole(this.fs, this.layout.marker);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new VolumeError(`${this.layout.marker} is not valid JSON`, 'not-a-cache-root');
    }
    const marker = parsed as Partial<MarkerFile>;
    if (typeof marker.format !== 'number') {
      throw new VolumeError(`${this.layout.marker} has no format number`, 'not-a-cache-root');
    }
    return marker as MarkerFile;
  }

  /**
   * Rewrites the lease in place and reads back the mtime the volume gave it
   * with a fresh open (close-to-open: a new open revalidates attributes on
   * NFS), which calibrates the volume clock.
   */
  async renewLease(): Promise<void> {
    const lease = this.layout.writerLease(this.writer);
    const body = Buffer.from(JSON.stringify({ pid: process.pid, host: os.hostname(), format: FORMAT_VERSION }) + '\n');
    const before = Date.now();
    const handle = await this.fs.open(lease, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o666);
    try {
      if (this.modes.fileMode !== undefined) await handle.chmod(this.modes.fileMode);
      await handle.write(body, 0, body.length, 0);
    } finally {
      await handle.close();
    }
    const after = Date.now();
    const reopened = await this.fs.open(lease, READ_FLAGS);
    try {
      const stats = await reopened.stat();
      this.clock.calibrate(before, after, stats.mtimeMs);
    } finally {
      await reopened.close();
    }
  }

  /**
   * Calibrates the clock on a temp file in the root (written, read back with
   * a fresh open, removed), for a process that has no app folder to keep a
   * lease in.
   */
  async calibrateWithProbe(): Promise<void> {
    const probe = path.join(this.layout.root, `${TEMP_PREFIX}clock.${this.writer}`);
    const before = Date.now();
    const handle = await this.fs.open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o666);
    try {
      await handle.write(Buffer.from('clock\n'), 0, 6, 0);
    } finally {
      await handle.close();
    }
    const after = Date.now();
    try {
      const reopened = await this.fs.open(probe, READ_FLAGS);
      try {
        this.clock.calibrate(before, after, (await reopened.stat()).mtimeMs);
      } finally {
        await reopened.close();
      }
    } finally {
      await this.fs.unlink(probe).catch(() => undefined);
    }
  }

  private async ensureMarker(): Promise<void> {
    const marker = await this.readMarker();
    if (marker === undefined) {
      const body: MarkerFile = { format: FORMAT_VERSION, createdBy: 'next-volume-cache' };
      await writeAtomic(this.fs, this.layout.marker, [Buffer.from(JSON.stringify(body, null, 2) + '\n')], { writer: this.writer, fsync: true, mode: this.modes.fileMode });
      return;
    }
    if (marker.format !== FORMAT_VERSION) {
      throw new VolumeError(`${this.layout.root} holds cache format ${marker.format}; this version reads format ${FORMAT_VERSION}`, 'foreign-format');
    }
  }

  private async ensureDir(dir: string): Promise<void> {
    try {
      await this.fs.mkdir(dir, { recursive: false });
      if (this.modes.dirMode !== undefined) await this.fs.chmod(dir, this.modes.dirMode);
    } catch (error) {
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  }
}
