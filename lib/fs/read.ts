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
  /**
   * Size of the first read; the default suits entries (64 KiB; 128 KiB for a
   * started read), read into a pooled scratch buffer and copied out. Another
   * size (a file's size known from an earlier read, plus some room) reads
   * the file whole at once, into a buffer then handed out without a copy.
   */
  firstRead?: number;
}

const FIRST_READ = 64 * 1024;

export async function readOpened(handle: VolumeFile, stats: Stats, limits: ReadLimits): Promise<Buffer> {
  const { maxBytes, position = 0 } = limits;
  const size = stats.size - position;
  if (size > maxBytes) throw tooLarge(size, maxBytes);
  return size > 0 ? readSized(handle, size, limits) : readUnsized(handle, stats, limits);
}

/**
 * The common case: the file's size is known from the fstat of the open (on
 * NFS a fresh open revalidates it), so one read of exactly that size into a
 * buffer of that size, with no scratch copy. The format's declared length
 * is still what ends the read: a file that declares more than it holds is
 * truncated, one that holds more is read on (within the cap), and a file
 * with no declared length is read to its end.
 */
async function readSized(handle: VolumeFile, size: number, limits: ReadLimits): Promise<Buffer> {
  const { maxBytes, position = 0, declared } = limits;
  const buffer = Buffer.allocUnsafe(size);
  const filled = await readInto(handle, buffer, 0, position);
  const target = filled > 0 ? declared?.(buffer.subarray(0, filled)) : undefined;
  if (target !== undefined && target > maxBytes) throw tooLarge(target, maxBytes);
  if (filled < size || (target !== undefined && target <= filled)) return buffer.subarray(0, target !== undefined ? Math.min(filled, target) : filled);
  return readRest(handle, buffer, filled, target, limits);
}

/**
 * A file whose size fstat does not tell (0: empty, or a file some
 * filesystems report without a size): read in a reused scratch buffer first,
 * then on. Only the bytes the file has are copied out: a fresh 64 KB
 * allocation per read, most of it unused, was measured to make a 4 KB hit
 * nearly twice as slow (garbage collection of external memory).
 */
async function readUnsized(handle: VolumeFile, stats: Stats, limits: ReadLimits): Promise<Buffer> {
  const scratch = takeScratch(Math.min(limits.firstRead ?? FIRST_READ, limits.maxBytes + 1));
  try {
    const first = (await handle.read(scratch, 0, scratch.length, limits.position ?? 0)).bytesRead;
    return await readOnFromScratch(handle, stats, scratch, first, limits);
  } finally {
    giveScratch(scratch);
  }
}

/**
 * A read begun before the file's size is known: its fstat and its first
 * read (into a scratch buffer of EARLY_READ bytes) run side by side, one
 * round trip instead of two. The caller checks `stats` (it rejects with
 * ENOTREG for anything but a regular file), then either calls `finish` for
 * the whole file or lets the read go. Either way the handle is not closed
 * before `idle()` resolves: closing a descriptor a read is still using
 * would let a new open reuse its number under that read.
 */
export interface StartedRead {
  /** The open file's fstat; rejects with ENOTREG for anything but a regular file. */
  stats: Promise<Stats>;
  /** The whole file, within the limits (as readOpened would read it). */
  finish(stats: Stats): Promise<Buffer>;
  /** Resolves once no read of this file is in flight (never rejects). */
  idle(): Promise<void>;
}

/** First read of a started read: most entries (a fetch, a page of up to this size) are read whole by it. */
export const EARLY_READ = 128 * 1024;

export function startRead(handle: VolumeFile, limits: ReadLimits): StartedRead {
  const position = limits.position ?? 0;
  const scratch = takeScratch(Math.min(limits.firstRead ?? EARLY_READ, limits.maxBytes + 1));
  const first = handle.read(scratch, 0, scratch.length, position).then((r) => r.bytesRead);
  // What reads into the scratch buffer last: the first read, then `finish` (which copies out of it).
  let inFlight: Promise<unknown> = first;
  let released = false;
  const stats = handle.stat().then((s) => {
    if (!s.isFile()) throw codedError('ENOTREG', 'not a regular file');
    return s;
  });
  // Observed by finish or idle, maybe only after they failed: not an unhandled rejection meanwhile.
  first.catch(() => undefined);
  stats.catch(() => undefined);
  return {
    stats,
    finish(checked) {
      const whole = first.then((bytesRead) => {
        const size = checked.size - position;
        if (size > limits.maxBytes) throw tooLarge(size, limits.maxBytes);
        return readOnFromScratch(handle, checked, scratch, bytesRead, limits);
      });
      inFlight = whole;
      return whole;
    },
    async idle() {
      await Promise.allSettled([inFlight, stats]);
      if (released) return;
      released = true;
      giveScratch(scratch);
    },
  };
}

