import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { cli } from './cli-in-process';
import { openMaintenance, purge } from '../lib/maintenance';
import { purgeEntries } from '../lib/maintenance/purge';
import { hashKey } from '../lib/store/hash';
import { FaultyFs } from './fault-fs';
import { DIST, openCache, runChild, tempDir, waitFor, walk } from './helpers';
import { appPage, appRoute, FETCH_CTX, fetchValue, image, PAGE_CTX, pages, redirect } from './values';

const pageKey = (i: number) => `/route-cache/APP_PAGE/h/$/blog/${i}`;

/** A store filled by the library itself: every kind, tags, images. */
async function filledStore(): Promise<string> {
  const dir = tempDir('nvc-cli-');
  const c = await openCache({ dir });
  for (let i = 0; i < 5; i++) await c.handler.set(pageKey(i), appPage({ tags: `post,_N_T_/layout,_N_T_/blog/${i}` }), PAGE_CTX);
  for (let i = 0; i < 3; i++) await c.handler.set(`fetch-${i}`, fetchValue(`body-${i}`, ['data']), FETCH_CTX);
  await c.handler.set('/route-cache/APP_ROUTE/h/$/api', appRoute(), PAGE_CTX);
  await c.handler.set('/route-cache/PAGES/h/$/p', pages(), { kind: 'PAGES', cacheControl: { revalidate: 10, expire: 100 } });
  await c.handler.set('/route-cache/PAGES/h/$/r', redirect(), { kind: 'PAGES', cacheControl: { revalidate: 10, expire: 100 } });
  await c.handler.set('/route-cache/PAGES/h/$/gone', null, { kind: 'PAGES', cacheControl: { revalidate: 10, expire: 100 } });
  await c.handler.set('img-1', image(Buffer.alloc(3000, 1)), { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } });
  await c.handler.set('img-2', image(Buffer.alloc(5000, 2)), { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } });
  await c.runtime.close();
  return dir;
}

/** A CLI child whose exit is listened for from its spawn, so that an early exit is never missed. */
function spawnCli(args: string[]): { child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn(process.execPath, [path.join(DIST, 'bin/cli.js'), ...args], { stdio: 'ignore' });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', reject);
  });
  return { child, exited };
}

/** The filled store plus `count` entries invalidated by a tag: gc's work. Returns their files. */
async function storeWithDoomedEntries(count: number): Promise<{ dir: string; doomed: string[] }> {
  const dir = await filledStore();
  const c = await openCache({ dir });
  const keys = Array.from({ length: count }, (_, i) => `bulk-${i}`);
  for (let i = 0; i < count; i += 16) await Promise.all(keys.slice(i, i + 16).map((key) => c.handler.set(key, fetchValue(key, ['bulk']), FETCH_CTX)));
  await c.handler.revalidateTag(['bulk']);
  await c.runtime.close();
  const doomed = keys.map((key) => c.runtime.layout.entryPath(hashKey(key)));
  expect(doomed.filter((file) => !existsSync(file))).toEqual([]);
  return { dir, doomed };
}

/** Resolves at the first deletion of one of `files`, seen through inotify on their folders. */
function watchFirstDeletion(files: string[]): { deleted: Promise<void>; close(): void } {
  const names = new Set(files.map((file) => path.basename(file)));
  const watchers: FSWatcher[] = [];
  const deleted = new Promise<void>((resolve, reject) => {
    for (const dir of new Set(files.map((file) => path.dirname(file)))) {
      const watcher = watch(dir, (event, name) => {
        if (event === 'rename' && name !== null && names.has(name) && !existsSync(path.join(dir, name))) resolve();
      });
      watcher.on('error', reject);
      watchers.push(watcher);
    }
  });
  return { deleted, close: () => watchers.forEach((watcher) => watcher.close()) };
}

interface KilledGc {
  dir: string;
  doomed: string[];
  /** SIGKILLed after it had deleted some of the doomed entries and before it had deleted them all. */
  midway: boolean;
  /** How it ended, for the failure message. */
  outcome: string;
}

