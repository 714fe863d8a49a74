import { readFailure, type ConfinedFs } from '../fs/confined';
import { readOpened } from '../fs/read';
import type { CacheControl } from './codec';
import { contentHash, hashKey } from './hash';
import type { Integrity } from './integrity';
import { SHARD_DEPTH, type Layout } from './layout';
import { RememberedFailures } from './remembered-failures';

/**
 * Optimized images as plain files: `<hash>.<content hash>.<ext>` holds the
 * exact bytes Next produced (open it with any image tool, serve it from a CDN
 * origin), and `<hash>.json` beside it, the sidecar, says which file is
 * current and everything Next needs back.
 *
 * Publication of a pair: the raw file first (temp + rename), under a name
 * derived from its content, so it never overwrites bytes a current sidecar
 * points to; then the sidecar (temp + rename) is the commit point; then the
 * superseded raw file is removed. A reader holding an old sidecar reads old
 * bytes or finds them gone (a miss), never new bytes under an old etag. A raw
 * file no sidecar names (a writer died in between) is an orphan for the CLI.
 */
export interface ImageValue {
  kind: 'IMAGE';
  /** A Buffer from Next; any Uint8Array is taken (and copied into a Buffer). */
  buffer: Buffer | Uint8Array;
  etag: string;
  upstreamEtag: string;
  extension: string;
  revalidate: number;
  [other: string]: unknown;
}

export interface ImageSidecar {
  v: 1;
  key: string;
  etag: string;
  upstreamEtag: string;
  extension: string;
  revalidate: number;
  cacheControl?: CacheControl | undefined;
  /** Volume clock, ms. */
  lastModified: number;
  size: number;
  contentType: string;
  /** Name of the raw file in the same folder. */
  file: string;
  /** xxh64 of the bytes, 16 hex digits (also part of the file name). */
  checksum: string;
  /** With a secret: base64 seal over the app, the namespace, this sidecar (without `seal`) and the raw bytes. */
  seal?: string;
}

export type ImageMiss = 'absent' | 'bad-sidecar' | 'key-mismatch' | 'raw-missing' | 'raw-size' | 'raw-checksum' | 'not-a-file' | 'too-large' | 'unsealed' | 'forged';

export type ImageRead = { found: true; sidecar: ImageSidecar; buffer: Buffer; hash: string; rawPath: string } | { found: false; reason: ImageMiss; hash: string };

const CONTENT_TYPES: Record<string, string> = {
  avif: 'image/avif',
  webp: 'image/webp',
  png: 'image/png',
  jpeg: 'image/jpeg',
  jpg: 'image/jpeg',
  gif: 'image/gif',
  svg: 'image/svg+xml',
  ico: 'image/x-icon',
  icns: 'image/x-icns',
  bmp: 'image/bmp',
  tiff: 'image/tiff',
  jxl: 'image/jxl',
  heic: 'image/heic',
};

const RAW_NAME = /^([0-9a-f]{16})\.([0-9a-f]{16})\.([a-z0-9]{1,10})$/;

export function safeExtension(extension: unknown): string {
  return typeof extension === 'string' && /^[a-z0-9]{1,10}$/.test(extension) ? extension : 'bin';
}

/** `<hash>.<content hash>.<ext>` names a raw image file; anything else is not one. */
export function parseRawName(name: string): { hash: string; checksum: string; extension: string } | undefined {
  const m = RAW_NAME.exec(name);
  return m ? { hash: m[1]!, checksum: m[2]!, extension: m[3]! } : undefined;
}

/** A sidecar is a few hundred bytes; a larger one is damage, refused before it is read. */
const MAX_SIDECAR_BYTES = 64 * 1024;

export interface ImageStoreOptions {
  app: string;
  /** Largest raw image file read (the entry cap): a sidecar declaring more is a miss before any allocation. */
  maxEntryBytes: number;
  integrity?: Integrity | undefined;
}

export class ImageStore {
  private readonly failures = new RememberedFailures<ImageMiss>();

  constructor(
    private readonly fs: ConfinedFs,
    private readonly layout: Layout,
    private readonly options: ImageStoreOptions,
  ) {}

  async read(key: string, namespace: string): Promise<ImageRead> {
    const hash = hashKey(key);
    let sidecar: ImageSidecar | undefined;
    try {
      sidecar = parseSidecar(await this.fs.readFile(this.layout.sidecarPath(hash, namespace), { maxBytes: MAX_SIDECAR_BYTES, firstRead: 4096 }), hash);
    } catch (error) {
      const failure = readFailure(error);
      if (failure === 'too-large') return { found: false, reason: 'bad-sidecar', hash };
      if (failure) return { found: false, reason: failure, hash };
      throw error;
    }
    if (!sidecar) return { found: false, reason: 'bad-sidecar', hash };
    if (sidecar.key !== key) return { found: false, reason: 'key-mismatch', hash };
    if (sidecar.size > this.options.maxEntryBytes) return { found: false, reason: 'too-large', hash };
    const rawPath = this.layout.rawImagePath(hash, namespace, sidecar.file);
    try {
      const problem = await this.readRaw(rawPath, sidecar, namespace);
      return typeof problem === 'string' ? { found: false, reason: problem, hash } : { found: true, sidecar, buffer: problem, hash, rawPath };
    } catch (error) {
      const failure = readFailure(error);
      if (failure === 'absent') return { found: false, reason: 'raw-missing', hash };
      if (failure) return { found: false, reason: failure, hash };
      throw error;
    }
  }

