/**
 * Bounds the request path's filesystem work in time and in concurrency.
 *
 * A hung NFS mount never returns from a syscall, and a libuv thread blocked
 * in one stays blocked after we stop waiting. So each sequence gets a
 * deadline, and a sequence that missed it keeps its slot until the call
 * really returns. When every slot is held by such a stuck call the gate
 * refuses at once ("saturated"): the caller answers a miss instead of queueing
 * behind a dead mount, and libuv keeps threads for everything else.
 */
export type GateFailure = 'timeout' | 'saturated';

export class GateError extends Error {
  constructor(readonly reason: GateFailure) {
    super(reason === 'timeout' ? 'filesystem call timed out' : 'every filesystem slot is held by a hung call');
    this.name = 'GateError';
  }
}

export class FsGate {
  private active = 0;
  private stuck = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    readonly limit: number,
    readonly timeoutMs: number,
  ) {}

  get stuckCalls(): number {
    return this.stuck;
  }

  get activeCalls(): number {
    return this.active;
  }

  /**
   * Runs `task` in a slot, within the deadline. The task may `hold` work that
   * need not delay its caller (closing a file it has read): the caller gets
   * the value at once, and the slot is released only once that work is done
   * too, so a close that hangs on a dead mount is still counted as stuck.
   */
  async run<T>(task: (hold: (work: Promise<unknown>) => void) => Promise<T>, timeoutMs: number = this.timeoutMs): Promise<T> {
    if (this.stuck >= this.limit) throw new GateError('saturated');
    const deadline = performance.now() + timeoutMs;
    await this.acquire(deadline);
    const remaining = Math.max(0, deadline - performance.now());
    const held: Array<Promise<unknown>> = [];
    return new Promise<T>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        this.stuck++;
        reject(new GateError('timeout'));
      }, remaining);
      timer.unref();
      const release = (): void => {
        if (timedOut) this.stuck--;
        else clearTimeout(timer);
        this.release();
      };
      const settle = (): void => {
        if (held.length === 0) release();
        else void Promise.allSettled(held).then(release);
      };
      task((work) => held.push(work)).then(
        (value) => {
          if (!timedOut) resolve(value);
          settle();
        },
        (error: unknown) => {
          if (!timedOut) reject(error);
          settle();
        },
      );
    });
  }

  private acquire(deadline: number): Promise<void> {
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.active++;
        resolve();
      };
      const timer = setTimeout(
        () => {
          const index = this.waiting.indexOf(wake);
          if (index >= 0) this.waiting.splice(index, 1);
          reject(new GateError('timeout'));
        },
        Math.max(0, deadline - performance.now()),
      );
      timer.unref();
      this.waiting.push(wake);
    });
  }

  private release(): void {
    this.active--;
    const next = this.waiting.shift();
    if (next) next();
  }
}
