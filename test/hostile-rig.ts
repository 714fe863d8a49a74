/**
 * The hostile volume's tools: replicas and CLI runs in child processes (the library loaded from
 * NVC_DIST, default this repository's dist, so the same test can be pointed at another build),
 * peak RSS read from /proc, digests of folders that must stay byte-for-byte unchanged, files forged
 * with the library's own public codec, and bait: files named like the library's own, planted where
 * a library that leaves its root would touch them.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { chownSync, cpSync, existsSync, lstatSync, lutimesSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { REPO } from './helpers';
import { IpcClient } from './ipc-client';
import { forOtherUsers, stagedCheckout } from './other-user';

export const DIST = process.env.NVC_DIST ? path.resolve(process.env.NVC_DIST) : path.join(REPO, 'dist');
const load = createRequire(__filename);
const { digest, changes } = load('./children/tree-digest.js') as { digest: (paths: string[]) => string; changes: (before: string, after: string) => string[] };
export { digest, changes };

/** The library's public codec and hashes, from the build under test. */
interface Codec {
  encodeEntry(record: { key: string; kind: string; writtenAt: number; cacheControl?: object; tags: string[]; value: unknown }): Buffer[];
  decodeEntryHeader(head: Buffer): { ok: boolean; header?: { key: string; kind: string; tags: string[] } };
}
interface Hashes {
  loadHasher(): Promise<void>;
  hashKey(key: string): string;
  contentHash(bytes: Uint8Array): string;
  lineChecksum(text: string): string;
  checksum(parts: Buffer[]): Buffer;
}
export const codec = load(path.join(DIST, 'lib/store/codec.js')) as Codec;
export const hashes = load(path.join(DIST, 'lib/store/hash.js')) as Hashes;

/** The replicas' request deadline; gets must answer within a generous multiple of it. */
export const TIMEOUT_MS = 1000;
export const GET_DEADLINE_MS = 4 * TIMEOUT_MS + 1000;
/** Peak RSS any child may reach (the unbounded code took GiBs). */
export const PEAK_RSS_MIB = 300;
/** How long a child may take to exit by itself once its work is done. */
const EXIT_DEADLINE_MS = 10_000;
export const DAY_MS = 24 * 3_600_000;

/** Runs a child as another user (root only): setpriv in front of node, same pid. */
export interface RunAs {
  uid: number;
  gid: number;
}

const children = new Set<ChildProcess>();
/** Kills what a failed test left running. */
export function killChildren(): void {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
}

