import { mkdtempSync, readdirSync, lstatSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { resolveOptions, type CacheOptions } from '../lib/config';
import { bindHandler } from '../lib/next/handler';
import type { NextCacheHandler } from '../lib/next/types';
import { Runtime } from '../lib/runtime';
import { nodeFs, type VolumeFs } from '../lib/store/fs';
import { loadHasher } from '../lib/store/hash';

export const REPO = path.resolve(__dirname, '..');
export const DIST = path.join(REPO, 'dist');

export function tempDir(prefix = 'nvc-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface TestCache {
  handler: NextCacheHandler;
  runtime: Runtime;
  root: string;
}

/** A handler on its own runtime (not the process-wide registry), optionally over a fault-injecting fs. */
export async function openCache(options: CacheOptions & { dir: string }, fs: VolumeFs = nodeFs, createParents = true): Promise<TestCache> {
  await loadHasher();
  const resolved = resolveOptions({ logLevel: 'silent', ...options }, {});
  const runtime = new Runtime({ ...resolved, dir: options.dir }, createParents, fs);
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
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...prefixArgs, path.resolve(REPO, 'test', 'children', script), ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
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
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
