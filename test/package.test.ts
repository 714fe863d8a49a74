import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCache, REPO } from './helpers';
import { FETCH_CTX, fetchValue } from './values';
import * as image from '../scripts/production-image.js';

interface PackageJson {
  version: string;
  main: string;
  bin: Record<string, string>;
  exports: Record<string, { default: string; types: string } | string>;
}

const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as PackageJson;
const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

describe('the published package', () => {
  it('holds the built library, the CLI and the README, and nothing of the fixtures, tests or benchmarks', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8' })) as Array<{ files: Array<{ path: string }> }>;
    const files = packed[0]!.files.map((f) => f.path);
    expect(files.filter((f) => !/^(dist\/lib\/|dist\/bin\/|README\.md$|package\.json$)/.test(f))).toEqual([]);
    const entryPoints = [pkg.main, ...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => (typeof e === 'string' ? [] : [e.default, e.types]))];
    for (const entry of entryPoints) expect(files, entry).toContain(path.normalize(entry));
  });

  // A standalone image copies node_modules/next-volume-cache alone (examples/kubernetes/Dockerfile):
  // the CLI must not need any other package next to it.
  it('the CLI runs from the unpacked package folder alone, with no node_modules anywhere above it', async () => {
    const dir = image.openTempDir('nvc-package-');
    temps.push(dir);
    const unpacked = image.extractTarball(image.packRepository(dir), dir);
    expect(image.nodeModulesAbove(path.join(unpacked, 'dist', 'bin'))).toEqual([]);
    const cli = path.join(unpacked, pkg.bin['next-volume-cache']!);
    const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8' });

    const version = run(['--version']);
    expect(version.stderr).toBe('');
    expect(version.status).toBe(0);
    expect(version.stdout.trim()).toBe(pkg.version);
    const help = run(['--help']);
    expect(help.status, help.stderr).toBe(0);
    for (const command of ['check', 'compact', 'gc', 'purge', 'verify', 'stats']) expect(help.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
    // Commands that take the maintenance lock (proper-lockfile) and hash keys (xxhash-wasm), on a real root.
    const root = path.join(dir, 'cache');
    const cache = await openCache({ dir: root });
    await cache.handler.set('k', fetchValue(), FETCH_CTX);
    await cache.runtime.close();
    for (const args of [
      ['compact', '--dir', root],
      ['stats', '--dir', root, '--json'],
    ]) {
      const result = run(args);
      expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(0);
    }
    expect((JSON.parse(run(['stats', '--dir', root, '--json']).stdout) as { entries: { total: { count: number } } }).entries.total.count).toBe(1);
  });
});
