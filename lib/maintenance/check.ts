import { constants } from 'node:fs';
import path from 'node:path';
import { resolveOptions, type CacheOptions } from '../config';
import { errorCode, nodeFs, readWhole, type VolumeFs } from '../store/fs';
import { FORMAT_VERSION, MARKER_FILE } from '../store/layout';

export type CheckFailure = 'missing' | 'not-a-directory' | 'foreign' | 'incompatible-format' | 'read-only' | 'slow' | 'error';

export interface CheckResult {
  ok: boolean;
  dir: string;
  /** The marker's format, null for an empty folder that the first pod will initialize. */
  format: number | null;
  /** Time of a small write, read and delete on the volume. */
  latencyMs: number | null;
  failure?: CheckFailure;
  message: string;
}

/**
 * The start-up check (a Kubernetes startupProbe, or an operator by hand):
 * is the root there, a folder, a cache root of a compatible format (or empty),
 * writable, and answering a write, read and delete within `maxLatencyMs`?
 * Not a liveness or readiness probe: a slow volume must never take pods out
 * of service, since the handler already degrades to misses.
 */
export async function checkRoot(options: CacheOptions, maxLatencyMs: number, fs: VolumeFs = nodeFs): Promise<CheckResult> {
  const settings = resolveOptions(options);
  const dir = settings.dir;
  const fail = (failure: CheckFailure, message: string, extra: Partial<CheckResult> = {}): CheckResult => ({ ok: false, dir: dir ?? '', format: null, latencyMs: null, failure, message, ...extra });
  if (!dir) return fail('missing', 'no cache root given: pass --dir or set NEXT_VOLUME_CACHE_DIR');
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return fail('missing', `${dir} does not exist: is the volume mounted?`);
    if (code === 'ENOTDIR') return fail('not-a-directory', `${dir} is not a folder`);
    return fail('error', `${dir} cannot be listed: ${(error as Error).message}`);
  }
  let format: number | null = null;
  if (names.includes(MARKER_FILE)) {
    try {
      format = (JSON.parse((await readWhole(fs, path.join(dir, MARKER_FILE))).toString('utf8')) as { format?: unknown }).format as number;
    } catch {
      return fail('foreign', `${path.join(dir, MARKER_FILE)} is not a next-volume-cache marker`);
    }
    if (format !== FORMAT_VERSION) return fail('incompatible-format', `${dir} holds cache format ${format}; this version uses format ${FORMAT_VERSION}`, { format });
  } else if (names.some((n) => !n.startsWith('.') && n !== 'lost+found')) {
    return fail('foreign', `${dir} holds files but no ${MARKER_FILE}: not a cache root (wrong mount or path?)`);
  }
  const probe = path.join(dir, `.tmp.check.${process.pid}.${Math.random().toString(36).slice(2, 8)}`);
  const started = performance.now();
  try {
    const handle = await fs.open(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o666);
    try {
      await handle.write(Buffer.from('check\n'), 0, 6, 0);
    } finally {
      await handle.close();
    }
    await readWhole(fs, probe);
    await fs.unlink(probe);
  } catch (error) {
    await fs.unlink(probe).catch(() => undefined);
    const code = errorCode(error);
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') return fail('read-only', `${dir} is not writable (${code})`, { format });
    return fail('error', `writing to ${dir} failed: ${(error as Error).message}`, { format });
  }
  const latencyMs = Math.round(performance.now() - started);
  if (latencyMs > maxLatencyMs) return fail('slow', `${dir} took ${latencyMs} ms for a small write, read and delete (limit ${maxLatencyMs} ms)`, { format, latencyMs });
  return { ok: true, dir, format, latencyMs, message: `${dir} is ${format === null ? 'an empty folder, ready to become' : 'a'} cache root, writable, ${latencyMs} ms per probe` };
}
