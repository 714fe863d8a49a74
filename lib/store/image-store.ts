import path from 'node:path';
import { writeAtomic } from './atomic';
import type { CacheControl } from './codec';
import { errorCode, readWhole, unlinkIfExists, type VolumeFs } from './fs';
import { contentHash, hashKey } from './hash';
import { SHARED_NAMESPACE, type Layout } from './layout';
import { ShardGuard, UnsafePathError } from './shard-guard';

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
  buffer: Buffer;
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
}

export type ImageMiss = 'absent' | 'bad-sidecar' | 'key-mismatch' | 'raw-missing' | 'raw-size' | 'raw-checksum' | 'not-a-file';

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

export const SIDECAR_SUFFIX = '.json';
const RAW_NAME = /^([0-9a-f]{16})\.([0-9a-f]{16})\.([a-z0-9]{1,10})$/;

export function safeExtension(extension: unknown): string {
  return typeof extension === 'string' && /^[a-z0-9]{1,10}$/.test(extension) ? extension : 'bin';
}

/** `<hash>.<content hash>.<ext>` names a raw image file; anything else is not one. */
export function parseRawName(name: string): { hash: string; checksum: string; extension: string } | undefined {
  const m = RAW_NAME.exec(name);
  return m ? { hash: m[1]!, checksum: m[2]!, extension: m[3]! } : undefined;
}

export class ImageStore {
  private readonly guard: ShardGuard;

  constructor(
    private readonly fs: VolumeFs,
    private readonly layout: Layout,
    private readonly options: { writer: string; fsync: boolean; mode?: number | undefined; dirMode?: number | undefined },
  ) {
    this.guard = new ShardGuard(fs);
  }

  dirOf(hash: string, namespace: string = SHARED_NAMESPACE): string {
    return this.layout.shardDir(this.layout.imagesDir(namespace), hash);
  }

  sidecarPath(hash: string, namespace: string = SHARED_NAMESPACE): string {
    return path.join(this.dirOf(hash, namespace), hash + SIDECAR_SUFFIX);
  }

  async read(key: string, namespace: string = SHARED_NAMESPACE): Promise<ImageRead> {
    const hash = hashKey(key);
    let sidecar: ImageSidecar | undefined;
    try {
      sidecar = parseSidecar(await readWhole(this.fs, this.sidecarPath(hash, namespace), 0, undefined, 4096), hash);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return { found: false, reason: 'absent', hash };
      if (code === 'ELOOP' || code === 'EISDIR') return { found: false, reason: 'not-a-file', hash };
      throw error;
    }
    if (!sidecar) return { found: false, reason: 'bad-sidecar', hash };
    if (sidecar.key !== key) return { found: false, reason: 'key-mismatch', hash };
    if (!(await this.guard.isSafe(this.dirOf(hash, namespace), 3))) return { found: false, reason: 'not-a-file', hash };
    const rawPath = path.join(this.dirOf(hash, namespace), sidecar.file);
    let buffer: Buffer;
    try {
      buffer = await readWhole(this.fs, rawPath, 0, () => sidecar.size, Math.max(1, sidecar.size));
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return { found: false, reason: 'raw-missing', hash };
      if (code === 'ELOOP' || code === 'EISDIR') return { found: false, reason: 'not-a-file', hash };
      throw error;
    }
    if (buffer.length !== sidecar.size) return { found: false, reason: 'raw-size', hash };
    if (contentHash(buffer) !== sidecar.checksum) {
      return { found: false, reason: 'raw-checksum', hash };
    }
    return { found: true, sidecar, buffer, hash, rawPath };
  }

  async write(key: string, value: ImageValue, cacheControl: CacheControl | undefined, lastModified: number, namespace: string = SHARED_NAMESPACE): Promise<string> {
    const hash = hashKey(key);
    const buffer = Buffer.isBuffer(value.buffer) ? value.buffer : Buffer.from(value.buffer as Uint8Array);
    const sum = contentHash(buffer);
    const extension = safeExtension(value.extension);
    const file = `${hash}.${sum}.${extension}`;
    const dir = this.dirOf(hash, namespace);
    if (!(await this.guard.isSafe(dir, 3))) throw new UnsafePathError(dir);
    const previous = await this.currentFile(hash, namespace);
    await writeAtomic(this.fs, path.join(dir, file), [buffer], this.options);
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
    try {
      await writeAtomic(this.fs, this.sidecarPath(hash, namespace), [Buffer.from(JSON.stringify(sidecar) + '\n')], this.options);
    } catch (error) {
      // The pair was not published: the raw file just written would only be an orphan.
      if (previous !== file) await unlinkIfExists(this.fs, path.join(dir, file)).catch(() => undefined);
      throw error;
    }
    if (previous && previous !== file) await unlinkIfExists(this.fs, path.join(dir, previous));
    return hash;
  }

  /** Removes the sidecar first (the commit point), then the raw file it names. */
  async remove(hash: string, namespace: string = SHARED_NAMESPACE): Promise<boolean> {
    const file = await this.currentFile(hash, namespace);
    const removed = await unlinkIfExists(this.fs, this.sidecarPath(hash, namespace));
    if (file) await unlinkIfExists(this.fs, path.join(this.dirOf(hash, namespace), file));
    return removed;
  }

  /** Marks a raw file as used now (its mtime, on the volume clock): what image eviction orders by. */
  async touch(rawPath: string, volumeNowMs: number): Promise<void> {
    const seconds = volumeNowMs / 1000;
    await this.fs.utimes(rawPath, seconds, seconds);
  }

  private async currentFile(hash: string, namespace: string): Promise<string | undefined> {
    try {
      return parseSidecar(await readWhole(this.fs, this.sidecarPath(hash, namespace), 0, undefined, 4096), hash)?.file;
    } catch {
      return undefined;
    }
  }
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
  if (typeof s.revalidate !== 'number' || typeof s.lastModified !== 'number' || !Number.isInteger(s.size) || (s.size as number) < 0) return undefined;
  if (typeof s.checksum !== 'string' || !/^[0-9a-f]{16}$/.test(s.checksum)) return undefined;
  if (s.file !== `${hash}.${s.checksum}.${safeExtension(s.extension)}`) return undefined;
  return s as ImageSidecar;
}
