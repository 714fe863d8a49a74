import { constants, promises as fsp } from 'node:fs';
import type { Dir, Stats } from 'node:fs';

/**
 * The one door through which the library touches the volume. Tests wrap it to
 * inject faults that no real filesystem produces on demand (ESTALE, short
 * reads, errors at close, calls that never return).
 */
export interface VolumeFile {
  read(buffer: Uint8Array, offset: number, length: number, position: number | null): Promise<{ bytesRead: number }>;
  writev(buffers: readonly Uint8Array[], position?: number): Promise<{ bytesWritten: number }>;
  write(buffer: Uint8Array, offset: number, length: number, position?: number | null): Promise<{ bytesWritten: number }>;
  sync(): Promise<void>;
  stat(): Promise<Stats>;
  close(): Promise<void>;
}

export interface VolumeFs {
  open(path: string, flags: number, mode?: number): Promise<VolumeFile>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  mkdir(path: string, options: { recursive: boolean; mode?: number }): Promise<unknown>;
  rmdir(path: string): Promise<void>;
  lstat(path: string): Promise<Stats>;
  readdir(path: string): Promise<string[]>;
  opendir(path: string): Promise<Dir>;
}

export const nodeFs: VolumeFs = {
  open: (p, flags, mode) => fsp.open(p, flags, mode),
  rename: (a, b) => fsp.rename(a, b),
  unlink: (p) => fsp.unlink(p),
  mkdir: (p, o) => fsp.mkdir(p, o),
  rmdir: (p) => fsp.rmdir(p),
  lstat: (p) => fsp.lstat(p),
  readdir: (p) => fsp.readdir(p),
  opendir: (p) => fsp.opendir(p),
};

/** Open flags. O_NOFOLLOW: a symlink planted in the cache root is never followed. */
export const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;
export const CREATE_EXCLUSIVE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export function errorCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
}

const FIRST_READ = 64 * 1024;

/**
 * Reads a whole file with one open, reads until end of file and one close.
 * It reads to EOF rather than to an `fstat` size: on NFS a cached size can be
 * stale, and an extra `fstat` is one more round trip per cache hit.
 */
export async function readWhole(fs: VolumeFs, file: string, position = 0): Promise<Buffer> {
  const handle = await fs.open(file, READ_FLAGS);
  try {
    return await readToEnd(handle, position);
  } finally {
    await handle.close();
  }
}

export async function readToEnd(handle: VolumeFile, position: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let size = FIRST_READ;
  for (;;) {
    const chunk = Buffer.allocUnsafe(size);
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await handle.read(chunk, filled, size - filled, position + total + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    chunks.push(filled === size ? chunk : chunk.subarray(0, filled));
    total += filled;
    if (filled < size) break;
    size = Math.min(size * 4, 16 * 1024 * 1024);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}
