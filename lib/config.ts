import path from 'node:path';
import { MIN_SECRET_LENGTH } from './store/integrity';
import type { LogFormat, LogLevel } from './util/log';
import { parseBytes } from './util/units';

/**
 * Every option has one name, used three ways: the factory option `<name>`,
 * the environment variable `NEXT_VOLUME_CACHE_<NAME>` (upper snake case) and
 * the CLI flag `--<name>` (kebab case). Values are validated here, without
 * any I/O, so a bad setting fails at start-up with one clear message while a
 * misbehaving volume only ever degrades the cache to misses.
 */
export interface CacheOptions {
  /** Absolute path of the cache root (the shared volume's mount point or a folder on it). */
  dir?: string;
  /** Namespace that separates several apps sharing one volume. */
  app?: string;
  /** Deadline, in ms, for one filesystem sequence on the request path (a get, a set, a tag refresh). */
  timeoutMs?: number;
  /** Filesystem sequences in flight at once; keep below libuv's thread-pool size. */
  concurrency?: number;
  /** fsync entry files before publishing them (durable across a server crash, slower). */
  fsync?: boolean;
  /** How often, at most, a process looks for new tag invalidations written by other processes. */
  tagRefreshMs?: number;
  /** A writer whose lease is older than this is considered gone by the compactor. */
  leaseTimeoutMs?: number;
  /** Minimum log level written to stderr. */
  logLevel?: LogLevel;
  /** "text" lines (default) or "json": one object per line (time, level, event, cause, message, keyHash, suppressed) for log pipelines. */
  logFormat?: LogFormat;
  /** A maintenance lock not refreshed for this long is taken over (its holder is presumed dead). */
  lockStaleMs?: number;
  /** Log the in-process counters (see getMetrics) every this many ms; 0 turns it off. */
  metricsLogMs?: number;
  /** Byte budget `gc` enforces for page and fetch entries (oldest first); bytes or "20GiB". */
  maxBytes?: number | string;
  /** Byte budget `gc` enforces for optimized images (least recently used first); bytes or "5GiB". */
  imageMaxBytes?: number | string;
  /** Fetch and unstable_cache entries: "shared" across builds (as Next does) or per "build". */
  fetchScope?: Scope;
  /** Optimized images: per "build" (a changed public/ image is re-optimized after a deploy) or "shared". */
  imageScope?: Scope;
  /**
   * Mode of the files written, as an octal string: "664" so that pods of one fsGroup under
   * different UIDs can all write. A number is refused: 664 and 0o664 are different numbers,
   * and which one was meant cannot be told.
   */
  fileMode?: string;
  /** Mode of the folders created, as an octal string: "2775" (setgid keeps the group). */
  dirMode?: string;
  /** Seed prerendered pages from the build on first start (one pod seeds, guarded by a lock). */
  seed?: boolean;
  /** Largest entry (or optimized image) read or written, in bytes or like "64MiB"; a larger file is a miss before any memory is reserved for it. */
  maxEntryBytes?: number | string;
  /** A time on the volume later than its now plus this (a writer's bad clock, a forged file) is not trusted. */
  maxClockSkewMs?: number;
  /**
   * A secret (at least 16 characters) that seals everything written, so that a file planted or moved by
   * anyone without it is a miss. Set it through NEXT_VOLUME_CACHE_SECRET rather than in code.
   */
  secret?: string;
  /** The secret being rotated out: still accepted when reading, never used to seal. */
  previousSecret?: string;
  /**
   * Bytes of decoded entries kept in each process's memory (hot pages served without touching the
   * volume); 0 turns it off. Default: the `cacheMaxMemorySize` Next passes (50 MB unless set).
   */
  memoryCacheBytes?: number | string;
  /**
   * How long a copy in memory is served before its file's identity is confirmed again (so another
   * pod's rewrite is seen within this); default: tagRefreshMs.
   */
  memoryTrustMs?: number;
  /**
   * One regeneration per staleness across the fleet: the pod that takes a stale entry's lease on the
   * volume regenerates it, the others serve it as fresh meanwhile. A lease held longer than this (its
   * holder died, or renders slower) is taken over. 0 turns leases off. Default: 5 × timeoutMs, at least 10 s.
   */
  regenerationLeaseMs?: number;
  /**
   * Opt-in: a miss for a key another pod is rendering waits up to this long for that render to land
   * before rendering itself (after a hard invalidation, one origin call instead of one per pod). 0: off.
   */
  coalesceMissesMs?: number;
}

export type Scope = 'shared' | 'build';

export type { LogFormat, LogLevel } from './util/log';