function forkChild(script: string, args: string[], env: NodeJS.ProcessEnv, as?: RunAs): ChildProcess {
  const setpriv = as ? { execPath: 'setpriv', execArgv: [`--reuid=${as.uid}`, `--regid=${as.gid}`, '--clear-groups', process.execPath] } : { execArgv: [] };
  // Another user may not be able to enter the checkout's folder: it runs from a world-readable copy.
  const from = (file: string) => (as ? forOtherUsers(file) : file);
  const child = fork(from(path.join(REPO, 'test', 'children', script)), args, { env: { ...process.env, NVC_DIST: from(DIST), ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...(as ? { cwd: stagedCheckout() } : {}), ...setpriv });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Waits for a child to exit by itself; false (and killed) if it does not within the deadline. */
function exitOf(child: ChildProcess): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(false);
    }, EXIT_DEADLINE_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** VmHWM (peak resident set) of a live process, in MiB, from /proc/<pid>/status. */
export function peakRssMiB(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match ? Number(match[1]) / 1024 : NaN;
}

export type Kind = 'page' | 'fetch' | 'image';
export interface Got {
  ms: number;
  marker: string | null;
}

/** The real handler in its own process (one per root and app), driven over IPC. */
export class Replica {
  private constructor(private readonly ipc: IpcClient) {}

  private get child(): ChildProcess {
    return this.ipc.child;
  }

  static start(options: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = {}, as?: RunAs): Promise<Replica> {
    const child = forkChild('hostile-replica.js', [JSON.stringify({ tagRefreshMs: 100, timeoutMs: TIMEOUT_MS, logLevel: 'silent', ...options })], env, as);
    return IpcClient.started(child, 'replica').then((ipc) => new Replica(ipc));
  }

  private call<T>(op: string, args: Record<string, unknown>): Promise<T> {
    return this.ipc.call<T>(op, args);
  }

  set(dir: string, app: string, key: string, marker: string, tags: string[] = [], kind: Kind = 'page'): Promise<{ ms: number }> {
    return this.call('set', { dir, app, key, marker, tags, kind });
  }
  get(dir: string, app: string, key: string, kind: Kind = 'page', tags: string[] = []): Promise<Got> {
    return this.call('get', { dir, app, key, kind, tags });
  }
  revalidate(dir: string, app: string, tags: string[]): Promise<{ ms: number; ok: boolean; error?: string }> {
    return this.call('revalidate', { dir, app, tags });
  }
  peakRssMiB(): number {
    return peakRssMiB(this.child.pid!);
  }
  /** Tells it its work is done; resolves whether it then exited by itself. */
  finish(): Promise<boolean> {
    if (this.child.connected) this.child.send({ op: 'done' });
    return exitOf(this.child);
  }
}

export interface CommandResult {
  argv: string[];
  code: number;
  ms: number;
  out: string;
  err: string;
  /** 'unchanged', or the digest of the watched paths after the command. */
  watched: string;
}

export interface CommandsRun {
  results: CommandResult[];
  /** The digest of the watched paths before the first command. */
  before: string;
  peakRssMiB: number;
  /** The command that did not return before the deadline, if one did not. */
  hung: string[] | undefined;
  /** Whether the process exited by itself once its work was done. */
  exited: boolean;
}

/** Runs CLI commands one after the other in one child process, digesting `watch` after each. */
export function runCommands(commands: string[][], watch: string[], options: { env?: NodeJS.ProcessEnv; as?: RunAs; deadlineMs?: number } = {}): Promise<CommandsRun> {
  const child = forkChild('hostile-cli.js', [], options.env ?? {}, options.as);
  const run: CommandsRun = { results: [], before: '', peakRssMiB: NaN, hung: undefined, exited: false };
  let current: string[] | undefined;
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      run.hung = current ?? ['(never started)'];
      child.kill('SIGKILL');
    }, options.deadlineMs ?? 45_000);
    child.on('message', (msg: { ready?: boolean; started?: string[]; result?: CommandResult; done?: boolean; before?: string; peakRssKiB?: number }) => {
      if (msg.ready) child.send({ commands, watch });
      if (msg.started) current = msg.started;
      if (msg.result) run.results.push(msg.result);
      if (msg.done) {
        clearTimeout(deadline);
        run.before = msg.before ?? '';
        run.peakRssMiB = (msg.peakRssKiB ?? NaN) / 1024;
        void exitOf(child).then((exited) => resolve({ ...run, exited }));
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (run.exited || run.before) return;
      // Killed at the deadline, or crashed: either way its work did not finish.
      clearTimeout(deadline);
      run.hung ??= [`(the CLI process died: ${code ?? signal}) during`, ...(current ?? [])];
      resolve(run);
    });
  });
}

/** The commands every case runs on an app, in an order where each still finds something to do. */
export function everyCommand(dir: string, app: string, key: string): string[][] {
  const on = ['--dir', dir, '--app', app];
  return [
    ['stats', ...on],
    ['check', ...on],
    ['inspect', key, ...on],
    ['verify', ...on],
    ['gc', ...on],
    ['gc', '--keep-builds', '1', ...on],
    ['compact', ...on],
    ['purge', '--tag', 'tv', ...on],
    ['purge', '--path', '/a', '--scan', ...on],
    ['purge', '--key', key, ...on],
    ['verify', '--repair', ...on],
    ['purge', '--older-than', '0', '--yes', ...on],
    ['purge', '--all', '--yes', ...on],
  ];
}

// ---- the volume's layout, as the README documents it -------------------------------------------

export const appDir = (root: string, app: string): string => path.join(root, 'apps', app);
export function shardOf(root: string, app: string, area: 'entries' | 'images', key: string, namespace = 'shared'): string {
  const hash = hashes.hashKey(key);
  return path.join(appDir(root, app), area, namespace, hash.slice(0, 2), hash.slice(2, 4));
}
export const entryPath = (root: string, app: string, key: string, namespace = 'shared'): string => path.join(shardOf(root, app, 'entries', key, namespace), `${hashes.hashKey(key)}.entry`);
export const sidecarPath = (root: string, app: string, key: string, namespace = 'shared'): string => path.join(shardOf(root, app, 'images', key, namespace), `${hashes.hashKey(key)}.json`);

/** The raw file a sidecar names. */
export function rawPathOf(sidecar: string): string {
  return path.join(path.dirname(sidecar), (JSON.parse(readFileSync(sidecar, 'utf8')) as { file: string }).file);
}