/** Goes on from a first read of `firstRead` bytes into `scratch`: copies out what it holds, or reads the rest. */
async function readOnFromScratch(handle: VolumeFile, stats: Stats, scratch: Buffer, firstRead: number, limits: ReadLimits): Promise<Buffer> {
  const { maxBytes, position = 0, declared } = limits;
  let first = firstRead;
  let target = first > 0 ? declared?.(scratch.subarray(0, first)) : undefined;
  if (first > 0 && (target === undefined || target > first) && first < scratch.length) {
    first += await readInto(handle, scratch, first, position + first);
    target ??= declared?.(scratch.subarray(0, first));
  }
  if (target !== undefined && target > maxBytes) throw tooLarge(target, maxBytes);
  if (first > maxBytes) throw tooLarge(first, maxBytes);
  if (target !== undefined && target <= first) return ownedPart(scratch, target);
  if (first < scratch.length) return ownedPart(scratch, first);
  const expected = Math.max(first, stats.size - position);
  const buffer = Buffer.allocUnsafe(Math.min(target ?? expected, expected, maxBytes));
  scratch.copy(buffer, 0, 0, first);
  return await readRest(handle, buffer, first, target, limits);
}

/**
 * Reads on after `filled` bytes: into the rest of `buffer`, then, only when
 * the file really holds more bytes (a probe read says so), into a larger
 * buffer, never past the cap. Stops at the declared length or at the end of
 * the file.
 */
async function readRest(handle: VolumeFile, start: Buffer, startFilled: number, target: number | undefined, limits: ReadLimits): Promise<Buffer> {
  const { maxBytes, position = 0 } = limits;
  const probeBuffer = takeScratch(FIRST_READ);
  try {
    let buffer = start;
    let filled = startFilled;
    while (target === undefined || filled < target) {
      if (filled < buffer.length) {
        const n = await readInto(handle, buffer, filled, position + filled);
        if (n === 0) break;
        filled += n;
        continue;
      }
      const probe = await readInto(handle, probeBuffer, 0, position + filled);
      if (probe === 0) break;
      if (filled + probe > maxBytes) throw tooLarge(filled + probe, maxBytes);
      const wanted = Math.min(Math.max(buffer.length * 2, filled + probe), maxBytes);
      buffer = grow(buffer, target === undefined ? wanted : Math.min(wanted, Math.max(target, filled + probe)));
      probeBuffer.copy(buffer, filled, 0, probe);
      filled += probe;
    }
    return buffer.subarray(0, target !== undefined ? Math.min(filled, target) : filled);
  } finally {
    giveScratch(probeBuffer);
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

/**
 * The first `length` bytes of a first-read buffer, as a Buffer the caller
 * owns: a copy when the buffer is pooled (it will be reused). A buffer of
 * another size (a caller's `firstRead`, sized for the file) is never
 * pooled: it is handed out as it is, when it wastes at most UNCOPIED_ROOM.
 */
function ownedPart(scratch: Buffer, length: number): Buffer {
  if (!scratchPools.has(scratch.length) && scratch.length - length <= UNCOPIED_ROOM) return scratch.subarray(0, length);
  const out = Buffer.allocUnsafe(length);
  scratch.copy(out, 0, 0, length);
  return out;
}

/** The most unused bytes a first-read buffer handed out without a copy may carry (a sized read's room for growth). */
export const UNCOPIED_ROOM = 16 * 1024;

/** Scratch buffers of the two sizes reads start with, kept for reuse (at most POOLED of each). */
const scratchPools = new Map<number, Buffer[]>([
  [FIRST_READ, []],
  [EARLY_READ, []],
]);
const POOLED = 32;
function takeScratch(size: number): Buffer {
  return scratchPools.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
}
function giveScratch(buffer: Buffer): void {
  const pool = scratchPools.get(buffer.length);
  if (pool && pool.length < POOLED) pool.push(buffer);
}

function grow(buffer: Buffer, size: number): Buffer {
  const bigger = Buffer.allocUnsafe(Math.max(size, buffer.length + 1));
  buffer.copy(bigger);
  return bigger;
}

function tooLarge(bytes: number, maxBytes: number): Error {
  return codedError('EFBIG', `${bytes} bytes, more than the ${maxBytes} this kind of file may have`);
}
