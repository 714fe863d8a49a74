import { CREATE_EXCLUSIVE_FLAGS, type VolumeFile, type VolumeFs } from '../store/fs';
import { segmentName } from '../store/layout';
import path from 'node:path';

/** Past this size a writer starts its next segment, so the compactor can fold and delete the old one. */
export const ROTATE_BYTES = 4 * 1024 * 1024;

export interface Lease {
  /** ms, on this process's monotonic clock, since the start of the last successful renewal. */
  age(): number;
  renew(): Promise<void>;
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
 *    open segment, and a write to a deleted file would be lost silently;
 *  - after any failed write, a new generation too: a torn line is never
 *    followed by a good one on the same line.
 */
export class SegmentWriter {
  private current: { handle: VolumeFile; size: number } | undefined;
  private generation = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly fs: VolumeFs,
    private readonly dir: string,
    private readonly writer: string,
    private readonly lease: Lease,
    private readonly leaseTimeoutMs: number,
    private readonly durable: boolean,
    private readonly fileMode?: number | undefined,
  ) {}

  /** Appends one line; resolves once written (and synced when durable). Appends run one at a time. */
  append(line: string): Promise<void> {
    const run = this.queue.then(() => this.appendNow(Buffer.from(line, 'utf8')));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.closeCurrent();
  }

  private async appendNow(line: Buffer): Promise<void> {
    if (this.lease.age() > this.leaseTimeoutMs / 2) {
      await this.lease.renew();
      await this.rotate();
    }
    if (this.current && this.current.size + line.length > ROTATE_BYTES) await this.rotate();
    const segment = this.current ?? (await this.openNext());
    try {
      let written = 0;
      while (written < line.length) {
        // Positional writes at our own offset, never O_APPEND: we are the file's only writer, and
        // O_APPEND through a write-back cache (FUSE, some NFS clients) duplicates or tears data.
        const { bytesWritten } = await segment.handle.write(line, written, line.length - written, segment.size + written);
        if (bytesWritten === 0) throw Object.assign(new Error('append made no progress'), { code: 'EIO' });
        written += bytesWritten;
      }
      if (this.durable) await segment.handle.sync();
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

  private async openNext(): Promise<{ handle: VolumeFile; size: number }> {
    const file = path.join(this.dir, segmentName(this.writer, this.generation));
    // Exclusive create: a generation is never reopened, so a name that exists is a bug or a clash.
    const handle = await this.fs.open(file, CREATE_EXCLUSIVE_FLAGS, 0o666);
    if (this.fileMode !== undefined) await handle.chmod(this.fileMode);
    this.current = { handle, size: 0 };
    return this.current;
  }
}