export interface ResolvedOptions {
  /** Undefined until a Next.js instance tells us its `serverDistDir` (see `resolveDir`). */
  dir: string | undefined;
  app: string;
  timeoutMs: number;
  concurrency: number;
  fsync: boolean;
  tagRefreshMs: number;
  leaseTimeoutMs: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  lockStaleMs: number;
  metricsLogMs: number;
  maxBytes: number | undefined;
  imageMaxBytes: number | undefined;
  fetchScope: Scope;
  imageScope: Scope;
  fileMode: number | undefined;
  dirMode: number | undefined;
  seed: boolean;
  maxEntryBytes: number;
  maxClockSkewMs: number;
  secret: string | undefined;
  previousSecret: string | undefined;
  /** Undefined: take Next's `maxMemoryCacheSize` (see next/handler.ts), else DEFAULT_MEMORY_CACHE_BYTES. */
  memoryCacheBytes: number | undefined;
  /** Undefined: tagRefreshMs. */
  memoryTrustMs: number | undefined;
  /** Undefined: max(10 s, 5 × timeoutMs). */
  regenerationLeaseMs: number | undefined;
  coalesceMissesMs: number;
}

/** Next's own default `cacheMaxMemorySize`, used until (or unless) Next passes one. */
export const DEFAULT_MEMORY_CACHE_BYTES = 50 * 1024 * 1024;

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    readonly detail: string,
  ) {
    super(`next-volume-cache: invalid setting ${setting}: ${detail}`);
    this.name = 'ConfigError';
  }
}

const ENV_PREFIX = 'NEXT_VOLUME_CACHE_';
const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'silent'];
const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

type OptionName = keyof CacheOptions;
type OptionKind = 'path' | 'name' | 'positiveInt' | 'nonNegativeInt' | 'bytes' | 'bytesOrZero' | 'boolean' | 'logLevel' | 'logFormat' | 'scope' | 'fileMode' | 'dirMode' | 'secret';

const OPTION_KINDS: Record<OptionName, OptionKind> = {
  dir: 'path',
  app: 'name',
  timeoutMs: 'positiveInt',
  concurrency: 'positiveInt',
  fsync: 'boolean',
  tagRefreshMs: 'positiveInt',
  leaseTimeoutMs: 'positiveInt',
  logLevel: 'logLevel',
  logFormat: 'logFormat',
  lockStaleMs: 'positiveInt',
  metricsLogMs: 'nonNegativeInt',
  maxBytes: 'bytes',
  imageMaxBytes: 'bytes',
  fetchScope: 'scope',
  imageScope: 'scope',
  fileMode: 'fileMode',
  dirMode: 'dirMode',
  seed: 'boolean',
  maxEntryBytes: 'bytes',
  maxClockSkewMs: 'positiveInt',
  secret: 'secret',
  previousSecret: 'secret',
  memoryCacheBytes: 'bytesOrZero',
  memoryTrustMs: 'positiveInt',
  regenerationLeaseMs: 'nonNegativeInt',
  coalesceMissesMs: 'nonNegativeInt',
};

export const OPTION_NAMES = Object.keys(OPTION_KINDS) as OptionName[];

