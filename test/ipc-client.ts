import type { ChildProcess } from 'node:child_process';

/**
 * Calls into a child process over IPC: `{id, op, ...args}` out, `{id, result}` or `{id, error}`
 * back (the protocol of test/children/agent.js and hostile-replica.js). A call waiting on a child
 * that ended, or made after, fails with how it ended instead of hanging until the test times out.
 */
export class IpcClient {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Set once the child has ended: no reply can come any more. */
  private ended: Error | undefined;

  constructor(
    readonly child: ChildProcess,
    private readonly label: string,
  ) {
    child.on('message', (msg: { id?: number; result?: unknown; error?: string }) => {
      if (msg.id === undefined) return;
      const waiter = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error !== undefined) waiter?.reject(new Error(msg.error));
      else waiter?.resolve(msg.result);
    });
    if (child.exitCode !== null || child.signalCode !== null) this.end(child.exitCode, child.signalCode);
    else child.once('exit', (code, signal) => this.end(code, signal));
  }

  /** Resolves with a client once the child's first message (its "ready") arrives; rejects if it ends first. */
  static started(child: ChildProcess, label: string): Promise<IpcClient> {
    return new Promise((resolve, reject) => {
      child.once('message', () => resolve(new IpcClient(child, label)));
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`${label} exited early with ${code}`)));
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

  private end(code: number | null, signal: NodeJS.Signals | null): void {
    this.ended = new Error(`${this.label} ended (${signal ?? `exit code ${code}`})`);
    for (const waiter of this.pending.values()) waiter.reject(this.ended);
    this.pending.clear();
  }
}