/** A key whose first shard level differs from every given key's (so a planted shard hits only it). */
export function keyApartFrom(prefix: string, others: string[]): string {
  const taken = new Set(others.map((k) => hashes.hashKey(k).slice(0, 2)));
  for (let i = 0; ; i++) if (!taken.has(hashes.hashKey(`${prefix}-${i}`).slice(0, 2))) return `${prefix}-${i}`;
}

// ---- forging with the public codec ---------------------------------------------------------------

/** A value of each kind carrying `marker`, shaped as the replica stores them. */
function valueOf(kind: string, marker: string, tags: string[]): unknown {
  if (kind === 'FETCH') return { kind: 'FETCH', data: { headers: {}, body: marker, url: 'http://x/', status: 200 }, revalidate: 3600, tags };
  return { kind: 'APP_PAGE', html: `<p>${marker}</p>`, rscData: Buffer.from(marker), segmentData: new Map([['/_tree', Buffer.from(marker)]]), headers: { 'x-next-cache-tags': tags.join(',') }, status: 200 };
}

/** A valid entry file (checksum and all, no seal) for `key`, as anyone with the public codec can write one. */
export function forgedEntry(key: string, marker: string, options: { kind?: string; tags?: string[]; writtenAt?: number } = {}): Buffer {
  const kind = options.kind ?? 'APP_PAGE';
  const tags = options.tags ?? [];
  return Buffer.concat(codec.encodeEntry({ key, kind, writtenAt: options.writtenAt ?? Date.now(), cacheControl: { revalidate: 3600, expire: 86400 }, tags, value: valueOf(kind, marker, tags) }));
}

export function writeFileIn(file: string, bytes: Buffer | string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, bytes);
}

/** A forged image pair (sidecar + raw file) for `key` in `dir`; returns the raw file's name. */
export function forgeImage(dir: string, key: string, bytes: Buffer, overrides: Record<string, unknown> = {}): string {
  const hash = hashes.hashKey(key);
  const checksum = hashes.contentHash(bytes);
  const file = `${hash}.${checksum}.png`;
  writeFileIn(path.join(dir, file), bytes);
  const sidecar = { v: 1, key, etag: 'e', upstreamEtag: 'u', extension: 'png', revalidate: 3600, lastModified: Date.now(), size: bytes.length, contentType: 'image/png', file, checksum, ...overrides };
  writeFileIn(path.join(dir, `${hash}.json`), JSON.stringify(sidecar) + '\n');
  return file;
}

/** A log line in the library's public line format (xxh32 checksum, no seal). */
export function logLine(body: object): string {
  const text = JSON.stringify(body);
  return `${hashes.lineChecksum(text)} ${text}\n`;
}

// ---- bait and links --------------------------------------------------------------------------------

/** Sets a file's (or a link's own) times to `ms`. */
export function age(file: string, ms: number): void {
  const when = new Date(ms);
  if (lstatSync(file).isSymbolicLink()) lutimesSync(file, when, when);
  else utimesSync(file, when, when);
}

/**
 * Files named like the library's own, each of a kind some command deletes or moves when it finds
 * it in the store (old temp files, corrupt entries, orphan images, broken sidecars, strangers),
 * two days old; and every entry or image already there rewritten to carry the marker OUTSIDE, so
 * a get that read through a link would show it.
 */
export function bait(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const file of walkFiles(dir)) {
    if (file.endsWith('.entry')) rewriteEntry(file);
    else if (/[0-9a-f]{16}\.json$/.test(file)) {
      const sidecar = JSON.parse(readFileSync(file, 'utf8')) as { key: string; file: string };
      rmSync(path.join(path.dirname(file), sidecar.file), { force: true });
      forgeImage(path.dirname(file), sidecar.key, Buffer.from('OUTSIDE'));
    }
  }
  const old = Date.now() - 2 * DAY_MS;
  const planted: Array<[string, Buffer | string]> = [
    ['.tmp.0123456789abcdef.entry.gone-writer.0a1b2c', 'half'],
    ['0123456789abcdef.entry', 'not an entry'],
    ['fedcba9876543210.entry', forgedEntry('bait-expired', 'OUTSIDE', { writtenAt: old - 30 * DAY_MS })],
    ['0123456789abcdef.fedcba9876543210.png', 'orphan image'],
    ['1123456789abcdef.json', '{"broken": true}'],
    ['notes.txt', 'someone left this'],
    ['head', 'bait head\n'],
    ['snapshot', 'bait snapshot\n'],
    ['bait-writer.000001.log', logLine({ v: 1, tags: ['tb'], s: Date.now(), e: Date.now() })],
    ['next-volume-cache.json', '{"format":1}\n'],
  ];
  for (const [name, content] of planted) {
    writeFileSync(path.join(dir, name), content);
    age(path.join(dir, name), old);
  }
  age(dir, old);
}

