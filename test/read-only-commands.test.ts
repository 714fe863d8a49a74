import { execFileSync } from 'node:child_process';
import { utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot, tempDir } from './helpers';
import { cliJson, fakeBuild, filesWith, fill, NOBODY, pageKey, runCli, treeState, type RunAs } from './volume-tools';

/**
 * Issue 13, item 6: the read-only commands (stats, inspect, verify without
 * --repair, check --read-only) touch nothing on the volume: no lease, no
 * clock probe, no folder, no repair. A debug pod that mounts the volume
 * read-only can run them, and on a writable volume they leave every file,
 * folder and time as it was. Needs root (a read-only bind mount, setpriv).
 */
const needRoot = isRoot() ? describe : describe.skip;
if (!isRoot()) console.log('SKIP read-only commands: needs root for a read-only bind mount and setpriv (CI runs as root)');
if (!isRoot() && process.env.CI === 'true') throw new Error('the read-only commands test must run in CI (as root)');

const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.splice(0).reverse()) execFileSync('umount', ['-l', m]);
});

const PAGE = pageKey('/blog/a');

/** A store of every kind (build namespace, fetch, 'use cache', image, tags, a compacted snapshot) with problems for verify to find. */
async function filledStore(): Promise<string> {
  const dir = tempDir('nvc-read-only-');
  const build = fakeBuild(tempDir('nvc-read-only-next-'), 'RO000001');
  await fill(dir, [
    { op: 'page', key: PAGE, serverDistDir: build.serverDistDir, tags: ['post', '_N_T_/blog/a'] },
    { op: 'fetch', key: 'https://api.example/data', tags: ['data'] },
    { op: 'useCache', key: '["RO000001","fn",[]]', tags: ['uc'] },
    { op: 'image', key: '/_next/image?url=%2Fa.png&w=64&q=75', serverDistDir: build.serverDistDir },
    { op: 'revalidate', tags: ['data'] },
    { op: 'waitMemberLines', lines: 3 },
  ]);
  await cliJson(['compact', '--dir', dir]);
  // A stranger's file and a dead writer's temp file: verify reports them (exit 3); only --repair would act.
  const shard = path.dirname(filesWith(dir, '/entries/shared/', '.entry')[0]!);
  writeFileSync(path.join(shard, 'notes.txt'), 'left by someone');
  const temp = path.join(shard, '.tmp.0000000000000000.entry.gone-writer.abcdef');
  writeFileSync(temp, 'half');
  utimesSync(temp, new Date(Date.now() - 2 * 3_600_000), new Date(Date.now() - 2 * 3_600_000));
  return dir;
}

/** Every read-only command with the exit code it must end with. */
function readOnlyRuns(dir: string): Array<{ args: string[]; exit: number }> {
  return [
    { args: ['stats', '--dir', dir], exit: 0 },
    { args: ['--json', 'stats', '--dir', dir], exit: 0 },
    { args: ['--all-apps', '--json', 'stats', '--dir', dir], exit: 0 },
    { args: ['inspect', PAGE, '--dir', dir, '--raw'], exit: 0 },
    { args: ['inspect', 'no-such-key', '--dir', dir], exit: 1 },
    { args: ['verify', '--dir', dir], exit: 3 },
    { args: ['--json', 'verify', '--dir', dir], exit: 3 },
    { args: ['check', '--read-only', '--dir', dir], exit: 0 },
    // An app that has no folder on the volume: none is created for it.
    { args: ['stats', '--dir', dir, '--app', 'not-there'], exit: 0 },
    { args: ['verify', '--dir', dir, '--app', 'not-there'], exit: 0 },
    { args: ['check', '--read-only', '--dir', dir, '--app', 'not-there'], exit: 0 },
  ];
}

/** Runs each read-only command against `target` and checks that `source` (the same tree) did not change at all. */
async function expectNothingWritten(source: string, target: string, runAs: RunAs): Promise<void> {
  const before = treeState(source);
  for (const { args, exit } of readOnlyRuns(target)) {
    const result = await runCli(args, runAs);
    const after = treeState(source);
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter((p) => JSON.stringify(before.get(p)) !== JSON.stringify(after.get(p)));
    expect(changed, `${args.join(' ')} changed the volume`).toEqual([]);
    expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(exit);
  }
}

needRoot('read-only commands write nothing', () => {
  it('against a read-only bind mount: every one succeeds, the tree is identical (bytes, modes, times)', async () => {
    const source = await filledStore();
    const readOnly = tempDir('nvc-read-only-mount-');
    execFileSync('mount', ['--bind', source, readOnly]);
    mounts.push(readOnly);
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly]);
    await expectNothingWritten(source, readOnly, {});
    // The check says what it is (read-only, nothing written) and what it found.
    const check = await cliJson<{ ok: boolean; latencyMs: number | null }>(['check', '--read-only', '--dir', readOnly]);
    expect(check).toMatchObject({ ok: true, latencyMs: null });
  });

  it('as a pod uid on a writable volume: no lease, no probe, no folder; the tree is identical', async () => {
    const dir = await filledStore();
    execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, dir]);
    await expectNothingWritten(dir, dir, { uid: NOBODY });
    // The same uid can write here: a command that writes (compact) does, so the test above could have seen it.
    const leases = filesWith(dir, '/writers/').length;
    await cliJson(['compact', '--dir', dir], 0, { uid: NOBODY });
    expect(filesWith(dir, '/writers/')).toHaveLength(leases + 1);
  });
});
