import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO } from './helpers';
import { IpcClient } from './ipc-client';

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';

export interface AgentOptions {
  tagRefreshMs?: number;
  leaseTimeoutMs?: number;
  /** Shift this process's clock, e.g. '-60s' (libfaketime; file times stay the kernel's). */
  clockShift?: string;
}

/** A replica in a child process, driven over IPC. */
export class Agent {
  private constructor(private readonly ipc: IpcClient) {}

  private get child(): ChildProcess {
    return this.ipc.child;
  }

  static start(dir: string, options: AgentOptions = {}): Promise<Agent> {
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (options.clockShift) {
      env.LD_PRELOAD = LIBFAKETIME;
      env.FAKETIME = options.clockShift;
      env.FAKETIME_DONT_FAKE_MONOTONIC = '1';
    }
    const child = fork(path.join(REPO, 'test', 'children', 'agent.js'), [dir, String(options.tagRefreshMs ?? 100), String(options.leaseTimeoutMs ?? '')], {
      env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return IpcClient.started(child, 'agent').then((ipc) => new Agent(ipc));
  }

  call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    return this.ipc.call<T>(op, args);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill(signal);
    });
  }
}

export interface PageView {
  html: string;
  ageMs: number;
  cacheControl: { revalidate: number | false; expire?: number };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Coherence {
  reads: number;
  memoryHits: number;
  /** The longest time B served a version after the volume held a newer one (or none). */
  worstMs: number;
  worstCase: string;
  lastServed: string | null;
  lastPublished: string | null;
}

/**
 * A rewrites, invalidates and purges one key while B reads it in a loop; returns the longest time B
 * served a version older than the volume's. Reads are timed by when they started in B (an answer that
 * left B in time but arrived late on a busy machine was not served late); publications by when A's
 * call returned (B may see a version a little earlier: never counted against it).
 */
export async function measureCoherence(a: Agent, b: Agent, options: { purge: (key: string) => Promise<unknown>; settleMs: number; rounds?: number; pauseMs?: number }): Promise<Coherence> {
  const key = '/route-cache/APP_PAGE/coherence/$/loop';
  const published: Array<{ at: number; html: string | null }> = [];
  const publish = async (action: () => Promise<unknown>, html: string | null): Promise<void> => {
    await action();
    published.push({ at: Date.now(), html });
  };
  await publish(() => a.call('set', { key, marker: 'v0', tags: ['loop'] }), '<p>v0</p>');
  const seen: Array<{ at: number; html: string | null }> = [];
  let reading = true;
  const reader = (async () => {
    while (reading) {
      const got = await b.call<{ startedAt: number; html: string | null }>('timedGet', { key });
      seen.push({ at: got.startedAt, html: got.html });
    }
  })();
  for (let v = 1; v <= (options.rounds ?? 12); v++) {
    await sleep(options.pauseMs ?? 150);
    if (v % 4 === 0) await publish(() => a.call('revalidate', { tags: ['loop'] }), null);
    else if (v % 5 === 0) await publish(() => options.purge(key), null);
    else await publish(() => a.call('set', { key, marker: `v${v}`, tags: ['loop'] }), `<p>v${v}</p>`);
  }
  await sleep(options.settleMs);
  reading = false;
  await reader;
  let worstMs = 0;
  let worstCase = '';
  for (const read of seen) {
    const current = published.filter((p) => p.at <= read.at);
    const servedIndex = current.map((p) => p.html).lastIndexOf(read.html);
    // Not yet in the list: a version B saw before A's call returned (it is on the volume from its rename on).
    if (read.html === null || servedIndex < 0 || servedIndex === current.length - 1) continue;
    const superseded = current[servedIndex + 1]!;
    if (read.at - superseded.at > worstMs) {
      worstMs = read.at - superseded.at;
      worstCase = `${read.html} served ${worstMs} ms after ${superseded.html ?? 'an invalidation or purge'}`;
    }
  }
  const metrics = await b.call<{ memoryHits: number }>('metrics');
  return { reads: seen.length, memoryHits: metrics.memoryHits, worstMs, worstCase, lastServed: seen.at(-1)?.html ?? null, lastPublished: published.at(-1)!.html };
}
