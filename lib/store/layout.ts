import { createHash } from 'node:crypto';
import path from 'node:path';
import { codedError } from '../util/errors';
import { TEMP_PREFIX } from '../fs/confined';

/**
 * Where everything lives on the volume: the only place a path is spelled.
 * Every path comes from the configured root plus names the library validated
 * or made itself (hex hashes, writer ids); a key or a tag never becomes a path.
 *
 *   <root>/next-volume-cache.json                 marker: format version (also tells the CLI this is a cache root)
 *   <root>/apps/<app>/entries/<ns>/<aa>/<bb>/<hash>.entry   one file per entry (<ns>: "shared", "use-cache" or "build-<BUILD_ID>")
 *   <root>/apps/<app>/images/<ns>/<aa>/<bb>/<hash>.json     an optimized image's sidecar ...
 *   <root>/apps/<app>/images/<ns>/<aa>/<bb>/<hash>.<content hash>.<ext>   ... and its raw bytes
 *   <root>/apps/<app>/builds/<ns>                 rewritten while a build is served (gc --keep-builds)
 *   <root>/apps/<app>/seeded/<ns>                 written once a build's prerendered pages were seeded
 *   <root>/apps/<app>/tags/head                   change marker, rewritten after every invalidation
 *   <root>/apps/<app>/tags/snapshot               compacted tag state
 *   <root>/apps/<app>/tags/watermark              gc's watermark: tag marks older than it judge no entry
 *   <root>/apps/<app>/tags/members.snapshot       the compacted tag index
 *   <root>/apps/<app>/tags/inval/<writer>.<gen>.log     invalidations, one file per writing process
 *   <root>/apps/<app>/tags/members/<writer>.<gen>.log   tag membership of entries (the tag index)
 *   <root>/apps/<app>/writers/<writer>            a process's lease (heartbeat) and clock probe
 *   <root>/apps/<app>/locks/<name>.lock           maintenance locks (proper-lockfile)
 *   <root>/apps/<app>/quarantine/                 files `verify --repair` found that the library did not write
 *   <root>/apps/<app>/leases/<ns>/<aa>/<hash>.lease   a process is regenerating this entry (see lease-store.ts)
 *
 * Temp files sit beside their target and start with TEMP_PREFIX (".tmp.").
 */
export const FORMAT_VERSION = 1;
export const MARKER_FILE = 'next-volume-cache.json';
export { TEMP_PREFIX };
export const ENTRY_SUFFIX = '.entry';
export const SIDECAR_SUFFIX = '.json';
export const LEASE_SUFFIX = '.lease';
export const SHARED_NAMESPACE = 'shared';
/** Entries of the 'use cache' handler (their keys already carry the build id). */
export const USE_CACHE_NAMESPACE = 'use-cache';
export const BUILD_PREFIX = 'build-';
/** `.nfsXXXX`: a file an NFS client silly-renamed because it is still open somewhere. Never ours to touch. */
export const NFS_SILLY_PREFIX = '.nfs';
/** Folders between an area (entries/, images/) and a file: the namespace and two shard levels. */
export const SHARD_DEPTH = 3;

const HASH = /^[0-9a-f]{16}$/;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SHARD = /^[0-9a-f]{2}$/;

/**
 * The namespace of a Next build: `build-<BUILD_ID>`, or `build-` and a hash of an id that would not
 * make a safe name. Next's own ids (21 characters of A-Z a-z 0-9 _ -, a leading - or _ included)
 * are kept as they are. The hash is node:crypto's, not the key hasher: a namespace is asked for on a
 * handler's first get, before the key hasher has loaded (an await away).
 */
export function buildNamespace(buildId: string): string {
  const name = BUILD_PREFIX + buildId;
  if (buildId.length > 0 && buildId.length <= 100 && SAFE_NAME.test(name)) return name;
  return BUILD_PREFIX + createHash('sha256').update(buildId, 'utf8').digest('hex').slice(0, 16);
}

/** A name the library could have made (app, namespace, writer): anything else found on the volume is a stranger. */
export function isSafeName(name: string): boolean {
  return SAFE_NAME.test(name);
}

export function isKeyHash(name: string): boolean {
  return HASH.test(name);
}

export function isShardName(name: string): boolean {
  return SHARD.test(name);
}

export class Layout {
  readonly appDir: string;

  constructor(
    readonly root: string,
    readonly app: string,
  ) {
    this.appDir = this.inside(root, 'apps', safeName(app));
  }

  /** The folders every process may assume, parents first (created at open, never on the request path). */
  skeleton(): string[] {
    return [this.appsDir, this.appDir, this.entriesRoot, this.entriesDir(), this.imagesRoot, this.tagsDir, this.invalidationsDir, this.membersDir, this.writersDir, this.buildsDir, this.locksDir, this.leasesDir];
  }

  get marker(): string {
    return path.join(this.root, MARKER_FILE);
  }

  get appsDir(): string {
    return this.inside(this.root, 'apps');
  }

  appDirOf(app: string): string {
    return this.inside(this.appsDir, safeName(app));
  }

  get entriesRoot(): string {
    return this.inside(this.appDir, 'entries');
  }

  entriesDir(namespace: string = SHARED_NAMESPACE): string {
    return this.inside(this.entriesRoot, safeName(namespace));
  }

