import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, tempDir, waitFor, walk } from './helpers';
import { cliJson, fakeBuild, fill, pageKey, runCli } from './volume-tools';

/**
 * Issue 13, item 4: one way to build write options. With fileMode "664" and
 * dirMode "2775", every file and folder the library creates on the volume
 * has exactly those modes whatever the process's umask: the request path
 * (entries, images, tag log, tag index, leases, build and seeding markers,
 * the root itself) and every maintenance command (compaction snapshots, gc's
 * watermark, purge's invalidations, verify's quarantine, seed, check, and
 * the lock folders). A CronJob under another umask must leave nothing the
 * pods of its fsGroup cannot write.
 */
const UMASK = '077';
const MODES = { fileMode: '664', dirMode: '2775' };
const MODE_FLAGS = ['--file-mode', MODES.fileMode, '--dir-mode', MODES.dirMode];

/** Files and folders under `root` whose mode is not the configured one, as "path mode". */
function wrongModes(root: string, planted: (file: string) => boolean): string[] {
  const wrong: string[] = [];
  for (const file of [root, ...walk(root)]) {
    if (planted(file)) continue;
    const stats = lstatSync(file);
    const mode = stats.mode & 0o7777;
    const expected = stats.isDirectory() ? 0o2775 : 0o664;
    if (!stats.isDirectory() && !stats.isFile()) wrong.push(`${path.relative(root, file)} is not a file or folder`);
    else if (mode !== expected) wrong.push(`${path.relative(root, file) || '.'} ${mode.toString(8)}`);
  }
  return wrong;
}

/** The maintenance lock folder's mode, looked at while a gc run (under the umask) holds it. */
async function heldLockMode(dir: string): Promise<number> {
  const release = path.join(tempDir('nvc-lock-release-'), 'release');
  const options = JSON.stringify({ dir, logLevel: 'error', ...MODES });
  const child = spawn('sh', ['-c', `umask ${UMASK} && exec "$@"`, 'sh', process.execPath, path.join(REPO, 'test/children/hold-lock.js'), options, release], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const lock = path.join(dir, 'apps/default/locks/maintenance.lock');
  try {
    // "holding": the lock is taken (created, then given its mode) and the run is stopped inside it.
    expect(await waitFor(() => stdout.includes('holding') || child.exitCode !== null, 30_000), 'the run never stopped inside the lock').toBe(true);
    expect(existsSync(lock), stderr).toBe(true);
    return lstatSync(lock).mode & 0o7777;
  } finally {
    writeFileSync(release, '');
    expect(await exited, stderr).toBe(0);
  }
}

describe('fileMode and dirMode reach every file and folder, under any umask', () => {
  it('the handler and every maintenance command, under umask 077: files 0664, folders 02775', async () => {
    const parent = tempDir('nvc-modes-');
    // The library creates the root itself (one level): the configured dirMode applies to it too.
    const dir = path.join(parent, 'volume');
    const builds = tempDir('nvc-modes-builds-');
    const served = fakeBuild(builds, 'SERVED01', ['/', '/about']);
    const seededByCli = fakeBuild(builds, 'SEEDED02', ['/', '/contact']);
    const runAs = { umask: UMASK };

    // A server of build SERVED01 with seed: true: it seeds the prerendered pages, marks its build
    // as served, writes entries of every kind, images, tagged entries (the tag index) and invalidations.
    await fill(
      dir,
      [
        { op: 'page', key: pageKey('/blog/a'), serverDistDir: served.serverDistDir, tags: ['_N_T_/blog/a', 'post'] },
        { op: 'fetch', key: 'https://api.example/data', serverDistDir: served.serverDistDir, tags: ['data'] },
        { op: 'useCache', key: '["SERVED01","fn",[]]', tags: ['uc'] },
        { op: 'image', key: '/_next/image?url=%2Fa.png&w=64&q=75', serverDistDir: served.serverDistDir },
        { op: 'revalidate', tags: ['something-else'] },
        { op: 'waitFile', file: 'apps/default/seeded/build-SERVED01' },
        { op: 'waitFile', file: 'apps/default/builds/build-SERVED01' },
        // page, fetch, 'use cache' and the two seeded pages
        { op: 'waitMemberLines', lines: 5 },
      ],
      { ...MODES, seed: true },
      runAs,
    );

    // What an operator or a stray process left: verify --repair quarantines it (its own mode is its own).
    const shard = path.dirname(walk(dir).find((p) => p.endsWith('.entry'))!);
    const stray = path.join(shard, 'left-by-someone.txt');
    writeFileSync(stray, 'not ours');
    const isPlanted = (file: string): boolean => file === stray || path.basename(file).endsWith('left-by-someone.txt');

    // Every maintenance command, as a CronJob or an init container runs it, under the same umask.
    await cliJson(['compact', '--dir', dir, ...MODE_FLAGS], 0, runAs);
    await cliJson(['gc', '--dir', dir, ...MODE_FLAGS], 0, runAs);
    await cliJson(['purge', '--dir', dir, '--tag', 'post', ...MODE_FLAGS], 0, runAs);
    await cliJson(['seed', '--dir', dir, '--next-dir', seededByCli.nextDir, ...MODE_FLAGS], 0, runAs);
    const repaired = await cliJson<{ repaired: Record<string, number> }>(['verify', '--repair', '--dir', dir, ...MODE_FLAGS], 0, runAs);
    expect(repaired.repaired['foreign-file']).toBe(1);
    const check = await runCli(['check', '--dir', dir, ...MODE_FLAGS], runAs);
    expect(check.code, check.stderr + check.stdout).toBe(0);

    // Each kind of file is there to be judged: the walk below is not vacuous.
    const app = path.join(dir, 'apps/default');
    for (const file of ['tags/snapshot', 'tags/members.snapshot', 'tags/watermark', 'tags/head', 'builds/build-SERVED01', 'seeded/build-SERVED01', 'quarantine', 'locks']) {
      expect(existsSync(path.join(app, file)), file).toBe(true);
    }
    for (const area of ['entries/build-SERVED01', 'entries/build-SEEDED02', 'entries/shared', 'entries/use-cache', 'images/build-SERVED01', 'tags/inval', 'tags/members', 'writers']) {
      expect(walk(path.join(app, area)).filter((p) => lstatSync(p).isFile()).length, area).toBeGreaterThan(0);
    }
    expect(walk(path.join(app, 'quarantine')).filter(isPlanted)).toHaveLength(1);

    expect(wrongModes(dir, isPlanted)).toEqual([]);
    // A lock folder exists only while a run holds it: looked at then (and what that run wrote, after).
    expect(await heldLockMode(dir)).toBe(0o2775);
    expect(wrongModes(dir, isPlanted)).toEqual([]);
  });

  it('a root that already exists is left as it is; what the library creates in it follows dirMode', async () => {
    const dir = tempDir('nvc-modes-existing-');
    mkdirSync(path.join(dir, 'lost+found'));
    const before = lstatSync(dir).mode & 0o7777;
    await fill(
      dir,
      [
        { op: 'fetch', key: 'k', tags: ['t'] },
        { op: 'waitMemberLines', lines: 1 },
      ],
      MODES,
      { umask: UMASK },
    );
    expect(lstatSync(dir).mode & 0o7777).toBe(before);
    expect(wrongModes(dir, (file) => file === dir || file.endsWith('lost+found'))).toEqual([]);
  });
});
