import type { ConfinedFs } from '../fs/confined';
import type { VolumeFile } from '../fs/syscalls';
import { codedError, errorCode } from '../util/errors';
import { segmentName } from '../store/layout';
import path from 'node:path';

/** Past this size a writer starts its next segment, so the compactor can fold and delete the old one. */
export const ROTATE_BYTES = 4 * 1024 * 1024;
/** Segment names found taken before a writer gives up (each is skipped for the next generation). */
const MAX_TAKEN_NAMES = 16;

export interface Lease {
  /** ms, on this process's monotonic clock, since the start of the last successful renewal. */
  age(): number;
  renew(): Promise<void>;
  /**
   * How many renewals so far came more than half the lease timeout after the
   * one before (from anywhere: a periodic timer too): after each, a compactor
   * may have judged this writer gone and deleted its open segment.
   */
  lapses(): number;
}

export interface SegmentWriterOptions {
  fs: ConfinedFs;
  dir: string;
  lease: Lease;
  leaseTimeoutMs: number;
  /** fsync after each append (invalidations: an acknowledged one must survive a crash). */
  durable: boolean;
}

/**
 * Appends lines to this process's own segment files in one folder. No other
 * process ever appends to them (O_APPEND is not atomic across NFS clients).
 *
 * Rotation rules that keep compaction safe:
 *  - a segment gets no append after the next generation exists, so the
 *    compactor may delete any generation that is not a writer's newest;
 *  - after a pause longer than half the lease timeout (a stopped container,
 *    a long GC), the writer renews its lease and starts a new generation
 *    before appending: the compactor may have judged it gone and deleted the
 *    open segment, and a write to a deleted file would be lost silently. A
 *    renewal by the periodic timer after such a pause (overdue timers fire
 *    first when a stopped process resumes) counts the same: a segment opened
 *    before a lapse gets no more appends;
 *  - after any failed write, a new generation too: a torn line is never
 *    followed by a good one on the same line.
 */
export class SegmentWriter {
  private current: { handle: VolumeFile; size: number; openedAfterLapses: number } | undefined;
  private generation = 0;
  /** The last append in the queue, only while one is pending: a settled tail would keep its caller's context alive. */
  private tail: Promise<unknown> | undefined;

  constructor(private readonly options: SegmentWriterOptions) {}

  /** Appends one line; resolves once written (and synced when durable). Appends run one at a time. */
  append(line: string): Promise<void> {
    const bytes = Buffer.from(line, 'utf8');
    const run = this.tail ? this.tail.then(() => this.appendNow(bytes)) : this.appendNow(bytes);
    const tail = run.catch(() => undefined);
    this.tail = tail;
    void tail.then(() => {
      if (this.tail === tail) this.tail = undefined;
    });
    return run;
  }

  async close(): Promise<void> {
    await this.tail;
    await this.closeCurrent();
  }

  private async appendNow(line: Buffer): Promise<void> {
    const { lease, leaseTimeoutMs } = this.options;
    if (lease.age() > leaseTimeoutMs / 2) await lease.renew();
    if (this.current && this.current.openedAfterLapses !== lease.lapses()) await this.rotate();
    if (this.current && this.current.size + line.length > ROTATE_BYTES) await this.rotate();
    const segment = this.current ?? (await this.openNext());
    try {
      let written = 0;
      while (written < line.length) {
        // Positional writes at our own offset, never O_APPEND: we are the file's only writer, and
        // O_APPEND through a write-back cache (FUSE, some NFS clients) duplicates or tears data.
        const { bytesWritten } = await segment.handle.write(line, written, line.length - written, segment.size + written);
        if (bytesWritten === 0) throw codedError('EIO', 'append made no progress');
        written += bytesWritten;
      }
      if (this.options.durable) await segment.handle.sync();
      segment.size += line.length;
    } catch (error) {
      await this.rotate().catch(() => undefined);
      throw error;
    }
  }

  private async rotate(): Promise<void> {
    await this.closeCurrent();
    this.generation++;
  }

  private async closeCurrent(): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (current) await current.handle.close().catch(() => undefined);
  }

  /**
   * Exclusive create: a generation is never reopened. A name that exists
   * already (something planted there) is skipped for the next generation.
   */
  private async openNext(): Promise<{ handle: VolumeFile; size: number; openedAfterLapses: number }> {
    const { fs, dir, lease } = this.options;
    for (let attempt = 1; ; attempt++) {
      try {
        const handle = await fs.createExclusive(path.join(dir, segmentName(fs.writes.writer, this.generation)));
        this.current = { handle, size: 0, openedAfterLapses: lease.lapses() };
        return this.current;
      } catch (error) {
        if (errorCode(error) !== 'EEXIST' || attempt >= MAX_TAKEN_NAMES) throw error;
        this.generation++;
      }
    }
  }
}
