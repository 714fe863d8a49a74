import { createCipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Optional secret-keyed integrity: with a secret, everything the library
 * writes (entries, image sidecars with their raw bytes, log lines, the
 * snapshot) carries a seal that only a holder of the secret can make, bound
 * to where it belongs (app, namespace, file kind). Anyone who can write the
 * volume but does not hold the secret can no longer plant a page, move an
 * entry into another namespace or hide an invalidation: such files are
 * misses or skipped records, counted, and reported by `verify`.
 *
 * The seal is ChaCha20-Poly1305 used as a MAC (the data as additional
 * authenticated data, nothing encrypted) with a random 96-bit nonce:
 * Poly1305's one-time key comes fresh from ChaCha20 for every nonce. Chosen
 * by measurement with Node's crypto on this machine: about 9 µs per 64 KiB
 * and 120 µs per MiB, the cost of the xxh64 checksum every entry already
 * has; AES-GCM's GMAC measured about twice that, HMAC-SHA256 four to six
 * times (bench/run.js --only=integrity reproduces it).
 *
 * Keys: HKDF-SHA256 of each secret. The first secret seals; every secret
 * given verifies, so a new secret can be rolled out first as the second one.
 */
export interface Integrity {
  /** Bytes a seal takes. */
  readonly sealBytes: number;
  /** A seal over `place` and `parts` (in order) with the first key. */
  seal(place: string, parts: readonly Uint8Array[]): Buffer;
  /** Whether `seal` was made over `place` and `parts` with any accepted key. */
  check(place: string, parts: readonly Uint8Array[], seal: Uint8Array): boolean;
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHM = 'chacha20-poly1305';
/** Secrets shorter than this are refused: a seal is only as strong as its secret. */
export const MIN_SECRET_LENGTH = 16;

export function createIntegrity(secrets: readonly string[]): Integrity {
  if (secrets.length === 0) throw new Error('next-volume-cache: integrity needs at least one secret');
  const keys = secrets.map((secret) => Buffer.from(hkdfSync('sha256', secret, 'next-volume-cache', 'seal v1', 32)));
  const mac = (key: Buffer, nonce: Uint8Array, place: string, parts: readonly Uint8Array[]): Buffer => {
    const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
    const placeBytes = Buffer.from(place, 'utf8');
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32LE(placeBytes.byteLength);
    // The place's length first: "a/b" + "c" and "a/" + "bc" never seal alike.
    const aad = { plaintextLength: 0 };
    cipher.setAAD(length, aad);
    cipher.setAAD(placeBytes, aad);
    for (const part of parts) cipher.setAAD(part, aad);
    cipher.final();
    return cipher.getAuthTag();
  };
  return {
    sealBytes: NONCE_BYTES + TAG_BYTES,
    seal(place, parts) {
      const nonce = randomBytes(NONCE_BYTES);
      return Buffer.concat([nonce, mac(keys[0]!, nonce, place, parts)]);
    },
    check(place, parts, seal) {
      if (seal.byteLength !== NONCE_BYTES + TAG_BYTES) return false;
      const nonce = seal.subarray(0, NONCE_BYTES);
      const tag = seal.subarray(NONCE_BYTES);
      return keys.some((key) => timingSafeEqual(mac(key, nonce, place, parts), tag));
    },
  };
}
