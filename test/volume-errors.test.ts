import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isRoot, openCache, randomBytes, seededRandom, tempDir, walk } from './helpers';
import { runChildAsNobody } from './other-user';
import { appRoute, FETCH_CTX, fetchValue, PAGE_CTX } from './values';

// Real ENOSPC, EROFS and EACCES need root (mount, setpriv); CI runs as root.
const needRoot = isRoot() ? describe : describe.skip;
if (!isRoot()) console.log('SKIP volume-errors: needs root for tmpfs and bind mounts and setpriv (CI runs as root)');

const mounts: string[] = [];
const removeAfterAll: string[] = [];
afterAll(() => {
  for (const m of mounts.reverse()) execFileSync('umount', ['-l', m]);
  for (const dir of removeAfterAll) rmSync(dir, { recursive: true, force: true });
});

function mount(args: string[], target: string): void {
  execFileSync('mount', [...args, target]);
  mounts.push(target);
}

const debris = (root: string) => walk(root).filter((p) => p.includes('.tmp.'));

needRoot('real volume errors', () => {
  it('ENOSPC on a full tmpfs: the set fails quietly, no temp file, earlier entries still served', async () => {
    const root = tempDir();
    mount(['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs'], root);
    const c = await openCache({ dir: root });
    await c.handler.set('small', fetchValue(), FETCH_CTX);
    await c.handler.set('huge', appRoute(randomBytes(seededRandom(5), 1024 * 1024)), PAGE_CTX);
    expect(c.runtime.metrics.setFailures).toBe(1);
    expect(debris(root)).toEqual([]);
    expect(await c.handler.get('small', {})).not.toBeNull();
    expect(await c.handler.get('huge', {})).toBeNull();
    await c.runtime.close();
  });

  it('EROFS on a read-only bind mount: hits are served, sets fail quietly, invalidations reject', async () => {
    const source = tempDir();
    const writer = await openCache({ dir: source });
    await writer.handler.set('k', fetchValue(), FETCH_CTX);
    await writer.runtime.close();
    const readOnly = tempDir();
    mount(['--bind', source], readOnly);
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly]);
    const c = await openCache({ dir: readOnly });
    expect(await c.handler.get('k', {})).not.toBeNull();
    await c.handler.set('k2', fetchValue(), FETCH_CTX);
    expect(c.runtime.metrics.setFailures).toBe(1);
    expect(await c.handler.get('k2', {})).toBeNull();
    await expect(c.handler.revalidateTag(['data'])).rejects.toThrow();
    expect(debris(source)).toEqual([]);
    await c.runtime.close();
  });

  it('EACCES for a process running as another user: reads work, writes fail, nothing crashes', async () => {
    const parent = tempDir();
    removeAfterAll.push(parent);
    chmodSync(parent, 0o755);
    const root = path.join(parent, 'cache');
    mkdirSync(root);
    const owner = await openCache({ dir: root });
    await owner.handler.set('written-by-root', fetchValue(), FETCH_CTX);
    await owner.runtime.close();
    const result = await runChildAsNobody('as-other-user.js', [root]);
    expect(result.code, result.stderr).toBe(0);
    const out = JSON.parse(result.stdout) as { uid: number; hit: boolean; wrote: boolean; setFailures: number; invalidation: string };
    expect(out).toEqual({ uid: 65534, hit: true, wrote: false, setFailures: 1, invalidation: 'rejected' });
    expect(debris(root)).toEqual([]);
  });
});
