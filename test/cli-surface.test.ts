import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, OPTION_NAMES, flagNameOf, resolveOptions } from '../lib/config';
import { createCacheHandler } from '../lib/index';
import { tempDir } from './helpers';
import { fakeBuild, fill, pageKey, runCli } from './volume-tools';

/**
 * Issue 13, item 7: modes are unambiguous (a string of octal digits, never a
 * number: 664 and 0o664 are different numbers), unsafe modes are refused,
 * `--help` lists every option, and `--dir=<path>` and `--all-apps` work with
 * every command.
 */
function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('no ConfigError was thrown');
}

describe('modes are octal strings, and only safe ones', () => {
  it.each([
    ['fileMode', 664],
    ['fileMode', 0o664],
    ['dirMode', 2775],
    ['dirMode', 0o2775],
  ])('%s as the number %d is refused, naming the setting, at createCacheHandler', (setting, value) => {
    const error = configError(() => createCacheHandler({ dir: '/mnt/cache', [setting]: value }));
    expect(error.setting).toBe(setting);
    expect(error.message).toContain(setting);
    expect(error.message).toMatch(/as a string/);
  });

  it('"664", "0664" and "0o664" mean the same mode, from options, the environment and flags alike', async () => {
    for (const spelled of ['664', '0664', '0o664']) {
      expect(resolveOptions({ fileMode: spelled }, {}).fileMode).toBe(0o664);
      expect(resolveOptions({}, { NEXT_VOLUME_CACHE_FILE_MODE: spelled }).fileMode).toBe(0o664);
    }
    for (const spelled of ['2775', '02775', '0o2775']) expect(resolveOptions({ dirMode: spelled }, {}).dirMode).toBe(0o2775);
    const dir = tempDir('nvc-modes-cli-');
    await fill(dir, [{ op: 'fetch', key: 'k' }]);
    for (const spelled of ['664', '0664', '0o664']) expect((await runCli(['compact', '--dir', dir, '--file-mode', spelled])).code).toBe(0);
  });

  it.each([
    ['fileMode', '4664', /setuid/],
    ['dirMode', '4775', /setuid/],
    ['fileMode', '666', /world-writable/],
    ['dirMode', '2777', /world-writable/],
    ['fileMode', '2664', /setgid or sticky/],
    ['fileMode', '064', /denies the owner/],
    ['dirMode', '0664', /denies the owner/],
    ['fileMode', 'rw-rw-r--', /octal mode/],
    ['fileMode', '99', /octal mode/],
  ])('%s %s is refused', (setting, value, reason) => {
    const error = configError(() => resolveOptions({ [setting]: value }, {}));
    expect(error.setting).toBe(setting);
    expect(error.message).toMatch(reason);
  });

  it('the CLI refuses a world-writable mode with exit 2, naming the flag and the variable', async () => {
    const dir = tempDir('nvc-modes-cli-');
    await fill(dir, [{ op: 'fetch', key: 'k' }]);
    const flag = await runCli(['compact', '--dir', dir, '--file-mode', '666']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--file-mode.*world-writable/);
    const env = await runCli(['compact', '--dir', dir], { env: { NEXT_VOLUME_CACHE_DIR_MODE: '0777' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/NEXT_VOLUME_CACHE_DIR_MODE.*world-writable/);
  });
});

/** The commands the CLI's own help lists (its "Commands:" section), without `help`. */
function commandsIn(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1]!.split(/^\S/m)[0]!;
  return [...section.matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]!).filter((name) => name !== 'help');
}

describe('--help', () => {
  const flags = OPTION_NAMES.map(flagNameOf);

  it("lists every cache option, at the top and in every command's help", async () => {
    expect(flags).toContain('--file-mode');
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    expect(flags.filter((flag) => !top.stdout.includes(`${flag} `))).toEqual([]);
    const commands = commandsIn(top.stdout);
    expect(commands).toEqual(expect.arrayContaining(['compact', 'stats', 'verify', 'gc', 'purge', 'seed', 'check', 'inspect']));
    for (const command of commands) {
      const help = await runCli([command, '--help']);
      expect(help.code, command).toBe(0);
      // gc --help must show the budgets it enforces, check --help the modes it probes with, and so on.
      expect(
        flags.filter((flag) => !help.stdout.includes(`${flag} `)),
        `${command} --help`,
      ).toEqual([]);
    }
  });
});

describe('--dir=<path> and --all-apps', () => {
  it('--dir=<path> (a path with "=" in it) works for every command, before or after the command', async () => {
    const dir = tempDir('nvc-dir=equals-');
    const build = fakeBuild(tempDir('nvc-dir-next-'), 'DIREQ001', ['/']);
    await fill(dir, [{ op: 'page', key: pageKey('/x'), serverDistDir: build.serverDistDir, tags: ['t'] }]);
    const runs: Array<[string[], number]> = [
      [['compact'], 0],
      [['stats'], 0],
      [['verify'], 0],
      [['gc'], 0],
      [['purge', '--tag', 'nothing-has-it'], 0],
      [['seed', `--next-dir=${build.nextDir}`], 0],
      [['check'], 0],
      [['check', '--read-only'], 0],
      [['inspect', pageKey('/x')], 0],
    ];
    for (const [command, exit] of runs) {
      for (const args of [
        [...command, `--dir=${dir}`],
        [`--dir=${dir}`, ...command],
      ]) {
        const result = await runCli(args);
        expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(exit);
      }
    }
    const stats = JSON.parse((await runCli(['--json', 'stats', `--dir=${dir}`])).stdout) as { root: string; entries: { total: { count: number } } };
    expect(stats.root).toBe(dir);
    expect(stats.entries.total.count).toBe(2); // the page and the seeded one
    // The same flag with a folder that is not a cache root: refused, not misread.
    expect((await runCli(['stats', `--dir=${path.join(dir, 'apps')}`])).code).toBe(2);
  });

  it('--all-apps with --dir=<path> runs every app, in any order; with --app it is refused', async () => {
    const dir = tempDir('nvc-all-apps-');
    for (const app of ['shop', 'blog']) await fill(dir, [{ op: 'fetch', key: `k-${app}` }], { app });
    for (const args of [
      ['--all-apps', '--json', 'stats', `--dir=${dir}`],
      ['--json', 'stats', '--all-apps', `--dir=${dir}`],
      [`--dir=${dir}`, '--all-apps', '--json', 'stats'],
    ]) {
      const result = await runCli(args);
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      const byApp = JSON.parse(result.stdout) as Record<string, { app: string; entries: { total: { count: number } } }>;
      expect(Object.keys(byApp).sort(), args.join(' ')).toEqual(['blog', 'shop']);
      expect(byApp.shop!.entries.total.count).toBe(1);
    }
    const human = await runCli(['--all-apps', 'compact', `--dir=${dir}`]);
    expect(human.stdout).toMatch(/== app blog ==[\s\S]*== app shop ==/);
    for (const args of [
      ['--all-apps', '--app', 'shop', 'stats', `--dir=${dir}`],
      ['stats', `--dir=${dir}`, '--app=shop', '--all-apps'],
    ]) {
      const refused = await runCli(args);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr).toMatch(/--all-apps.*--app|--app.*--all-apps/);
    }
  });
});