/** Runs gc in a child and SIGKILLs it as soon as it has deleted its first doomed entry. */
async function killGcAtFirstDeletion(count: number): Promise<KilledGc> {
  const { dir, doomed } = await storeWithDoomedEntries(count);
  const firstDeletion = watchFirstDeletion(doomed);
  const gc = spawnCli(['gc', '--dir', dir]);
  try {
    const first = await Promise.race([firstDeletion.deleted.then(() => 'deleting' as const), gc.exited.then(() => 'finished' as const)]);
    if (first === 'deleting') gc.child.kill('SIGKILL');
    const { code, signal } = await gc.exited;
    const left = doomed.filter((file) => existsSync(file)).length;
    return { dir, doomed, midway: signal === 'SIGKILL' && left > 0 && left < count, outcome: `ended by ${signal ?? `exit ${code}`} with ${left} of ${count} left` };
  } finally {
    firstDeletion.close();
    if (gc.child.exitCode === null && gc.child.signalCode === null) {
      gc.child.kill('SIGKILL');
      await gc.exited.catch(() => undefined);
    }
  }
}

describe('stats', () => {
  it('counts entries per kind and namespace, images, shards and the tag log, as a table and as JSON', async () => {
    const dir = await filledStore();
    const human = await cli('stats', '--dir', dir);
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/^entries\s+12 \(/m);
    expect(human.out).toMatch(/APP_PAGE\s+5 /);
    expect(human.out).toMatch(/^images\s+2 \(7\.8 KiB\)/m);
    const json = await cli('--json', 'stats', '--dir', dir);
    const s = JSON.parse(json.out);
    expect(s.entries.byKind).toMatchObject({ APP_PAGE: { count: 5 }, FETCH: { count: 3 }, APP_ROUTE: { count: 1 }, PAGES: { count: 1 }, REDIRECT: { count: 1 }, NULL: { count: 1 } });
    expect(s.entries.byNamespace.shared.count).toBe(12);
    expect(s.images.total).toEqual({ count: 2, bytes: 8000 });
    expect(s.debris.temp.count).toBe(0);
    expect(s.tagLog.memberSegments).toBe(1);
    expect(s.shards.largest.files).toBeGreaterThanOrEqual(1);
  });
});

describe('verify', () => {
  it('finds every planted fault (exit 3) and --repair fixes them (then exit 0)', async () => {
    const dir = await filledStore();
    expect((await cli('verify', '--dir', dir)).code).toBe(0);
    const m = await openMaintenance({ dir, logLevel: 'silent' });
    const entry = m.layout.entryPath(hashKey(pageKey(0)));
    writeFileSync(entry, readFileSync(entry).subarray(0, 100));
    const shard = path.dirname(m.layout.entryPath(hashKey(pageKey(1))));
    writeFileSync(path.join(shard, 'notes.txt'), 'someone left this');
    symlinkSync('/etc/passwd', path.join(shard, 'aaaaaaaaaaaaaaaa.entry'));
    const old = new Date(Date.now() - 2 * 3_600_000);
    const temp = path.join(shard, `.tmp.${path.basename(entry)}.dead-writer.abc`);
    writeFileSync(temp, 'half');
    utimesSync(temp, old, old);
    const young = path.join(shard, `.tmp.x.entry.live-writer.abc`);
    writeFileSync(young, 'being written');
    const imageDir = path.join(m.layout.imagesDir(), hashKey('img-1').slice(0, 2), hashKey('img-1').slice(2, 4));
    const orphan = path.join(imageDir, `${hashKey('img-1')}.0123456789abcdef.png`);
    writeFileSync(orphan, 'orphan bytes');
    utimesSync(orphan, old, old);
    const segment = readdirSync(m.layout.membersDir)[0]!;
    writeFileSync(path.join(m.layout.membersDir, segment), 'garbage line\n', { flag: 'a' });
    const nfs = path.join(shard, '.nfs000000000001');
    writeFileSync(nfs, 'silly');

    const report = await cli('--json', 'verify', '--dir', dir);
    expect(report.code).toBe(3);
    const found = JSON.parse(report.out);
    expect(found.problems).toMatchObject({ 'corrupt-entry': 1, 'temp-debris': 1, 'orphan-image': 1, 'foreign-file': 2, 'log-garbage': 1 });
    expect(found.inFlight).toBe(1);

    const repaired = await cli('--json', 'verify', '--repair', '--dir', dir);
    expect(repaired.code, repaired.out + repaired.err).toBe(0);
    expect(existsSync(entry) || existsSync(temp) || existsSync(orphan)).toBe(false);
    expect(existsSync(young)).toBe(true); // a live writer's temp file is never touched
    expect(existsSync(nfs)).toBe(true); // nor is an NFS silly-rename file
    expect(existsSync('/etc/passwd')).toBe(true);
    expect(readdirSync(path.join(m.layout.appDir, 'quarantine'))).toHaveLength(2);
    expect((await cli('verify', '--dir', dir)).code).toBe(0);
  });
});