/** `timeoutMs` -> `NEXT_VOLUME_CACHE_TIMEOUT_MS`. */
export function envNameOf(option: string): string {
  return ENV_PREFIX + option.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

/** `timeoutMs` -> `--timeout-ms`. */
export function flagNameOf(option: string): string {
  return '--' + option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function defaultConcurrency(): number {
  const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
  // One thread is left free so that a hung mount can never take every libuv
  // thread (dns.lookup, zlib and crypto share the same pool).
  return Math.max(1, pool - 1);
}

export function defaults(): ResolvedOptions {
  return {
    dir: undefined,
    app: 'default',
    timeoutMs: 2000,
    concurrency: defaultConcurrency(),
    fsync: false,
    tagRefreshMs: 1000,
    leaseTimeoutMs: 5 * 60_000,
    logLevel: 'warn',
    logFormat: 'text',
    lockStaleMs: 120_000,
    metricsLogMs: 0,
    maxBytes: undefined,
    imageMaxBytes: undefined,
    fetchScope: 'shared',
    imageScope: 'build',
    fileMode: undefined,
    dirMode: undefined,
    seed: false,
    maxEntryBytes: 64 * 1024 * 1024,
    maxClockSkewMs: 5 * 60_000,
    secret: undefined,
    previousSecret: undefined,
    memoryCacheBytes: undefined,
    memoryTrustMs: undefined,
    regenerationLeaseMs: undefined,
    coalesceMissesMs: 0,
  };
}

const APP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function parseValue(option: OptionName, setting: string, raw: unknown): unknown {
  switch (OPTION_KINDS[option]) {
    case 'path': {
      if (typeof raw !== 'string' || raw.length === 0) throw new ConfigError(setting, 'expected a non-empty path');
      if (raw.includes('\0')) throw new ConfigError(setting, 'the path contains a NUL byte');
      if (!path.isAbsolute(raw)) throw new ConfigError(setting, `expected an absolute path, got "${raw}"`);
      return path.resolve(raw);
    }
    case 'name': {
      if (typeof raw !== 'string' || !APP_NAME.test(raw)) {
        throw new ConfigError(setting, `expected 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit, got ${JSON.stringify(raw)}`);
      }
      return raw;
    }
    case 'positiveInt': {
      const n = typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) {
        throw new ConfigError(setting, `expected a positive whole number, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case 'nonNegativeInt': {
      const n = typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
        throw new ConfigError(setting, `expected a whole number >= 0, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case 'bytes':
    case 'bytesOrZero': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? parseBytes(raw) : undefined;
      const least = OPTION_KINDS[option] === 'bytesOrZero' ? 0 : 1;
      if (n === undefined || !Number.isSafeInteger(n) || n < least) {
        throw new ConfigError(setting, `expected a size in bytes or like 500MB or 20GiB, got ${JSON.stringify(raw)}`);
      }
      return n;
    }
    case 'scope': {
      if (raw !== 'shared' && raw !== 'build') throw new ConfigError(setting, `expected "shared" or "build", got ${JSON.stringify(raw)}`);
      return raw;
    }
    case 'fileMode':
    case 'dirMode':
      return parseMode(setting, raw, OPTION_KINDS[option] === 'dirMode');
    case 'secret': {
      if (typeof raw !== 'string' || raw.length < MIN_SECRET_LENGTH) throw new ConfigError(setting, `expected a secret of at least ${MIN_SECRET_LENGTH} characters`);
      return raw;
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new ConfigError(setting, `expected true or false, got ${JSON.stringify(raw)}`);
    }
    case 'logLevel': {
      if (typeof raw !== 'string' || !LOG_LEVELS.includes(raw as LogLevel)) {
        throw new ConfigError(setting, `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
      }
      return raw;
    }
    case 'logFormat': {
      if (typeof raw !== 'string' || !LOG_FORMATS.includes(raw as LogFormat)) {
        throw new ConfigError(setting, `expected one of ${LOG_FORMATS.join(', ')}, got ${JSON.stringify(raw)}`);
      }
      return raw;
    }
  }
}

/**
 * An octal mode given as a string ("664", "0664", "2775"). Numbers are
 * refused (664 and 0o664 differ, and which was meant cannot be told). Modes
 * that would make the cache unsafe are refused too: setuid, world-writable,
 * setgid or sticky on files, and modes that deny the owner what the library
 * needs (read and write; and search for folders).
 */
function parseMode(setting: string, raw: unknown, forFolders: boolean): number {
  const example = forFolders ? '"2775"' : '"664"';
  if (typeof raw === 'number') {
    throw new ConfigError(setting, `expected an octal mode as a string, like ${example}: the number ${raw} is ambiguous (664 and 0o664 are different numbers)`);
  }
  if (typeof raw !== 'string' || !/^(0o|0)?[0-7]{3,4}$/.test(raw)) throw new ConfigError(setting, `expected an octal mode like ${example}, got ${JSON.stringify(raw)}`);
  const mode = parseInt(raw.replace(/^0o/, ''), 8); // "2775", "02775" and "0o2775" alike, as chmod reads them
  if (mode & 0o4000) throw new ConfigError(setting, `refusing a setuid mode (${raw})`);
  if (mode & 0o002) throw new ConfigError(setting, `refusing a world-writable mode (${raw}): anyone on the machine could plant cache entries`);
  if (!forFolders && mode & 0o3000) throw new ConfigError(setting, `refusing setgid or sticky bits on files (${raw})`);
  const needed = forFolders ? 0o700 : 0o600;
  if ((mode & needed) !== needed) throw new ConfigError(setting, `${raw} denies the owner ${forFolders ? 'read, write or search' : 'read or write'}, which the cache needs`);
  return mode;
}

/** Options from `NEXT_VOLUME_CACHE_*`; an unknown variable with our prefix is a typo and an error. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): CacheOptions {
  const byEnvName = new Map(OPTION_NAMES.map((name) => [envNameOf(name), name]));
  const options: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    const option = byEnvName.get(name);
    if (!option) {
      throw new ConfigError(name, `unknown variable; known ones are ${[...byEnvName.keys()].join(', ')}`);
    }
    options[option] = parseValue(option, name, value);
  }
  return options;
}

/** Validates factory options (unknown keys are errors), then lays them over env and defaults. */
export function resolveOptions(options: CacheOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('options', 'expected an object');
  }
  const fromFactory: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(options)) {
    if (!Object.hasOwn(OPTION_KINDS, name)) {
      throw new ConfigError(name, `unknown option; known ones are ${OPTION_NAMES.join(', ')}`);
    }
    if (value === undefined) continue;
    fromFactory[name] = parseValue(name as OptionName, name, value);
  }
  return { ...defaults(), ...optionsFromEnv(env), ...fromFactory } as ResolvedOptions;
}

/**
 * The documented single-machine default: `.next/cache/next-volume-cache`
 * beside the build that loads the handler (Next passes `serverDistDir`,
 * which is `.next/server`), else under the working directory.
 */
export function defaultDir(serverDistDir: string | undefined): string {
  const nextDir = serverDistDir ? path.dirname(serverDistDir) : path.join(process.cwd(), '.next');
  return path.join(nextDir, 'cache', 'next-volume-cache');
}

/** The cache options among other fields (a maintenance call's own flags): resolveOptions refuses unknown names. */
export function pickCacheOptions(options: object): CacheOptions {
  const out: Record<string, unknown> = {};
  for (const name of OPTION_NAMES) {
    const value = (options as Record<string, unknown>)[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}
