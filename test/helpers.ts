import { mkdtempSync, readdirSync, lstatSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { resolveOptions, type CacheOptions } from '../lib/config';
import { bindHandler } from '../lib/next/handler';
import type { NextCacheHandler } from '../lib/next/types';
import { Runtime } from '../lib/service/runtime';
import { nodeFs, type VolumeFs } from '../lib/fs/syscalls';
import { loadHasher } from '../lib/store/hash';
import { ConfinedFs } from '../lib/fs/confined';
import { scanLines } from '../lib/tags/lines';

export const REPO = path.resolve(__dirname, '..');
export const DIST = path.join(REPO, 'dist');

const created: string[] = [];

/** A new folder in the system temp directory, removed after the test file (see test/setup.ts). */
export function tempDir(prefix = 'nvc-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Removes every folder tempDir made (called once per test file by test/setup.ts). */
export function removeTempDirs(): void {
  for (const dir of created.splice(0)) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

export interface TestCache {
  handler: NextCacheHandler;
  runtime: Runtime;
  root: string;
}

/** A handler on its own runtime (not the process-wide registry), optionally over a fault-injecting fs. */
export async function openCache(options: CacheOptions & { dir: string }, fs: VolumeFs = nodeFs, createParents = true): Promise<TestCache> {
  await loadHasher();
  // The memory tier is off unless a test turns it on: most tests are about what reaches the volume.
  const resolved = resolveOptions({ logLevel: 'silent', memoryCacheBytes: 0, ...options }, {});
  const runtime = new Runtime({ settings: { ...resolved, dir: options.dir }, createParents, fs });
  const Handler = bindHandler(() => runtime);
  return { handler: new Handler({}), runtime, root: options.dir };
}

/** Every path under `dir`, depth first (no symlink following). */
export function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    out.push(full);
    if (lstatSync(full).isDirectory()) out.push(...walk(full));
  }
  return out;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a Node script from test/children (or at an absolute path) with arguments; resolves when it exits. */
export function runChild(script: string, args: string[], env: NodeJS.ProcessEnv = {}, command = process.execPath, prefixArgs: string[] = []): Promise<ChildResult> {
  const child = spawn(command, [...prefixArgs, path.resolve(REPO, 'test', 'children', script), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return outputOf(child);
}

/** What a child spawned with piped stdout and stderr printed, and how it ended; listened for from its spawn. */
export function outputOf(child: ChildProcessByStdio<null, Readable, Readable>): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** The error code a promise rejects with; undefined if it resolves. */
export async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code;
  }
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Deterministic pseudo-random bytes (mulberry32), so a failing fuzz case can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(random: () => number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}

/**
 * Runs test/children/invalidator.js (unique tags, one printed per acknowledged revalidateTag) and
 * resolves with the acknowledged tags: only whole lines count, a line cut by a kill was not
 * acknowledged. With `killAfterMs` the child is SIGKILLed then, which is not a failure.
 */
export function runInvalidator(dir: string, ms: number, name: string, leaseMs: number, options: { killAfterMs?: number } = {}): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO, 'test/children/invalidator.js'), dir, String(ms), name, String(leaseMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const killer = options.killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
    child.on('error', reject);
    // 'close', not 'exit': 'exit' may come before the last acknowledged line is read.
    child.on('close', (code, signal) => {
      clearTimeout(killer);
      if (code === 0 || (signal === 'SIGKILL' && killer)) resolve(out.split('\n').slice(0, -1));
      else reject(new Error(`invalidator ${name} exited with ${code ?? signal}`));
    });
  });
}

/** Polls `condition` until it holds or `timeoutMs` passes; a background effect is awaited, not slept on. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, intervalMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return true;
}

/**
 * Asks `probe` until `accept` holds for its answer or `timeoutMs` passes, and returns the last answer for
 * the caller to assert on: another process's effect (a server's tag refresh) is awaited, not slept on.
 */
/**
 * Whether the runtime opened its volume within 15 s. On a loaded machine the first open may miss
 * its deadline (it is retried after 5 s), so tests that then count timeouts wait for it first.
 */
export function openedWithin15s(runtime: Runtime): Promise<boolean> {
  return pollUntil(
    () => runtime.ready(),
    (open) => open,
    15_000,
    250,
  );
}

export async function pollUntil<T>(probe: () => Promise<T>, accept: (answer: T) => boolean, timeoutMs = 10_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let answer = await probe();
  while (!accept(answer) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, intervalMs));
    answer = await probe();
  }
  return answer;
}

/** The records of a segment file as the library's reader sees them (complete lines only), and the lines it skipped. */
export async function readSegmentFile<T>(file: string, parse: (line: string) => T | undefined): Promise<{ records: T[]; skipped: number }> {
  const fs = new ConfinedFs(nodeFs, path.dirname(file), { writer: 'test', fsync: false, fileMode: undefined, dirMode: undefined });
  const records: T[] = [];
  let skipped = 0;
  const scan = await scanLines(fs, file, 0, (line) => {
    const record = parse(line);
    if (record === undefined) skipped++;
    else records.push(record);
  });
  return { records, skipped: skipped + scan.tooLong };
}