describe('gc', () => {
  it('deletes expired and invalidated entries, enforces the image budget least recently used first, and --dry-run deletes nothing', async () => {
    const dir = tempDir('nvc-gc-');
    const c = await openCache({ dir });
    await c.handler.set('short', fetchValue(), { ...FETCH_CTX });
    // Written 2 s ago on this process's (already calibrated) clock: past its 1 s expire without waiting for it.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 2000 });
    try {
      await c.handler.set(pageKey(1), appPage({ tags: 'post' }), { kind: 'APP_PAGE', cacheControl: { revalidate: 1, expire: 1 } });
    } finally {
      vi.useRealTimers();
    }
    await c.handler.set(pageKey(2), appPage({ tags: 'keep' }), PAGE_CTX);
    await c.handler.set(pageKey(3), appPage({ tags: 'doomed' }), PAGE_CTX);
    await c.handler.revalidateTag(['doomed']);
    for (const [i, hoursAgo] of [
      [1, 30],
      [2, 20],
      [3, 0],
    ] as const) {
      await c.handler.set(`img-${i}`, image(Buffer.alloc(10_000, i)), { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } });
      const sidecar = JSON.parse(readFileSync(c.runtime.layout.sidecarPath(hashKey(`img-${i}`)), 'utf8'));
      const when = new Date(Date.now() - hoursAgo * 3_600_000);
      utimesSync(path.join(path.dirname(c.runtime.layout.sidecarPath(hashKey(`img-${i}`))), sidecar.file), when, when);
    }
    await c.runtime.close();
    const dry = JSON.parse((await cli('--json', 'gc', '--dir', dir, '--dry-run', '--grace', '0s', '--image-max-bytes', '15000')).out);
    expect(dry).toMatchObject({ dryRun: true, expired: { count: 1 }, invalidated: { count: 1 }, images: { evicted: 2 } });
    expect(walk(dir).filter((p) => p.endsWith('.entry'))).toHaveLength(4);
    const real = await cli('--json', 'gc', '--dir', dir, '--grace', '0s', '--image-max-bytes', '15000');
    expect(real.code).toBe(0);
    expect(JSON.parse(real.out)).toMatchObject({ expired: { count: 1 }, invalidated: { count: 1 }, images: { evicted: 2 }, kept: { entries: 2, images: 1 } });
    const c2 = await openCache({ dir });
    expect(await c2.handler.get(pageKey(2), {})).not.toBeNull();
    expect(await c2.handler.get('short', {})).not.toBeNull();
    expect(await c2.handler.get('img-3', { kind: 'IMAGE' })).not.toBeNull();
    expect(await c2.handler.get('img-1', { kind: 'IMAGE' })).toBeNull();
    expect(walk(path.join(dir, 'apps/default/images')).filter((p) => p.endsWith('.png'))).toHaveLength(1);
    await c2.runtime.close();
  });
});