  entryPath(hash: string, namespace: string = SHARED_NAMESPACE): string {
    return path.join(this.shardDir(this.entriesDir(namespace), hash), hash + ENTRY_SUFFIX);
  }

  get imagesRoot(): string {
    return this.inside(this.appDir, 'images');
  }

  imagesDir(namespace: string = SHARED_NAMESPACE): string {
    return this.inside(this.imagesRoot, safeName(namespace));
  }

  imageDir(hash: string, namespace: string = SHARED_NAMESPACE): string {
    return this.shardDir(this.imagesDir(namespace), hash);
  }

  sidecarPath(hash: string, namespace: string = SHARED_NAMESPACE): string {
    return path.join(this.imageDir(hash, namespace), hash + SIDECAR_SUFFIX);
  }

  /** A raw image file named by its sidecar (a name parseRawName accepted). */
  rawImagePath(hash: string, namespace: string, file: string): string {
    return path.join(this.imageDir(hash, namespace), safeName(file));
  }

  /** `builds/<namespace>`: rewritten by every process serving that build (what `gc --keep-builds` orders by). */
  get buildsDir(): string {
    return this.inside(this.appDir, 'builds');
  }
  buildMarker(namespace: string): string {
    return path.join(this.buildsDir, safeName(namespace));
  }
  get seededDir(): string {
    return this.inside(this.appDir, 'seeded');
  }
  /** `seeded/<namespace>`: written once a build's prerendered pages were seeded. */
  seededMarker(namespace: string): string {
    return path.join(this.seededDir, safeName(namespace));
  }

  get tagsDir(): string {
    return this.inside(this.appDir, 'tags');
  }
  get tagHead(): string {
    return path.join(this.tagsDir, 'head');
  }
  get tagSnapshot(): string {
    return path.join(this.tagsDir, 'snapshot');
  }
  get watermark(): string {
    return path.join(this.tagsDir, 'watermark');
  }
  get invalidationsDir(): string {
    return path.join(this.tagsDir, 'inval');
  }
  get membersDir(): string {
    return path.join(this.tagsDir, 'members');
  }
  get membersSnapshot(): string {
    return path.join(this.tagsDir, 'members.snapshot');
  }
  /** A segment file named by parseSegmentName or segmentName. */
  segmentPath(dir: string, name: string): string {
    if (!parseSegmentName(name)) throw codedError('EINVAL', `not a segment name: ${JSON.stringify(name)}`);
    return path.join(dir, name);
  }

  get writersDir(): string {
    return this.inside(this.appDir, 'writers');
  }
  writerLease(writer: string): string {
    return path.join(this.writersDir, safeName(writer));
  }

  get locksDir(): string {
    return this.inside(this.appDir, 'locks');
  }
  /** The lock target `locks/<name>` (proper-lockfile adds `.lock`). */
  lock(name: string): string {
    return path.join(this.locksDir, safeName(name));
  }

  get quarantineDir(): string {
    return this.inside(this.appDir, 'quarantine');
  }

  get leasesDir(): string {
    return this.inside(this.appDir, 'leases');
  }
  leasePath(hash: string, namespace: string): string {
    if (!HASH.test(hash)) throw codedError('EINVAL', `not a key hash: ${JSON.stringify(hash)}`);
    return path.join(this.inside(this.leasesDir, safeName(namespace)), hash.slice(0, 2), hash + LEASE_SUFFIX);
  }

  /** A clock probe in the root, for a process that has no app folder to keep a lease in. */
  clockProbe(writer: string): string {
    return path.join(this.root, `${TEMP_PREFIX}clock.${safeName(writer)}`);
  }

  /** A start-up check's probe file in the root. */
  checkProbe(writer: string): string {
    return path.join(this.root, `${TEMP_PREFIX}check.${safeName(writer)}`);
  }

  /** The small metadata folders whose temp files maintenance sweeps (the shard trees have their own walk). */
  metadataDirs(): string[] {
    return [this.root, this.appDir, this.tagsDir, this.buildsDir, this.seededDir, this.writersDir];
  }

  /** Two levels of 256 folders: 10 million entries put ~150 files in each. */
  shardDir(base: string, hash: string): string {
    if (!HASH.test(hash)) throw codedError('EINVAL', `not a key hash: ${JSON.stringify(hash)}`);
    return path.join(base, hash.slice(0, 2), hash.slice(2, 4));
  }

  /** Joins and refuses any result outside `base`: the last line of defence against path escapes. */
  private inside(base: string, ...parts: string[]): string {
    const joined = path.resolve(base, ...parts);
    if (joined !== base && !joined.startsWith(base + path.sep)) {
      throw codedError('EOUTSIDE', `refusing a path outside the cache root: ${joined}`);
    }
    return joined;
  }
}

export function safeName(name: string): string {
  if (!SAFE_NAME.test(name)) throw codedError('EINVAL', `unsafe name ${JSON.stringify(name)}`);
  return name;
}

export function segmentName(writer: string, generation: number): string {
  return `${safeName(writer)}.${String(generation).padStart(6, '0')}.log`;
}

/** Parses `<writer>.<gen>.log`; anything else is not a segment we wrote. */
export function parseSegmentName(name: string): { writer: string; generation: number } | undefined {
  const match = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.(\d{6,15})\.log$/.exec(name);
  if (!match) return undefined;
  return { writer: match[1]!, generation: Number(match[2]) };
}
