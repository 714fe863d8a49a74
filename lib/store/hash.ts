import type { XXHashAPI } from 'xxhash-wasm' with { 'resolution-mode': 'import' };

// The package is "type": "module" with a CommonJS build whose module.exports is the factory.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const xxhash = require('xxhash-wasm') as () => Promise<XXHashAPI>;

type Hasher = XXHashAPI;

let loading: Promise<Hasher> | undefined;
let hasher: Hasher | undefined;

/** Instantiates the xxhash WebAssembly module once per process. */
export async function loadHasher(): Promise<void> {
  hasher ??= await (loading ??= xxhash());
}

function ready(): Hasher {
  if (!hasher) throw new Error('next-volume-cache: hashing used before loadHasher() resolved');
  return hasher;
}

/**
 * 16 hex digits of xxh64 over the key's UTF-16 code units. UTF-16LE bytes are
 * lossless for every JS string: UTF-8 would turn each lone surrogate into
 * U+FFFD and collapse distinct keys into one.
 */
export function hashKey(key: string): string {
  return ready().h64Raw(Buffer.from(key, 'utf16le')).toString(16).padStart(16, '0');
}

/** xxh64 over several buffers, as 8 little-endian bytes. */
export function checksum(parts: readonly Uint8Array[]): Buffer {
  const state = ready().create64();
  for (const part of parts) state.update(part);
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64LE(state.digest());
  return out;
}

/** 16 hex digits of xxh64 over some bytes: how raw image files are named and checked. */
export function contentHash(bytes: Uint8Array): string {
  return checksum([bytes]).readBigUInt64LE().toString(16).padStart(16, '0');
}

/** xxh32 of a string folded to 31 bits (the memory tier's table of turned-away keys holds it plus one, 0 marking an empty slot). */
export function smallHash(text: string): number {
  return ready().h32(text) >>> 1;
}

/** 8 hex digits of xxh32, for one line of a log. */
export function lineChecksum(text: string): string {
  return ready().h32ToString(text);
}
