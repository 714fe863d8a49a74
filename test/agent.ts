import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { REPO } from './helpers';

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';

export interface AgentOptions {
  tagRefreshMs?: number;
  leaseTimeoutMs?: number;
  /** Shift this process's clock, e.g. '-60s' (libfaketime; file times stay the kernel's). */
  clockShift?: string;
}

/** A replica in a child process, driven over IPC. */
export class Agent {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Set once the child has ended: no reply can come any more. */
  private ended: Error | undefined;
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (msg: { id?: number; result?: unknown; error?: string }) => {
      if (msg.id === undefined) return;
      const waiter = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error !== undefined) waiter?.reject(new Error(msg.error));
      else waiter?.resolve(msg.result);
    });
    // A call waiting on an agent that died fails with how it died instead of hanging until the test times out.
    if (child.exitCode !== null || child.signalCode !== null) this.end(child.exitCode, child.signalCode);
    else child.once('exit', (code, signal) => this.end(code, signal));
  }

  private end(code: number | null, signal: NodeJS.Signals | null): void {
    this.ended = new Error(`agent ended (${signal ?? `exit code ${code}`})`);
    for (const waiter of this.pending.values()) waiter.reject(this.ended);
    this.pending.clear();
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
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve(new Agent(child)));
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`agent exited early with ${code}`)));
    });
  }

  call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.ended) return Promise.reject(this.ended);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, op, ...args });
    });
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
