import type { VolumeFile, VolumeFs } from '../lib/fs/syscalls';
import { nodeFs } from '../lib/fs/syscalls';
import { readlinkSync } from 'node:fs';

/**
 * The library names files inside a checked folder through the folder's
 * descriptor (`/proc/self/fd/<n>/<name>`); rules and `opened` use the real
 * path it stands for, so tests can say "the inval folder".
 */
function realPathOf(p: string): string {
  const match = /^\/proc\/self\/fd\/(\d+)(\/.*)?$/.exec(p);
  if (!match) return p;
  try {
    return readlinkSync(`/proc/self/fd/${match[1]}`) + (match[2] ?? '');
  } catch {
    return p;
  }
}

/**
 * A VolumeFs that injects the faults no real filesystem produces on demand.
 * Each rule matches an operation and a path and says what to do instead.
 */
export type Operation = 'open' | 'read' | 'writev' | 'write' | 'sync' | 'close' | 'rename' | 'unlink' | 'mkdir' | 'readdir' | 'utimes';

export interface FaultRule {
  op: Operation;
  /** Substring or predicate on the path the operation concerns. */
  path?: string | ((p: string) => boolean);
  /** How many times the rule fires (default: forever). */
  times?: number;
  /** Throw an error with this code, or hang forever, or read at most `shortRead` bytes per call. */
  fault: { code: string } | { hang: true } | { shortRead: number };
}

export class FaultyFs implements VolumeFs {
  readonly rules: FaultRule[] = [];
  readonly counts = new Map<Operation, number>();
  /** The most bytes one read call was asked for (how large a buffer was filled at once). */
  largestReadAsked = 0;
  /** Every path opened, in order (as the library spelled it: a folder's handle path, then the name). */
  readonly opened: string[] = [];
  /** Promises that never settle, kept so a test can release them. */
  private readonly hung: Array<() => void> = [];
  /** Handles offer no /proc/self/fd path or location: a platform without /proc. */
  private procHidden = false;

  constructor(private readonly inner: VolumeFs = nodeFs) {}

  add(rule: FaultRule): this {
    this.rules.push(rule);
    return this;
  }

  /** From now on, behave like a platform without /proc/self/fd (the library falls back to lstat checks). */
  hideProc(): this {
    this.procHidden = true;
    return this;
  }

  releaseHung(): void {
    for (const release of this.hung.splice(0)) release();
  }

  private match(op: Operation, spelled: string): FaultRule['fault'] | undefined {
    this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
    const p = realPathOf(spelled);
    for (const rule of this.rules) {
      if (rule.op !== op) continue;
      if (rule.path !== undefined && !(typeof rule.path === 'string' ? p.includes(rule.path) : rule.path(p))) continue;
      if (rule.times !== undefined) {
        if (rule.times <= 0) continue;
        rule.times--;
      }
      return rule.fault;
    }
    return undefined;
  }

  private async apply<T>(op: Operation, p: string, run: () => Promise<T>): Promise<T> {
    const fault = this.match(op, p);
    if (fault && 'code' in fault) throw Object.assign(new Error(`${fault.code}: injected on ${op} ${p}`), { code: fault.code });
    if (fault && 'hang' in fault) {
      await new Promise<void>((resolve) => this.hung.push(resolve));
    }
    return run();
  }

  async open(p: string, flags: number, mode?: number): Promise<VolumeFile> {
    this.opened.push(realPathOf(p));
    const handle = await this.apply('open', p, () => this.inner.open(p, flags, mode));
    return this.wrap(handle, realPathOf(p));
  }
  rename(a: string, b: string): Promise<void> {
    return this.apply('rename', b, () => this.inner.rename(a, b));
  }
  unlink(p: string): Promise<void> {
    return this.apply('unlink', p, () => this.inner.unlink(p));
  }
  mkdir(p: string): Promise<void> {
    return this.apply('mkdir', p, () => this.inner.mkdir(p));
  }
  rmdir(p: string): Promise<void> {
    return this.inner.rmdir(p);
  }
  lstat(p: string) {
    return this.inner.lstat(p);
  }
  readdir(p: string): Promise<string[]> {
    return this.apply('readdir', p, () => this.inner.readdir(p));
  }
  link(a: string, b: string): Promise<void> {
    return this.apply('rename', b, () => this.inner.link(a, b));
  }
  realpath(p: string): Promise<string> {
    return this.inner.realpath(p);
  }

  private wrap(handle: VolumeFile, p: string): VolumeFile {
    return {
      read: async (buffer, offset, length, position) => {
        const fault = this.match('read', p);
        if (fault && 'code' in fault) throw Object.assign(new Error(`${fault.code}: injected on read ${p}`), { code: fault.code });
        if (fault && 'hang' in fault) await new Promise<void>((resolve) => this.hung.push(resolve));
        const limit = fault && 'shortRead' in fault ? Math.min(length, fault.shortRead) : length;
        this.largestReadAsked = Math.max(this.largestReadAsked, limit);
        return handle.read(buffer, offset, limit, position);
      },
      writev: (buffers, position) => this.apply('writev', p, () => handle.writev(buffers, position)),
      write: (buffer, offset, length, position) => this.apply('write', p, () => handle.write(buffer, offset, length, position)),
      sync: () => this.apply('sync', p, () => handle.sync()),
      stat: () => handle.stat(),
      chmod: (mode) => handle.chmod(mode),
      utimes: (a, m) => this.apply('utimes', p, () => handle.utimes(a, m)),
      handlePath: this.procHidden ? undefined : handle.handlePath,
      location: () => (this.procHidden ? undefined : handle.location()),
      close: async () => {
        const fault = this.match('close', p);
        // The descriptor is closed for real either way: an error at close still releases it.
        await handle.close();
        if (fault && 'code' in fault) throw Object.assign(new Error(`${fault.code}: injected on close ${p}`), { code: fault.code });
      },
    };
  }
}
