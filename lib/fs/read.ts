import type { Stats } from 'node:fs';
import { codedError } from '../util/errors';
import type { VolumeFile } from './syscalls';

/**
 * Bounded reads. Nothing a file *says* about itself (a declared length, a
 * size) ever decides an allocation beyond the caller's cap: a sparse file
 * declaring 4 GiB, or a 600 MB log line, is refused (EFBIG) before memory is
 * reserved for it.
 *
 * A file is read to the length its own format declares, or else to end of
 * file, never to an `fstat` size alone: on NFS a cached size can be stale.
 * Knowing the length saves the final empty read.
 */

/** Given the bytes read so far, the file's full length if its own format declares it (undefined while unknown). */
export type DeclaredLength = (head: Buffer) => number | undefined;

export interface ReadLimits {
  /** Largest number of bytes this kind of file may have (from `position`); past it, EFBIG. */
  maxBytes: number;
  /** Where to start (a log segment's unread tail). */
  position?: number;
  declared?: DeclaredLength;
  /** Size of the first read; the default suits entries (64 KiB). */
  firstRead?: number;
}

const FIRST_READ = 64 * 1024;

export async function readOpened(handle: VolumeFile, stats: Stats, limits: ReadLimits): Promise<Buffer> {
  const { maxBytes, position = 0, declared } = limits;
  if (stats.size - position > maxBytes) throw tooLarge(stats.size - position, maxBytes);
  // The first read goes into a reused scratch buffer, and only the bytes the file has are copied
  // out into a buffer of exactly that size: a fresh 64 KB allocation per get, most of it unused,
  // was measured to make a 4 KB hit nearly twice as slow (garbage collection of external memory).
  const scratch = takeScratch(Math.min(limits.firstRead ?? FIRST_READ, maxBytes + 1));
  try {
    // One read first: when the file declares its length and it all came in, that is the only read.
    let first = (await handle.read(scratch, 0, scratch.length, position)).bytesRead;
    let target = first > 0 ? declared?.(scratch.subarray(0, first)) : undefined;
    if (first > 0 && (target === undefined || target > first) && first < scratch.length) {
      first += await readInto(handle, scratch, first, position + first);
      target ??= declared?.(scratch.subarray(0, first));
    }
    if (target !== undefined && target > maxBytes) throw tooLarge(target, maxBytes);
    if (first > maxBytes) throw tooLarge(first, maxBytes);
    if (target !== undefined && target <= first) return copyOf(scratch, target);
    if (first < scratch.length) return copyOf(scratch, first);
    // Larger than the first read: one buffer sized by the declared length, but never larger than
    // the file's own size says (a file that declares more than it holds is truncated, not a reason
    // to reserve memory); it grows only when the file really holds more bytes.
    const expected = Math.max(first, stats.size - position);
    let buffer: Buffer = Buffer.allocUnsafe(Math.min(target ?? expected, expected, maxBytes));
    scratch.copy(buffer, 0, 0, first);
    let filled = first;
    while (target === undefined || filled < target) {
      if (filled < buffer.length) {
        const n = await readInto(handle, buffer, filled, position + filled);
        if (n === 0) break;
        filled += n;
        continue;
      }
      const probe = await readInto(handle, scratch, 0, position + filled);
      if (probe === 0) break;
      if (filled + probe > maxBytes) throw tooLarge(filled + probe, maxBytes);
      const wanted = Math.min(Math.max(buffer.length * 2, filled + probe), maxBytes);
      buffer = grow(buffer, target === undefined ? wanted : Math.min(wanted, Math.max(target, filled + probe)));
      scratch.copy(buffer, filled, 0, probe);
      filled += probe;
    }
    return buffer.subarray(0, target !== undefined ? Math.min(filled, target) : filled);
  } finally {
    giveScratch(scratch);
  }
}

/** Reads into `buffer` from `offset` until it is full or the file ends; the number of bytes read. */
async function readInto(handle: VolumeFile, buffer: Buffer, offset: number, position: number): Promise<number> {
  let filled = offset;
  while (filled < buffer.length) {
    const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, position + (filled - offset));
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled - offset;
}

function copyOf(scratch: Buffer, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  scratch.copy(out, 0, 0, length);
  return out;
}

const scratchPool: Buffer[] = [];
function takeScratch(size: number): Buffer {
  if (size !== FIRST_READ) return Buffer.allocUnsafeSlow(size);
  return scratchPool.pop() ?? Buffer.allocUnsafeSlow(FIRST_READ);
}
function giveScratch(buffer: Buffer): void {
  if (buffer.length === FIRST_READ && scratchPool.length < 64) scratchPool.push(buffer);
}

function grow(buffer: Buffer, size: number): Buffer {
  const bigger = Buffer.allocUnsafe(Math.max(size, buffer.length + 1));
  buffer.copy(bigger);
  return bigger;
}

function tooLarge(bytes: number, maxBytes: number): Error {
  return codedError('EFBIG', `${bytes} bytes, more than the ${maxBytes} this kind of file may have`);
}
