import path from 'node:path';
import { errorCode, type VolumeFs } from './fs';

/** Folders checked per process, at most; past it the set starts over (re-checking is only slower). */
const MAX_VERIFIED = 200_000;

/**
 * Refuses to read or write through a shard folder that is a symlink. `open`
 * with O_NOFOLLOW only protects the last component of a path; a planted link
 * at `entries/shared/ab` would otherwise send reads and writes outside the
 * cache root. Each folder is checked once per process (a few lstat calls the
 * first time a shard is used), then remembered.
 */
export class ShardGuard {
  private readonly verified = new Set<string>();

  constructor(private readonly fs: VolumeFs) {}

  /**
   * true when `dir` and its `levels - 1` parents are real folders, or do not
   * exist yet (nothing to follow); false when one of them is a symlink or not
   * a folder.
   */
  async isSafe(dir: string, levels: number): Promise<boolean> {
    if (this.verified.has(dir)) return true;
    let current = dir;
    for (let i = 0; i < levels; i++, current = path.dirname(current)) {
      if (this.verified.has(current)) break;
      try {
        const stats = await this.fs.lstat(current);
        if (!stats.isDirectory()) return false;
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return true;
        throw error;
      }
    }
    if (this.verified.size >= MAX_VERIFIED) this.verified.clear();
    for (let i = 0, d = dir; i < levels; i++, d = path.dirname(d)) this.verified.add(d);
    return true;
  }
}

export class UnsafePathError extends Error {
  readonly code = 'ELOOP';
  constructor(dir: string) {
    super(`refusing to use ${dir}: a folder on the way is a symlink or not a folder`);
    this.name = 'UnsafePathError';
  }
}
