import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DIST, outputOf, REPO, walk, type ChildResult } from './helpers';
import { forOtherUsers, stagedCheckout } from './other-user';

/**
 * Tools for tests that run the library the way a deployment does: the built
 * CLI and handlers in child processes, under a chosen uid and umask, against
 * a real folder. Everything here goes through the package's public surface
 * (dist/bin/cli.js, createCacheHandler, createUseCacheHandler), so the same
 * tests run against any version of the library.
 */

export const CLI_JS = path.join(DIST, 'bin', 'cli.js');

/** The uid (and group) of `nobody`, present on Debian: a pod user that is not root. */
export const NOBODY = 65534;

export interface RunAs {
  /** Run as this uid and gid (setpriv, needs root); default: this process's. */
  uid?: number;
  /** Run under this umask (octal string, e.g. "077"). */
  umask?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs `node <args>` as a child, under `runAs`; resolves when it exits (never rejects on a non-zero exit). */
export function runNode(args: string[], runAs: RunAs = {}): Promise<ChildResult> {
  const asOther = runAs.uid !== undefined;
  // Another user may not be able to enter the checkout's folder: the checkout's files come from a world-readable copy.
  let command = [process.execPath, ...(asOther ? args.map((arg) => (path.isAbsolute(arg) ? forOtherUsers(arg) : arg)) : args)];
  if (runAs.umask !== undefined) command = ['sh', '-c', `umask ${runAs.umask} && exec "$@"`, 'sh', ...command];
  if (asOther) command = ['setpriv', `--reuid=${runAs.uid}`, `--regid=${runAs.uid}`, '--clear-groups', ...command];
  return outputOf(spawn(command[0]!, command.slice(1), { env: { ...process.env, ...runAs.env }, stdio: ['ignore', 'pipe', 'pipe'], ...(asOther ? { cwd: stagedCheckout() } : {}) }));
}

/** The built CLI in a child process (what a CronJob or a startupProbe runs). */
export function runCli(args: string[], runAs: RunAs = {}): Promise<ChildResult> {
  return runNode([CLI_JS, ...args], runAs);
}

/** A CLI run with --json that must exit with `expected`; its parsed document. */
export async function cliJson<T = Record<string, unknown>>(args: string[], expected = 0, runAs: RunAs = {}): Promise<T> {
  const result = await runCli(['--json', ...args], runAs);
  if (result.code !== expected) throw new Error(`next-volume-cache ${args.join(' ')} exited ${result.code} (expected ${expected}): ${result.stderr}${result.stdout}`);
  return JSON.parse(result.stdout) as T;
}

export type FillOp =
  | { op: 'page' | 'fetch'; key: string; serverDistDir?: string; tags?: string[] }
  | { op: 'image'; key: string; serverDistDir?: string; bytes?: number }
  | { op: 'useCache'; key: string; tags?: string[] }
  | { op: 'revalidate'; tags: string[] }
  | { op: 'get'; key: string; serverDistDir?: string; kind: string }
  | { op: 'waitFile'; file: string }
  | { op: 'waitMemberLines'; lines: number };

/** Runs test/children/fill-volume.js: the ops through the public handlers, in one process; their results. */
export async function fill(dir: string, ops: FillOp[], options: Record<string, unknown> = {}, runAs: RunAs = {}): Promise<unknown[]> {
  const result = await runNode([path.join(REPO, 'test', 'children', 'fill-volume.js'), JSON.stringify({ dir, options, ops })], runAs);
  if (result.code !== 0) throw new Error(`fill-volume exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as unknown[];
}

/**
 * Next 16.3.8+'s cache key of an App Router page: `/route-cache/<KIND>/<sha256 of its source
 * route>/$<path>`, `/` as `$/index` (e.g. `/blog/a` of `app/blog/[slug]/page`: the sha256 of
 * `/blog/[slug]/page`). The source route defaults to the path's own page.
 */
export function pageKey(pagePath: string, sourceRoute = `${pagePath === '/' ? '' : pagePath}/page`, kind = 'APP_PAGE'): string {
  return `/route-cache/${kind}/${createHash('sha256').update(sourceRoute).digest('hex')}/$${pagePath === '/' ? '/index' : pagePath}`;
}

export interface FakeBuild {
  nextDir: string;
  /** What Next passes to the handler as `serverDistDir`: the BUILD_ID is read beside it. */
  serverDistDir: string;
  buildId: string;
  /** The prerendered pages' cache keys, by route. */
  keys: Record<string, string>;
}

/**
 * A `.next` folder shaped like `next build`'s output, with only what the
 * library reads: BUILD_ID, prerender-manifest.json and, per prerendered
 * route, `server/app/<route>.meta` (its `routeCache.key`), `.html` and `.rsc`.
 */
export function fakeBuild(parent: string, buildId: string, routes: string[] = []): FakeBuild {
  const nextDir = path.join(parent, `next-${buildId}`, '.next');
  const app = path.join(nextDir, 'server', 'app');
  mkdirSync(app, { recursive: true });
  writeFileSync(path.join(nextDir, 'BUILD_ID'), buildId);
  const keys: Record<string, string> = {};
  const manifest: Record<string, object> = {};
  for (const route of routes) {
    const stem = path.join(app, route === '/' ? 'index' : route.slice(1));
    mkdirSync(path.dirname(stem), { recursive: true });
    keys[route] = pageKey(route);
    manifest[route] = { initialRevalidateSeconds: 60, initialExpireSeconds: 3600, srcRoute: route };
    const meta = { headers: { 'x-next-cache-tags': `_N_T_/layout,_N_T_${route}` }, routeCache: { key: keys[route], owner: { kind: 'APP_PAGE' } } };
    writeFileSync(`${stem}.meta`, JSON.stringify(meta));
    writeFileSync(`${stem}.html`, `<p>prerendered ${route}</p>`);
    writeFileSync(`${stem}.rsc`, `rsc ${route}`);
  }
  writeFileSync(path.join(nextDir, 'prerender-manifest.json'), JSON.stringify({ version: 4, routes: manifest }));
  return { nextDir, serverDistDir: path.join(nextDir, 'server'), buildId, keys };
}

/** The files under `dir` whose path contains every one of `parts` (e.g. "/entries/shared/", ".entry"). */
export function filesWith(dir: string, ...parts: string[]): string[] {
  return walk(dir).filter((p) => parts.every((part) => p.includes(part)) && !lstatSync(p).isDirectory());
}

export interface TreeState {
  type: string;
  mode: number;
  uid: number;
  mtimeMs: number;
  /** Changes with any write to the inode (content, mode, owner, times, links): reads leave it alone. */
  ctimeMs: number;
  size: number;
  /** sha256 of a file's bytes; of a folder, its sorted names (what the walk lists). */
  digest: string;
}

/** Every path under `dir` (and `dir` itself) with its type, mode, owner, times and content digest. */
export function treeState(dir: string): Map<string, TreeState> {
  const state = new Map<string, TreeState>();
  for (const file of [dir, ...walk(dir)]) {
    const stats = lstatSync(file);
    const type = stats.isDirectory() ? 'dir' : stats.isSymbolicLink() ? 'link' : stats.isFile() ? 'file' : 'other';
    const content = type === 'file' ? readFileSync(file) : type === 'dir' ? Buffer.from(readdirSync(file).sort().join('\n')) : Buffer.alloc(0);
    state.set(path.relative(dir, file) || '.', { type, mode: stats.mode, uid: stats.uid, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, size: stats.size, digest: createHash('sha256').update(content).digest('hex') });
  }
  return state;
}
