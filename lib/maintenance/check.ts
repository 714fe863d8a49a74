import path from 'node:path';
import { resolveOptions, type CacheOptions } from '../config';
import { ConfinedFs, readFailure } from '../fs/confined';
import { nodeFs, type VolumeFs } from '../fs/syscalls';
import { writeSettingsOf } from '../service/runtime';
import { FORMAT_VERSION, Layout, MARKER_FILE, NFS_SILLY_PREFIX } from '../store/layout';
import { newWriterId } from '../store/volume';
import { listSegments } from '../tags/files';
import { describe, errorCode } from '../util/errors';

export type CheckFailure = 'missing' | 'not-a-directory' | 'foreign' | 'incompatible-format' | 'read-only' | 'slow' | 'damaged' | 'unreadable-files' | 'error';

export interface CheckResult {
  ok: boolean;
  dir: string;
  /** The marker's format, null for an empty folder that the first pod will initialize. */
  format: number | null;
  /** Time of a small write, read and delete on the volume (null with readOnly). */
  latencyMs: number | null;
  failure?: CheckFailure;
  message: string;
}

export interface CheckOptions {
  /** Fail when the probe takes longer. */
  maxLatencyMs: number;
  /** Check without writing anything (a read-only mount, a debug pod). */
  readOnly?: boolean;
  fs?: VolumeFs;
}

/** A marker is a few dozen bytes. */
const MAX_MARKER_BYTES = 4096;

/**
 * The start-up check (a Kubernetes startupProbe, or an operator by hand):
 * is the root there, a folder, a cache root of a compatible format (or
 * empty), are its folders real folders, can this process read every tag log
 * file (a file other pods cannot read makes them treat entries as
 * invalidated: see TagLog), is it writable, and does it answer a write,
 * read and delete within `maxLatencyMs`? Not a liveness or readiness probe:
 * a slow volume must never take pods out of service, since the handler
 * already degrades to misses.
 */
export async function checkRoot(options: CacheOptions, check: CheckOptions): Promise<CheckResult> {
  const settings = resolveOptions(options);
  const dir = settings.dir;
  const fail = (failure: CheckFailure, message: string, extra: Partial<CheckResult> = {}): CheckResult => ({ ok: false, dir: dir ?? '', format: null, latencyMs: null, failure, message, ...extra });
  if (!dir) return fail('missing', 'no cache root given: pass --dir or set NEXT_VOLUME_CACHE_DIR');
  const fs = new ConfinedFs(check.fs ?? nodeFs, dir, writeSettingsOf(settings, newWriterId()));
  const layout = new Layout(dir, settings.app);
  let names: string[];
  try {
    await fs.resolveRoot();
    names = await fs.list(dir);
  } catch (error) {
    const code = errorCode(error);
    if (code === 'ENOENT') return fail('missing', `${dir} does not exist: is the volume mounted?`);
    if (code === 'ENOTDIR') return fail('not-a-directory', `${dir} is not a folder`);
    return fail('error', `${dir} cannot be listed: ${describe(error)}`);
  }
  let format: number | null = null;
  if (names.includes(MARKER_FILE)) {
    try {
      format = (JSON.parse((await fs.readFile(layout.marker, { maxBytes: MAX_MARKER_BYTES })).toString('utf8')) as { format?: unknown }).format as number;
    } catch {
      return fail('foreign', `${layout.marker} is not a next-volume-cache marker`);
    }
    if (format !== FORMAT_VERSION) return fail('incompatible-format', `${dir} holds cache format ${format}; this version uses format ${FORMAT_VERSION}`, { format });
  } else if (names.some((n) => !n.startsWith('.') && n !== 'lost+found')) {
    return fail('foreign', `${dir} holds files but no ${MARKER_FILE}: not a cache root (wrong mount or path?)`);
  }
  const damage = await checkApp(fs, layout);
  if (damage) return fail(damage.failure, damage.message, { format });
  if (check.readOnly) return { ok: true, dir, format, latencyMs: null, message: `${dir} is ${format === null ? 'an empty folder, ready to become' : 'a'} cache root; every tag log file is readable (read-only check: nothing written)` };
  const probe = layout.checkProbe(fs.writes.writer);
  const started = performance.now();
  try {
    await fs.writeAtomic(probe, [Buffer.from('check\n')]);
    await fs.readFile(probe, { maxBytes: MAX_MARKER_BYTES });
    await fs.unlink(probe);
  } catch (error) {
    await fs.unlink(probe).catch(() => undefined);
    const code = errorCode(error);
    if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') return fail('read-only', `${dir} is not writable (${code})`, { format });
    return fail('error', `writing to ${dir} failed: ${describe(error)}`, { format });
  }
  const latencyMs = Math.round(performance.now() - started);
  if (latencyMs > check.maxLatencyMs) return fail('slow', `${dir} took ${latencyMs} ms for a small write, read and delete (limit ${check.maxLatencyMs} ms)`, { format, latencyMs });
  return { ok: true, dir, format, latencyMs, message: `${dir} is ${format === null ? 'an empty folder, ready to become' : 'a'} cache root, writable, ${latencyMs} ms per probe` };
}

/**
 * The app's folders must be real folders (a link there would be refused by
 * every pod), and every tag log file must be readable by this process: a
 * segment other pods wrote with a mode this UID cannot read is the one
 * misconfiguration that silently costs the whole cache (TagLog fails closed
 * on it). What .nfs files and strangers are does not matter here.
 */
async function checkApp(fs: ConfinedFs, layout: Layout): Promise<{ failure: CheckFailure; message: string } | undefined> {
  for (const dir of layout.skeleton()) {
    try {
      await fs.list(dir);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      return { failure: 'damaged', message: `${dir} is not a usable folder (${describe(error)}): run \`next-volume-cache verify --repair\`` };
    }
  }
  const unreadable: string[] = [];
  for (const dir of [layout.invalidationsDir, layout.membersDir]) {
    for (const name of (await listSegments(fs, dir).catch(() => ({ segments: [] as string[] }))).segments) {
      if (name.startsWith(NFS_SILLY_PREFIX)) continue;
      const file = path.join(dir, name);
      try {
        const { handle } = await fs.openFile(file);
        await handle.close();
      } catch (error) {
        // A link, folder or FIFO named like a segment is skipped by every reader: not a reason to fail.
        if (errorCode(error) === 'ENOENT' || readFailure(error) === 'not-a-file') continue;
        unreadable.push(`${path.relative(layout.root, file)} (${readFailure(error) ?? errorCode(error) ?? describe(error)})`);
      }
    }
  }
  for (const file of [layout.tagSnapshot, layout.tagHead]) {
    try {
      const { handle } = await fs.openFile(file);
      await handle.close();
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      // A link or FIFO there is damage for verify --repair, not a question of modes.
      if (readFailure(error) === 'not-a-file') return { failure: 'damaged', message: `${file} is not a regular file (${describe(error)}): run \`next-volume-cache verify --repair\`` };
      unreadable.push(`${path.relative(layout.root, file)} (${readFailure(error) ?? errorCode(error) ?? describe(error)})`);
    }
  }
  if (unreadable.length === 0) return undefined;
  return {
    failure: 'unreadable-files',
    message: `${unreadable.length} tag log file(s) cannot be read by this process, so it would treat entries as invalidated: ${unreadable.slice(0, 5).join(', ')}. Give every pod the same group and NEXT_VOLUME_CACHE_FILE_MODE=664 (see the README's deployment section)`,
  };
}
