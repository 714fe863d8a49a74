import path from 'node:path';
import { constants } from 'node:fs';
import { CREATE_EXCLUSIVE_FLAGS, errorCode, type VolumeFile, type VolumeFs } from './fs';
import { tempPathFor } from './layout';

export interface AtomicWriteOptions {
  /** Unique id of this process, part of the temp name (debris tells who left it). */
  writer: string;
  /** fsync the file before the rename and the directory after it. */
  fsync: boolean;
  /** Mode set on the file (not subject to the umask); default: 0666 less the umask. */
  mode?: number | undefined;
  /** Mode set on shard folders this write creates. */
  dirMode?: number | undefined;
  /** Publish only if the target does not exist yet (a hard link instead of a rename): false if it did. */
  ifAbsent?: boolean;
}

/**
 * Maildir delivery: write a uniquely named temp file in the target's
 * directory, close it (on NFS write errors can first surface at close), then
 * rename it over the target. Readers see the old file or the new one, never a
 * mix. On failure the temp file is removed and the error is rethrown.
 */
export async function writeAtomic(
  fs: VolumeFs,
  target: string,
  buffers: readonly Uint8Array[],
  options: AtomicWriteOptions,
): Promise<boolean> {
  const temp = tempPathFor(target, options.writer);
  const handle = await openCreatingParent(fs, temp, options.dirMode);
  let closed = false;
  let published = true;
  try {
    if (options.mode !== undefined) await handle.chmod(options.mode);
    await writeAll(handle, buffers);
    if (options.fsync) await handle.sync();
    closed = true;
    await handle.close();
    if (options.ifAbsent) {
      // link() refuses an existing target atomically; the temp name is removed either way.
      published = await fs.link(temp, target).then(
        () => true,
        (error: unknown) => {
          if (errorCode(error) === 'EEXIST') return false;
          throw error;
        },
      );
      // Published (or refused) already: a failure to remove the temp name leaves debris for
      // verify, not an error for a write that happened.
      await fs.unlink(temp).catch(() => undefined);
    } else {
      await fs.rename(temp, target);
    }
  } catch (error) {
    if (!closed) await handle.close().catch(() => undefined);
    await fs.unlink(temp).catch(() => undefined);
    throw error;
  }
  if (options.fsync) await syncDirectory(fs, path.dirname(target));
  return published;
}

async function openCreatingParent(fs: VolumeFs, file: string, dirMode: number | undefined): Promise<VolumeFile> {
  try {
    return await fs.open(file, CREATE_EXCLUSIVE_FLAGS, 0o666);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    // Shard directories are created on first write rather than checked on every write.
    await mkdirUpTo(fs, path.dirname(file), SHARD_LEVELS, dirMode);
    return await fs.open(file, CREATE_EXCLUSIVE_FLAGS, 0o666);
  }
}

/** The two shard levels plus the namespace folder; never more. */
const SHARD_LEVELS = 3;

/**
 * Creates `dir` and at most `levels - 1` missing ancestors. Never a plain
 * recursive mkdir: if the volume is not mounted, recreating the whole tree
 * would silently write the cache onto the container's own disk.
 */
export async function mkdirUpTo(fs: VolumeFs, dir: string, levels: number, mode?: number): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: false });
    if (mode !== undefined) await fs.chmod(dir, mode);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || levels <= 1) throw error;
    await mkdirUpTo(fs, path.dirname(dir), levels - 1, mode);
    await mkdirUpTo(fs, dir, 1, mode);
  }
}

/** writev may write less than asked (a full disk, a signal): finish the rest or fail. */
export async function writeAll(handle: VolumeFile, buffers: readonly Uint8Array[]): Promise<void> {
  const total = buffers.reduce((sum, b) => sum + b.byteLength, 0);
  let { bytesWritten } = await handle.writev(buffers);
  if (bytesWritten === total) return;
  const rest = Buffer.concat(buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))).subarray(bytesWritten);
  let offset = 0;
  while (offset < rest.length) {
    const result = await handle.write(rest, offset, rest.length - offset, null);
    if (result.bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    offset += result.bytesWritten;
  }
}

async function syncDirectory(fs: VolumeFs, dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
