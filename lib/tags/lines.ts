import type { ConfinedFs } from '../fs/confined';
import { lineChecksum } from '../store/hash';
import type { Integrity } from '../store/integrity';

/**
 * The one line format of log segments, snapshots and the tag index, as
 * npm's cacache writes its index buckets: `<xxh32 of the text, 8 hex> <text>\n`.
 * With a secret, `~<seal, base64url> <text>\n` instead (see store/integrity.ts),
 * the seal binding the text to its place (app and file kind). A torn,
 * garbage, foreign or forged line fails its check and is skipped and
 * counted, never misread.
 */
export interface LineSeal {
  integrity: Integrity;
  /** `<app>/<file kind>`: a line copied from another app's or kind's file does not verify. */
  place: string;
}

/** A longer line than this is garbage (writers split what would be longer), skipped without being held in memory. */
export const MAX_LINE_BYTES = 1024 * 1024;
const SEALED = '~';

export function encodeLine(text: string, seal?: LineSeal): string {
  if (!seal) return `${lineChecksum(text)} ${text}\n`;
  const mark = seal.integrity.seal(seal.place, [Buffer.from(text, 'utf8')]).toString('base64url');
  return `${SEALED}${mark} ${text}\n`;
}

/**
 * The text of one line (without its newline), or undefined if it fails its
 * check. Without a seal, a sealed line is read unchecked (a replica without
 * the secret reads what one with it wrote); with one, only lines sealed for
 * that place with an accepted key are read.
 */
export function decodeLine(line: string, seal?: LineSeal): string | undefined {
  const space = line.indexOf(' ');
  if (space < 0) return undefined;
  const text = line.slice(space + 1);
  if (line.startsWith(SEALED)) {
    if (!seal) return text;
    const mark = Buffer.from(line.slice(1, space), 'base64url');
    return seal.integrity.check(seal.place, [Buffer.from(text, 'utf8')], mark) ? text : undefined;
  }
  if (seal || space !== 8) return undefined;
  return lineChecksum(text) === line.slice(0, 8) ? text : undefined;
}

/** The text of a file that is one line (a snapshot), or undefined if it is not one intact line. */
export function decodeSingleLine(bytes: Buffer, seal?: LineSeal): string | undefined {
  if (bytes.length === 0 || bytes[bytes.length - 1] !== 0x0a) return undefined;
  const text = bytes.toString('utf8', 0, bytes.length - 1);
  return text.includes('\n') ? undefined : decodeLine(text, seal);
}

export interface LineScan {
  /** Offset just after the last complete line (or skipped garbage): where the next read starts. */
  consumed: number;
  /** Lines that were too long to be records. */
  tooLong: number;
  /** `position` was past the end of the file (nothing was read): it cannot have come from reading this file. */
  beyondEnd: boolean;
}

/** Read size: a segment grows by small lines; a first load reads it whole, a megabyte at a time. */
const CHUNK_BYTES = 1024 * 1024;

/**
 * Hands each complete line of `file` from `position` on to `onLine`, reading
 * a chunk at a time, so memory stays at a chunk plus one line whatever the
 * file's size. A line longer than `maxLine` is skipped by scanning its bytes,
 * never accumulated. An unterminated tail (a line being written) is left for
 * the next read, unless it is already too long to be a record.
 */
export async function scanLines(fs: ConfinedFs, file: string, position: number, onLine: (line: string) => void, maxLine = MAX_LINE_BYTES): Promise<LineScan> {
  const { handle, stats } = await fs.openFile(file);
  if (position > stats.size) {
    await handle.close();
    return { consumed: position, tooLong: 0, beyondEnd: true };
  }
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let carry: Buffer[] = [];
  let carried = 0;
  let skipping = false;
  let consumed = position;
  let offset = position;
  let tooLong = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, offset);
      if (bytesRead === 0) break;
      let start = 0;
      for (;;) {
        const newline = chunk.indexOf(0x0a, start);
        const end = newline === -1 || newline >= bytesRead ? bytesRead : newline;
        const piece = chunk.subarray(start, end);
        if (!skipping && carried + piece.length > maxLine) {
          skipping = true;
          carry = [];
          carried = 0;
        }
        if (!skipping && piece.length > 0) {
          carry.push(Buffer.from(piece));
          carried += piece.length;
        }
        if (end === bytesRead) break;
        // A complete line ends at `newline`.
        if (skipping) tooLong++;
        else if (carried > 0) onLine(Buffer.concat(carry, carried).toString('utf8'));
        skipping = false;
        carry = [];
        carried = 0;
        consumed = offset + newline + 1;
        start = newline + 1;
      }
      offset += bytesRead;
    }
  } finally {
    await handle.close();
  }
  if (skipping) {
    // An unterminated tail already longer than any record: garbage, not a record still being written.
    tooLong++;
    consumed = offset;
  }
  return { consumed, tooLong, beyondEnd: false };
}