describe('purge', () => {
  it('by tag finds entries through the index, opening only the matched entry files, and records the invalidation', async () => {
    const dir = await filledStore();
    const fs = new FaultyFs();
    const m = await openMaintenance({ dir, logLevel: 'silent' }, { fs });
    const result = await purgeEntries(m, { tags: ['_N_T_/blog/2'] }, false, { check() {} });
    expect(result).toMatchObject({ method: 'index', matched: 1, deleted: 1, invalidated: ['_N_T_/blog/2'] });
    expect(fs.opened.filter((p) => p.endsWith('.entry'))).toHaveLength(1);
    const c = await openCache({ dir });
    expect(await c.handler.get(pageKey(2), {})).toBeNull();
    expect(await c.handler.get(pageKey(3), {})).not.toBeNull();
    expect(c.runtime.service.tagVerdict(['_N_T_/blog/2'], 1)).toBe('expired');
    await c.runtime.close();
  });

  it('by path, kind, age, key and all; --scan and --dry-run', async () => {
    const dir = await filledStore();
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--tag', 'data', '--dry-run')).out)).toMatchObject({ matched: 3, deleted: 0 });
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--tag', 'data', '--scan')).out)).toMatchObject({ method: 'scan', deleted: 3 });
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--path', '/blog/4')).out)).toMatchObject({ deleted: 1, invalidated: ['_N_T_/blog/4'] });
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--kind', 'REDIRECT')).out)).toMatchObject({ deleted: 1 });
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--older-than', '1d')).out)).toMatchObject({ deleted: 0 });
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--key', pageKey(0))).out)).toMatchObject({ method: 'keys', deleted: 1 });
    expect(JSON.parse((await cli('--json', 'purge', '--dir', dir, '--kind', 'IMAGE')).out)).toMatchObject({ deleted: 2 });
    const all = JSON.parse((await cli('--json', 'purge', '--dir', dir, '--all', '--yes')).out);
    expect(all.deleted).toBe(12 - 3 - 1 - 1 - 1);
    expect(walk(dir).filter((p) => p.endsWith('.entry') || (p.endsWith('.json') && p.includes('/images/')))).toEqual([]);
  });

  it('under concurrent readers and writers: zero errors for them, exactly the tagged entries deleted', async () => {
    const dir = await filledStore();
    const writers = path.join(dir, 'apps/default/writers');
    const leasesBefore = readdirSync(writers).length;
    const load = ['writer', 'reader', 'reader'].map((role, i) => runChild('stress.js', [role, dir, '3000', '6', `p${i}`]));
    // The purge starts once all three have opened the cache (each keeps a lease), not after a guessed delay.
    expect(await waitFor(() => readdirSync(writers).length >= leasesBefore + 3)).toBe(true);
    const result = await purge({ dir, logLevel: 'silent', selection: { tags: ['post'] }, wait: true });
    expect(result.deleted).toBe(5);
    const runs = await Promise.all(load);
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).torn).toBe(0);
    }
    const c = await openCache({ dir });
    for (let i = 0; i < 3; i++) expect(await c.handler.get(`fetch-${i}`, {})).not.toBeNull();
    await c.runtime.close();
  });
});

describe('inspect', () => {
  it('shows where a key lives, its tags and whether an invalidation applies; --raw includes the value', async () => {
    const dir = await filledStore();
    await cli('purge', '--dir', dir, '--tag', 'nothing-carries-this');
    const c = await openCache({ dir });
    await c.handler.revalidateTag(['post'], { expire: 31_536_000 });
    await c.runtime.close();
    const result = await cli('inspect', pageKey(1), '--dir', dir, '--raw');
    expect(result.code).toBe(0);
    const view = JSON.parse(result.out);
    expect(view.entry).toMatchObject({ exists: true, kind: 'APP_PAGE', tagVerdict: 'stale', invalidatedTags: ['post'] });
    expect(view.entry.path).toBe(path.join(dir, 'apps/default/entries/shared', view.hash.slice(0, 2), view.hash.slice(2, 4), `${view.hash}.entry`));
    expect(view.entry.value.rscData.type).toBe('Buffer');
    expect(JSON.parse((await cli('inspect', 'img-1', '--dir', dir)).out).image.sidecar.size).toBe(3000);
    expect((await cli('inspect', 'no-such-key', '--dir', dir)).code).toBe(1);
  });
});