function rewriteEntry(file: string): void {
  const parsed = codec.decodeEntryHeader(readFileSync(file));
  if (!parsed.ok || !parsed.header) return;
  const { key, kind, tags } = parsed.header;
  writeFileSync(file, forgedEntry(key, 'OUTSIDE', { kind: kind === 'FETCH' ? 'FETCH' : 'APP_PAGE', tags }));
}

function walkFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    const stats = lstatSync(full);
    if (stats.isDirectory()) out.push(...walkFiles(full));
    else if (stats.isFile()) out.push(full);
  }
  return out;
}

/**
 * Replaces `inside` (a folder or a file, present or not) with a symlink to a new folder under
 * `outside`: what was there is copied out first (then baited), so the link leads to files
 * named and shaped like the library's own. Returns the link's target.
 */
export function linkOut(inside: string, outside: string, name: string): string {
  const target = path.join(outside, name);
  mkdirSync(target, { recursive: true });
  const stats = existsSync(inside) ? lstatSync(inside) : undefined;
  let linkTo = target;
  if (stats?.isDirectory()) cpSync(inside, target, { recursive: true });
  else if (stats?.isFile()) {
    linkTo = path.join(target, path.basename(inside));
    cpSync(inside, linkTo);
  }
  bait(target);
  rmSync(inside, { recursive: true, force: true });
  mkdirSync(path.dirname(inside), { recursive: true });
  symlinkSync(linkTo, inside);
  return target;
}

/** Creates a FIFO (replacing whatever is there), `ageMs` old. */
export function fifoAt(file: string, ageMs = 0): void {
  rmSync(file, { recursive: true, force: true });
  mkdirSync(path.dirname(file), { recursive: true });
  execFileSync('mkfifo', [file]);
  if (ageMs) age(file, Date.now() - ageMs);
}

/** A sparse file of `size` bytes whose first bytes are `head` (and `tail` at its very end). */
export function sparseFile(file: string, size: number, head: Buffer = Buffer.alloc(0), tail: Buffer = Buffer.alloc(0)): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, head);
  execFileSync('truncate', ['-s', String(size - tail.length), file]);
  if (tail.length) writeFileSync(file, tail, { flag: 'a' });
}

/** Writes a file as another user (setpriv), mode 0600, then moves it into place (root only). */
export function fileOfOtherUser(staging: string, dest: string, content: Buffer | string, uid: number): void {
  const staged = path.join(staging, path.basename(dest));
  execFileSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'sh', '-c', 'umask 077; cat > "$1"', 'sh', staged], { input: content });
  mkdirSync(path.dirname(dest), { recursive: true });
  renameSync(staged, dest);
}

/** Gives a whole tree to a user (for a replica that runs as that user). */
export function chownTree(top: string, as: RunAs): void {
  chownSync(top, as.uid, as.gid);
  if (!statSync(top).isDirectory()) return;
  for (const name of readdirSync(top)) {
    const full = path.join(top, name);
    if (lstatSync(full).isDirectory()) chownTree(full, as);
    else if (!lstatSync(full).isSymbolicLink()) chownSync(full, as.uid, as.gid);
  }
}

/**
 * An entry file made by hand in the documented format ("NVC" 1 | header length u32 | file length
 * u64 | header JSON | parts | xxh64), from any header, with a correct checksum: what a forger or an
 * older writer could put there. `declaredLength` overrides the file length in the prefix.
 */
export function handMadeEntry(header: object, body: Buffer = Buffer.alloc(0), declaredLength?: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(16);
  prefix.write('NVC', 0, 'latin1');
  prefix.writeUInt8(1, 3);
  prefix.writeUInt32LE(json.length, 4);
  prefix.writeBigUInt64LE(BigInt(declaredLength ?? 16 + json.length + body.length + 8), 8);
  const checksum = hashes.checksum([prefix, json, body]);
  return Buffer.concat([prefix, json, body, checksum]);
}
