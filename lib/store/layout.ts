import path from 'node:path';

/**
 * Where everything lives on the volume. Every path the library builds comes
 * from here, out of the configured root plus names it validated or made
 * itself (hex hashes, writer ids); a key or a tag never becomes a path.
 *
 *   <root>/next-volume-cache.json                 marker: format version (also tells the CLI this is a cache root)
 *   <root>/apps/<app>/entries/<ns>/<aa>/<bb>/<hash>.entry   one file per entry (<ns>: "shared", "use-cache" or "build-<BUILD_ID>")
 *   <root>/apps/<app>/images/<ns>/<aa>/<bb>/...   optimized images (raw file + JSON sidecar)
 *   <root>/apps/<app>/builds/<ns>                 rewritten while a build is served (gc --keep-builds)
 *   <root>/apps/<app>/tags/head                   change marker, rewritten after every invalidation
 *   <root>/apps/<app>/tags/snapshot               compacted tag state
 *   <root>/apps/<app>/tags/inval/<writer>.<gen>.log     invalidations, one file per writing process
 *   <root>/apps/<app>/tags/members/<writer>.<gen>.log   tag membership of entries (the tag index)
 *   <root>/apps/<app>/writers/<writer>            a process's lease (heartbeat) and clock probe
 *   <root>/apps/<app>/locks/                      maintenance locks (proper-lockfile)
 *
 * Temp files sit beside their target and start with TEMP_PREFIX.
 */
export const FORMAT_VERSION = 1;
export const MARKER_FILE = 'next-volume-cache.json';
export const TEMP_PREFIX = '.tmp.';
export const ENTRY_SUFFIX = '.entry';
export const SHARED_NAMESPACE = 'shared';
/** Entries of the 'use cache' handler (their keys already carry the build id). */
export const USE_CACHE_NAMESPACE = 'use-cache';
export const BUILD_PREFIX = 'build-';

/** The namespace of a Next build: `build-<BUILD_ID>`, or a hash of an id that is not a safe name. */
export function buildNamespace(buildId: string, hash: (text: string) => string): string {
  return SAFE_NAME.test(buildId) && buildId.length <= 100 ? BUILD_PREFIX + buildId : BUILD_PREFIX + hash(buildId);
}

const HASH = /^[0-9a-f]{16}$/;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

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
    const entries = path.dirname(this.entriesDir());
    return [path.dirname(this.appDir), this.appDir, entries, this.entriesDir(), this.imagesRoot, this.tagsDir, this.invalidationsDir, this.membersDir, this.writersDir, this.buildsDir, this.locksDir];
  }

  get marker(): string {
    return path.join(this.root, MARKER_FILE);
  }

  entriesDir(namespace: string = SHARED_NAMESPACE): string {
    return this.inside(this.appDir, 'entries', safeName(namespace));
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

  /** `builds/<namespace>`: rewritten by every process serving that build (what `gc --keep-builds` orders by). */
  get buildsDir(): string {
    return this.inside(this.appDir, 'builds');
  }
  buildMarker(namespace: string): string {
    return path.join(this.buildsDir, safeName(namespace));
  }
  /** `seeded/<namespace>`: written once a build's prerendered pages were seeded. */
  seededMarker(namespace: string): string {
    return path.join(this.inside(this.appDir, 'seeded'), safeName(namespace));
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
  get invalidationsDir(): string {
    return path.join(this.tagsDir, 'inval');
  }
  get membersDir(): string {
    return path.join(this.tagsDir, 'members');
  }
  get membersSnapshot(): string {
    return path.join(this.tagsDir, 'members.snapshot');
  }
  segmentPath(dir: string, writer: string, generation: number): string {
    return path.join(dir, segmentName(writer, generation));
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

  /** Two levels of 256 directories: 10 million entries put ~150 files in each. */
  shardDir(base: string, hash: string): string {
    if (!HASH.test(hash)) throw new Error(`next-volume-cache: not a key hash: ${JSON.stringify(hash)}`);
    return path.join(base, hash.slice(0, 2), hash.slice(2, 4));
  }

  /** Joins and refuses any result outside `base`: the last line of defence against path escapes. */
  private inside(base: string, ...parts: string[]): string {
    const joined = path.resolve(base, ...parts);
    if (joined !== base && !joined.startsWith(base + path.sep)) {
      throw new Error(`next-volume-cache: refusing a path outside the cache root: ${joined}`);
    }
    return joined;
  }
}

export function safeName(name: string): string {
  if (!SAFE_NAME.test(name)) throw new Error(`next-volume-cache: unsafe name ${JSON.stringify(name)}`);
  return name;
}

export function segmentName(writer: string, generation: number): string {
  return `${safeName(writer)}.${String(generation).padStart(6, '0')}.log`;
}

/** Parses `<writer>.<gen>.log`; anything else is not a segment we wrote. */
export function parseSegmentName(name: string): { writer: string; generation: number } | undefined {
  const match = /^([A-Za-z0-9][A-Za-z0-9._-]*)\.(\d{6,})\.log$/.exec(name);
  if (!match) return undefined;
  return { writer: match[1]!, generation: Number(match[2]) };
}

/** A unique temp name beside `target`, in the same directory so that rename stays atomic. */
export function tempPathFor(target: string, writer: string): string {
  const random = Math.random().toString(36).slice(2, 10);
  return path.join(path.dirname(target), `${TEMP_PREFIX}${path.basename(target)}.${writer}.${random}`);
}