describe('usage and safety', () => {
  it('bad flags, bad values and a folder that is not a cache root exit 2 with one line, touching nothing', async () => {
    const dir = await filledStore();
    expect((await cli('gc', '--dir', dir, '--bogus')).code).toBe(2);
    expect((await cli('gc', '--dir', dir, '--grace', 'tomorrow')).code).toBe(2);
    expect((await cli('gc', '--dir', dir, '--max-bytes', 'lots')).code).toBe(2);
    expect((await cli('purge', '--dir', dir)).code).toBe(2);
    expect((await cli('purge', '--dir', 'relative/dir', '--all')).code).toBe(2);
    const notACache = tempDir('nvc-not-a-cache-');
    mkdirSync(path.join(notACache, 'precious'));
    writeFileSync(path.join(notACache, 'precious', 'data'), 'x');
    const refused = await cli('purge', '--dir', notACache, '--all');
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/is not a next-volume-cache root/);
    expect(refused.err.trim().split('\n')).toHaveLength(1);
    expect(readdirSync(notACache)).toEqual(['precious']);
  });

  it('a second destructive run exits 4 while the lock is held; a SIGKILLed run leaves a lock that is taken over', async () => {
    const dir = await filledStore();
    for (let i = 0; i < 300; i++) writeFileSync(path.join(dir, 'apps/default/entries/shared', `bulk-${i}`), 'x');
    const waiter = spawnCli(['gc', '--dir', dir, '--wait']);
    // Hold the lock from this process while the child waits, then kill the child and check recovery.
    const m = await openMaintenance({ dir, logLevel: 'silent', lockStaleMs: 2000 });
    const { locked } = await import('../lib/maintenance/context');
    await locked(m, { wait: true }, async () => {
      expect((await cli('gc', '--dir', dir, '--no-wait')).code).toBe(4);
    });
    waiter.child.kill('SIGKILL');
    await waiter.exited;
    // Simulate a run killed while holding the lock: a lock folder nobody refreshes.
    mkdirSync(path.join(m.layout.locksDir, 'maintenance.lock'), { recursive: true });
    expect((await cli('gc', '--dir', dir, '--no-wait', '--lock-stale-ms', '2000')).code).toBe(4);
    // Nobody refreshed it for 3 s (its mtime says so): past the 2 s stale time, without waiting for it.
    const threeSecondsAgo = new Date(Date.now() - 3000);
    utimesSync(path.join(m.layout.locksDir, 'maintenance.lock'), threeSecondsAgo, threeSecondsAgo);
    const after = await cli('gc', '--dir', dir, '--no-wait', '--lock-stale-ms', '2000');
    expect(after.code, after.err).toBe(0);
    expect((await cli('verify', '--dir', dir)).code).toBe(3); // the planted bulk files are foreign, reported
  });

  it('a gc SIGKILLed mid-way leaves a consistent store', async () => {
    // Killed at its first deletion, gc is mid-way unless it deleted every doomed entry before the
    // kill landed (a slow parent, a fast child): then again with a bigger store, never a vacuous pass.
    let run: KilledGc | undefined;
    for (const count of [400, 2000, 8000]) {
      if (run) rmSync(run.dir, { recursive: true, force: true });
      run = await killGcAtFirstDeletion(count);
      if (run.midway) break;
    }
    const { dir, doomed, midway, outcome } = run!;
    console.log(`gc kill: ${outcome}`);
    try {
      expect(midway, `gc was not killed mid-way, even on the biggest store: ${outcome}`).toBe(true);
      const report = JSON.parse((await cli('--json', 'verify', '--dir', dir)).out);
      expect(report.problems['corrupt-entry']).toBe(0);
      const done = await cli('--json', 'gc', '--dir', dir, '--wait', '--lock-stale-ms', '2000');
      expect(done.code, done.err).toBe(0);
      expect(doomed.filter((file) => existsSync(file))).toEqual([]);
      const c2 = await openCache({ dir });
      for (let i = 0; i < 5; i++) expect(await c2.handler.get(pageKey(i), {})).not.toBeNull();
      for (let i = 0; i < 3; i++) expect(await c2.handler.get(`fetch-${i}`, {})).not.toBeNull();
      await c2.runtime.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