  /** Whether raw bytes are the ones a sidecar names (size, checksum, and its seal with a secret). */
  judgeRaw(sidecar: ImageSidecar, buffer: Buffer, namespace: string): ImageMiss | undefined {
    if (buffer.length !== sidecar.size) return 'raw-size';
    if (contentHash(buffer) !== sidecar.checksum) return 'raw-checksum';
    const integrity = this.options.integrity;
    if (integrity) {
      if (typeof sidecar.seal !== 'string') return 'unsealed';
      if (!integrity.check(this.place(namespace), sealedParts(sidecar, buffer), Buffer.from(sidecar.seal, 'base64'))) return 'forged';
    }
    return undefined;
  }

  async write(key: string, value: ImageValue, cacheControl: CacheControl | undefined, lastModified: number, namespace: string): Promise<string> {
    const hash = hashKey(key);
    const buffer = Buffer.isBuffer(value.buffer) ? value.buffer : Buffer.from(value.buffer);
    const sum = contentHash(buffer);
    const extension = safeExtension(value.extension);
    const file = `${hash}.${sum}.${extension}`;
    const previous = await this.currentFile(hash, namespace);
    const rawPath = this.layout.rawImagePath(hash, namespace, file);
    await this.fs.writeAtomic(rawPath, [buffer], { createParents: SHARD_DEPTH });
    const sidecar: ImageSidecar = {
      v: 1,
      key,
      etag: String(value.etag),
      upstreamEtag: String(value.upstreamEtag),
      extension: String(value.extension),
      revalidate: value.revalidate,
      cacheControl,
      lastModified,
      size: buffer.length,
      contentType: CONTENT_TYPES[extension] ?? 'application/octet-stream',
      file,
      checksum: sum,
    };
    if (this.options.integrity) sidecar.seal = this.options.integrity.seal(this.place(namespace), sealedParts(sidecar, buffer)).toString('base64');
    try {
      await this.fs.writeAtomic(this.layout.sidecarPath(hash, namespace), [Buffer.from(JSON.stringify(sidecar) + '\n')]);
    } catch (error) {
      // The pair was not published: the raw file just written would only be an orphan.
      if (previous !== file) await this.fs.unlink(rawPath).catch(() => undefined);
      throw error;
    }
    if (previous && previous !== file) await this.fs.unlink(this.layout.rawImagePath(hash, namespace, previous));
    return hash;
  }

  /** Removes the sidecar first (the commit point), then the raw file it names. */
  async remove(hash: string, namespace: string): Promise<boolean> {
    const file = await this.currentFile(hash, namespace);
    const removed = await this.fs.unlink(this.layout.sidecarPath(hash, namespace));
    if (file) await this.fs.unlink(this.layout.rawImagePath(hash, namespace, file));
    return removed;
  }

  /** Marks a raw file as used now (its mtime, on the volume clock): what image eviction orders by. */
  touch(rawPath: string, volumeNowMs: number): Promise<void> {
    return this.fs.touch(rawPath, volumeNowMs);
  }

  /** The raw bytes, or why they are not the ones the sidecar names (remembered for this version of the file). */
  private async readRaw(rawPath: string, sidecar: ImageSidecar, namespace: string): Promise<Buffer | ImageMiss> {
    const opened = await this.fs.openFile(rawPath);
    try {
      // A size other than the sidecar's is a broken pair: no need to read it (nor to allocate what a sidecar claims).
      if (opened.stats.size !== sidecar.size) return 'raw-size';
      const known = this.failures.recall(rawPath, opened.stats);
      if (known) return known;
      const buffer = await readOpened(opened.handle, opened.stats, { maxBytes: this.options.maxEntryBytes, declared: () => sidecar.size, firstRead: Math.max(1, Math.min(sidecar.size, 64 * 1024)) });
      const problem = this.judgeRaw(sidecar, buffer, namespace);
      if (problem) this.failures.remember(rawPath, opened.stats, problem);
      return problem ?? buffer;
    } finally {
      await opened.handle.close();
    }
  }

  private place(namespace: string): string {
    return `${this.options.app}/images/${namespace}`;
  }

  private async currentFile(hash: string, namespace: string): Promise<string | undefined> {
    try {
      return parseSidecar(await this.fs.readFile(this.layout.sidecarPath(hash, namespace), { maxBytes: MAX_SIDECAR_BYTES, firstRead: 4096 }), hash)?.file;
    } catch {
      // Unreadable or damaged: the new pair replaces it; nothing to remove but what a good sidecar names.
      return undefined;
    }
  }
}

/** The bytes a sidecar's seal covers: the sidecar's JSON without its seal, then the raw bytes. */
function sealedParts(sidecar: ImageSidecar, buffer: Buffer): Buffer[] {
  const { seal: _seal, ...unsealed } = sidecar;
  return [Buffer.from(JSON.stringify(unsealed)), buffer];
}

/**
 * A sidecar is trusted only if it is well-formed and names the one raw file
 * its own fields derive (so it can never point outside its folder).
 */
export function parseSidecar(bytes: Buffer, hash: string): ImageSidecar | undefined {
  let s: Partial<ImageSidecar>;
  try {
    s = JSON.parse(bytes.toString('utf8')) as Partial<ImageSidecar>;
  } catch {
    return undefined;
  }
  if (s === null || typeof s !== 'object' || s.v !== 1) return undefined;
  if (typeof s.key !== 'string' || typeof s.etag !== 'string' || typeof s.upstreamEtag !== 'string' || typeof s.extension !== 'string') return undefined;
  if (typeof s.revalidate !== 'number' || typeof s.lastModified !== 'number' || !Number.isSafeInteger(s.size) || (s.size as number) < 0) return undefined;
  if (typeof s.checksum !== 'string' || !/^[0-9a-f]{16}$/.test(s.checksum)) return undefined;
  if (s.seal !== undefined && typeof s.seal !== 'string') return undefined;
  if (s.file !== `${hash}.${s.checksum}.${safeExtension(s.extension)}`) return undefined;
  return s as ImageSidecar;
}
