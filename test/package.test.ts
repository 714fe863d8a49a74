import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './helpers';

describe('the published package', () => {
  it('holds the built library, the CLI and the README, and nothing of the fixtures, tests or benchmarks', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, encoding: 'utf8' })) as Array<{ files: Array<{ path: string }> }>;
    const files = packed[0]!.files.map((f) => f.path);
    expect(files.filter((f) => !/^(dist\/lib\/|dist\/bin\/|README\.md$|package\.json$)/.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { main: string; bin: Record<string, string>; exports: Record<string, { default: string; types: string } | string> };
    const entryPoints = [pkg.main, ...Object.values(pkg.bin), ...Object.values(pkg.exports).flatMap((e) => (typeof e === 'string' ? [] : [e.default, e.types]))];
    for (const entry of entryPoints) expect(files, entry).toContain(path.normalize(entry));
  });
});
