import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { errorCode } from '../util/errors';
import { isNotAFolder, type ConfinedFs } from '../fs/confined';
import { FORMAT_VERSION, type Layout } from './layout';
import type { VolumeClock } from './clock';

const READ_ONLY_CODES = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);
/** A folder that is there but is not a real folder of ours (a link, a file): ConfinedFs refuses it. */
/** The marker is a few dozen bytes. */
const MAX_MARKER_BYTES = 4096;

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
  const host =
    os
      .hostname()
      .replace(/[^A-Za-z0-9-]/g, '-')
      .slice(0, 40) || 'host';
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * The root of the cache on the volume: its marker, the app's folders, and
 * this process's lease (the file whose mtime calibrates the volume clock and
 * tells the compactor this writer is alive).
 */
export class Volume {
  /** false when the lease could not be written at open: reads only, clock uncalibrated. */
  writable = true;

  constructor(
    readonly fs: ConfinedFs,
    readonly layout: Layout,
    readonly clock: VolumeClock,
  ) {}

  get writer(): string {
    return this.fs.writes.writer;
  }

  /**
   * Creates the root and the app's folders if needed, and checks the format
   * marker. Only the root itself is created, not its parents, unless
   * `createParents` (the single-machine default under `.next/cache`): a
   * configured mount point that is missing means the volume is not there.
   */
  async open(createParents: boolean): Promise<void> {
    await this.fs.ensureRoot(createParents);
    await this.ensureMarker();
    await this.ensureFolders();
    try {
      await this.renewLease();
    } catch (error) {
      const code = errorCode(error) ?? '';
      // A volume we may read but not write (read-only mount, another UID's
      // files, a full disk) still serves hits; writes will fail one by one.
      if (READ_ONLY_CODES.has(code)) {
        this.writable = false;
        return;
      }
      if (!isNotAFolder(error)) throw error;
      // writers/ is not a real folder (a planted link): no lease, but the
      // clock can still be calibrated, on a probe in the root.
      await this.calibrateWithProbe().catch(() => undefined);
    }
  }

  /**
   * The app's folders, created if missing. One that is there but is not a
   * real folder (a link planted in its place) fails only the calls that
   * need it, as it does for a process that opened the root before it was
   * planted: new and running replicas behave alike, and verify reports it
   * (verify --repair moves it away and calls this again).
   * The apps folder and the app's own folder must be usable.
   */
  async ensureFolders(): Promise<void> {
    for (const dir of this.layout.skeleton()) {
      try {
        await this.fs.mkdir(dir);
      } catch (error) {
        if (dir === this.layout.appsDir || dir === this.layout.appDir || !isNotAFolder(error)) throw error;
      }
    }
  }

  /** Reads the marker; a folder without one is not a cache root (the CLI refuses to touch it). */
  async readMarker(): Promise<MarkerFile | undefined> {
    let bytes: Buffer;
    try {
      bytes = await this.fs.readFile(this.layout.marker, { maxBytes: MAX_MARKER_BYTES });
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return undefined;
      throw new VolumeError(`${this.layout.marker} cannot be read: ${(error as Error).message}`, 'not-a-cache-root');
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new VolumeError(`${this.layout.marker} is not valid JSON`, 'not-a-cache-root');
    }
    const marker = parsed as Partial<MarkerFile> | null;
    if (typeof marker?.format !== 'number') {
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
    await this.calibrateOn(lease, () => this.fs.rewrite(lease, body));
  }

  /**
   * Calibrates the clock on a temp file in the root (written, read back with
   * a fresh open, removed), for a process that has no app folder to keep a
   * lease in.
   */
  async calibrateWithProbe(): Promise<void> {
    const probe = this.layout.clockProbe(this.writer);
    try {
      await this.calibrateOn(probe, () => this.fs.rewrite(probe, Buffer.from('clock\n')));
    } finally {
      await this.fs.unlink(probe).catch(() => undefined);
    }
  }

  private async calibrateOn(file: string, write: () => Promise<void>): Promise<void> {
    const before = Date.now();
    await write();
    const after = Date.now();
    const { handle, stats } = await this.fs.openFile(file);
    await handle.close();
    this.clock.calibrate(before, after, stats.mtimeMs);
  }

  private async ensureMarker(): Promise<void> {
    const marker = await this.readMarker();
    if (marker === undefined) {
      const body: MarkerFile = { format: FORMAT_VERSION, createdBy: 'next-volume-cache' };
      // Set-if-absent: two first pods racing never overwrite each other's marker.
      await this.fs.writeAtomic(this.layout.marker, [Buffer.from(JSON.stringify(body, null, 2) + '\n')], { fsync: true, ifAbsent: true });
      return;
    }
    if (marker.format !== FORMAT_VERSION) {
      throw new VolumeError(`${this.layout.root} holds cache format ${marker.format}; this version reads format ${FORMAT_VERSION}`, 'foreign-format');
    }
  }
}
