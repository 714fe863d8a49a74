import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO, runChild } from './helpers';
import { spawnSync } from 'node:child_process';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
if (!hasRedis) console.log('SKIP bench smoke: redis-server not installed (apt-get install redis-server; CI installs it)');

describe.skipIf(!hasRedis)('the benchmark (quick smoke run: asserts that it runs, never how fast)', () => {
  it('runs every section against every contender and writes its figures as JSON', { timeout: 600_000 }, async () => {
    const result = await runChild(path.join('..', '..', 'bench', 'run.js'), ['--quick']);
    expect(result.code, result.stderr.slice(-2000)).toBe(0);
    const written = /written: (\S+)/.exec(result.stdout)?.[1];
    expect(written).toBeDefined();
    const figures = JSON.parse(readFileSync(path.join(REPO, written!), 'utf8'));
    const contenders = new Set(figures.micro.map((r: { contender: string }) => r.contender));
    expect(contenders.size).toBe(7);
    expect(figures.micro.filter((r: { opsPerSec?: number }) => r.opsPerSec! > 0).length).toBeGreaterThan(50);
    expect(figures.scale.length).toBe(2);
    expect(figures.visibility.trials).toBe(3);
    expect(figures.site.map((r: { cache: string; path: string }) => `${r.cache} ${r.path}`)).toEqual([
      'nvc /isr',
      'nvc-installed /isr',
      'builtin /isr',
      'redis /isr',
      'noop /isr',
      'noop-installed /isr',
      'nvc /data',
      'nvc-installed /data',
      'builtin /data',
      'redis /data',
      'noop /data',
      'noop-installed /data',
    ]);
    expect(figures.site.every((r: { 'req/s': number; 'server cpu µs/req': number }) => r['req/s'] > 0 && r['server cpu µs/req'] > 0)).toBe(true);
    expect(figures.site.every((r: { errors: number }) => r.errors === 0)).toBe(true);
    expect(figures.integrity.gets.every((r: Record<string, number>) => r['hit % (secret)'] === 100 && r['hit % (no secret)'] === 100)).toBe(true);
    expect(figures.integrity.macs.length).toBe(15);
    expect(figures.tier.length).toBeGreaterThan(0);
    expect(figures.tier.every((r: Record<string, number>) => r['hot p50 µs']! > 0 && r['cold p50 µs']! > 0)).toBe(true);
    expect(figures.regeneration.map((r: { leases: string }) => r.leases.split(' ')[0])).toEqual(['off', 'on']);
    expect(figures.memory['tier 50 MiB: peak RSS MiB']).toBeGreaterThan(0);
    // The OpenTelemetry row measured what it says: the API hidden, present, and the SDK seeing every get.
    expect(figures.telemetry.rows.map((r: { mode: string }) => r.mode)).toEqual(['absent', 'api', 'sdk', 'absent', 'api', 'sdk']);
    expect(figures.telemetry.checks.absent.telemetryAvailable).toBe(false);
    expect(figures.telemetry.checks.api.telemetryAvailable).toBe(true);
    expect(figures.telemetry.checks.sdk.seen.gets).toBeGreaterThan(0);
  });
});
