import { cpSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DIST, runChild, tempDir } from './helpers';

describe('counters', () => {
  it('are logged periodically when NEXT_VOLUME_CACHE_METRICS_LOG_MS is set', async () => {
    const dir = tempDir();
    const result = await runChild('metrics-log.js', [], { NEXT_VOLUME_CACHE_DIR: dir, NEXT_VOLUME_CACHE_METRICS_LOG_MS: '100' });
    expect(result.code).toBe(0);
    const lines = result.stderr.split('\n').filter((l) => l.includes('metrics {'));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(lines[0]!.slice(lines[0]!.indexOf('{')))).toMatchObject({ gets: 1, misses: { absent: 1 } });
  });
});

describe('loading as Next does', () => {
  it('works from require and import, and two copies of the package share one runtime', async () => {
    const copy = path.join(tempDir(), 'dist');
    cpSync(DIST, copy, { recursive: true });
    const dir = tempDir();
    const result = await runChild('load-twice.js', [DIST, copy, dir], { NEXT_VOLUME_CACHE_DIR: dir, NEXT_VOLUME_CACHE_LOG_LEVEL: 'silent', NODE_PATH: path.join(DIST, '..', 'node_modules') });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ requireIsClass: true, importIsClass: true, hits: 2, runtimesSeenByCopy: 1, getsSeenByCopy: 2 });
  });
});
