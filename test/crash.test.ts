import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../bin/cli';
import { openCache, REPO, runInvalidator, seededRandom, tempDir, walk } from './helpers';

/** Trials per kind of work (NVC_CRASH_TRIALS for a longer soak). */
const TRIALS = Number(process.env.NVC_CRASH_TRIALS ?? 6);
const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('base64url');

/**
 * Runs `op` in a child and SIGKILLs it `ms` after its first piece of work is done (so that a slow
 * start on a busy machine does not make the kill land before any work); returns the lines it printed
 * (its acknowledgements).
 */
function runUntilKilled(op: string, dir: string, trial: number, ms: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(REPO, 'test/children/crash-op.js'), op, dir, String(trial)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    // 'close', not 'exit': 'exit' may come before the last output is read, and a line printed just
    // before the kill is an acknowledgement the test must check.
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`${op} exited on its own (${code}): ${err}`));
      // Only whole lines count: a line cut by the kill was not acknowledged.
      resolve(
        out
          .split('\n')
          .slice(0, -1)
          .filter((line) => line !== READY),
      );
    });
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!timer && out.includes(`${READY}\n`)) timer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  });
}

/** What test/children/crash-op.js prints once its first round of work is done. */
const READY = '#first-round-done';

describe('SIGKILL at random points', () => {
  it(`of set, image publication, revalidateTag, compact, purge and gc (${TRIALS} trials each): nothing corrupt served, no acknowledged invalidation lost, verify --repair leaves no debris`, { timeout: 300_000 }, async () => {
    const dir = tempDir('nvc-crash-');
    const seed = await openCache({ dir });
    await seed.handler.get('open', {});
    await seed.runtime.close();
    const random = seededRandom(77);
    const acknowledged: string[] = [];
    let purgesAcknowledged = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      for (const op of ['set', 'image', 'revalidate', 'compact', 'purge', 'gc']) {
        const lines = await runUntilKilled(op, dir, trial, 80 + Math.floor(random() * 400));
        if (op === 'revalidate') acknowledged.push(...lines);
        if (op === 'purge') purgesAcknowledged += lines.length;
      }
    }
    // What a fresh process is served: only whole, self-consistent values.
    const c = await openCache({ dir, lockStaleMs: 1000 });
    let served = 0;
    for (let k = 0; k < 10; k++) {
      for (const prefix of ['k', 'p', 'g']) {
        const got = await c.handler.get(`/route-cache/APP_ROUTE/crash/$/${prefix}${k}`, { kind: 'APP_ROUTE' });
        if (!got) continue;
        served++;
        const value = got.value as { kind: string; body: Buffer; headers: Record<string, string> };
        expect(sha(value.body)).toBe(value.headers['x-body-sha']);
      }
    }
    for (let k = 0; k < 5; k++) {
      const got = await c.handler.get(`img-${k}`, { kind: 'IMAGE' });
      if (got) {
        served++;
        const value = got.value as { kind: string; buffer: Buffer; etag: string };
        expect(sha(value.buffer)).toBe(value.etag);
      }
    }
    // Every acknowledged invalidation is in force.
    expect(acknowledged.filter((tag) => c.runtime.service.tagVerdict([tag], 1) !== 'expired')).toEqual([]);
    if (purgesAcknowledged > 0) expect(c.runtime.service.tagVerdict(['crash-purge'], 1)).toBe('expired');
    await c.runtime.close();
    // Repair removes all debris (temp files, orphan images) left by the kills. A lock a killed run left
    // behind goes stale after 1 s: --wait retries until it can take it over.
    let out = '';
    expect(
      await main(
        ['--json', 'verify', '--repair', '--debris-age', '0s', '--wait', '--lock-stale-ms', '1000', '--dir', dir],
        (t) => (out += t),
        () => {},
      ),
    ).toBe(0);
    const repaired = JSON.parse(out);
    out = '';
    expect(
      await main(
        ['--json', 'verify', '--debris-age', '0s', '--dir', dir],
        (t) => (out += t),
        () => {},
      ),
    ).toBe(0);
    const after = JSON.parse(out);
    expect(Object.values(after.problems).reduce((a: number, b) => a + (b as number), 0)).toBe(0);
    expect(walk(dir).filter((p) => path.basename(p).startsWith('.tmp.') && !p.includes('/locks/'))).toEqual([]);
    console.log(`crash: ${TRIALS * 6} kills, ${served} values served and verified, ${acknowledged.length} acknowledged invalidations all in force, repaired ${JSON.stringify(repaired.repaired)}`);
    expect(served).toBeGreaterThan(0);
    expect(acknowledged.length).toBeGreaterThan(0);
  });
});

describe("proper-lockfile's double-holder race (issue #121)", () => {
  it('maintenance stays correct when two runs hold the lock at once: two compactions and two gcs in parallel, writers invalidating', { timeout: 120_000 }, async () => {
    const { openMaintenance } = await import('../lib/maintenance');
    const { compactTags } = await import('../lib/tags/compact');
    const { collectGarbage } = await import('../lib/maintenance/gc');
    const dir = tempDir('nvc-double-');
    const c = await openCache({ dir, leaseTimeoutMs: 3000 });
    await c.handler.get('open', {});
    const writers = Promise.all([0, 1].map((w) => runInvalidator(dir, 3000, `d${w}`, 3000)));
    const noLock = { check() {} };
    let rounds = 0;
    let done = false;
    const maintenance = (async () => {
      while (!done) {
        const [m1, m2] = await Promise.all([openMaintenance({ dir, logLevel: 'silent', leaseTimeoutMs: 3000 }), openMaintenance({ dir, logLevel: 'silent', leaseTimeoutMs: 3000 })]);
        await Promise.all([compactTags(m1, noLock), compactTags(m2, noLock)]);
        const gcOptions = { dryRun: false, graceMs: 0, debrisAgeMs: 60_000 };
        await Promise.all([collectGarbage(m1, gcOptions, noLock), collectGarbage(m2, gcOptions, noLock)]);
        rounds++;
      }
    })();
    const acknowledged = (await writers).flat();
    done = true;
    await maintenance;
    const fresh = await openCache({ dir });
    await fresh.handler.get('warm', {});
    expect(acknowledged.length).toBeGreaterThan(50);
    expect(rounds).toBeGreaterThan(2);
    expect(acknowledged.filter((t) => fresh.runtime.service.tagVerdict([t], 1) !== 'expired')).toEqual([]);
    await c.runtime.close();
    await fresh.runtime.close();
  });
});
