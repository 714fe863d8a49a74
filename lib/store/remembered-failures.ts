import type { Stats } from 'node:fs';

/** How long a file that failed is trusted to fail again without being read. */
const REMEMBER_MS = 60_000;
/** Files remembered at most; past it the memory starts over (re-reading is only slower). */
const MAX_REMEMBERED = 10_000;

/**
 * Files that failed to read or decode (damaged, too large, forged),
 * remembered by path and identity (inode, size, mtime) for a minute: a
 * damaged file is read once per minute and process, not on every get. A
 * rewritten file has a new identity and is read at once.
 */
export class RememberedFailures<Reason extends string> {
  private readonly failed = new Map<string, { identity: string; reason: Reason; until: number }>();

  remember(file: string, stats: Stats, reason: Reason): void {
    if (this.failed.size >= MAX_REMEMBERED) this.failed.clear();
    this.failed.set(file, { identity: identityKey(stats), reason, until: performance.now() + REMEMBER_MS });
  }

  /** The reason this very version of the file failed, if it did recently. */
  recall(file: string, stats: Stats): Reason | undefined {
    const known = this.failed.get(file);
    if (!known) return undefined;
    if (known.until < performance.now() || known.identity !== identityKey(stats)) {
      this.failed.delete(file);
      return undefined;
    }
    return known.reason;
  }
}

function identityKey(stats: Stats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeMs}`;
}
