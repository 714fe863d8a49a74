import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfinedFs, readFailure, type WriteSettings } from '../lib/fs/confined';
import { nodeFs, type VolumeFs } from '../lib/fs/syscalls';
import { FaultyFs } from './fault-fs';
import { codeOf, tempDir } from './helpers';

const WRITES: WriteSettings = { writer: 'test', fsync: false, fileMode: undefined, dirMode: undefined };

/** A root with a file `inside/file` and, beside the root, a folder `outside` with a file `secret` the library must never reach. */
function rootWithNeighbour(): { root: string; outside: string } {
  const base = tempDir('nvc-confined-');
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  mkdirSync(path.join(root, 'inside'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(path.join(root, 'inside', 'file'), 'mine');
  writeFileSync(path.join(outside, 'secret'), 'not yours');
  return { root, outside };
}

describe.each([
  ['with /proc/self/fd location checks', (): VolumeFs => nodeFs],
  ['without /proc (each folder on the way checked with lstat)', (): VolumeFs => new FaultyFs().hideProc()],
])('ConfinedFs refusals, %s', (_name, raw) => {
  it('refuses a path outside the root, before any system call', async () => {
    const { root, outside } = rootWithNeighbour();
    const fs = new ConfinedFs(raw(), root, WRITES);
    for (const file of [path.join(outside, 'secret'), path.join(root, '..', 'outside', 'secret'), `${root}-sibling/file`]) {
      expect(() => fs.inside(file)).toThrow(expect.objectContaining({ code: 'EOUTSIDE' }));
      expect(await codeOf(fs.readFile(file, { maxBytes: 100 }))).toBe('EOUTSIDE');
    }
    expect(fs.inside(path.join(root, 'inside', '..', 'inside', 'file'))).toBe(path.join(root, 'inside', 'file'));
  });

  it('refuses to read, list or write through a folder on the way that is a link to outside the root', async () => {
    const { root, outside } = rootWithNeighbour();
    mkdirSync(path.join(outside, 'sub'));
    writeFileSync(path.join(outside, 'sub', 'deeper'), 'not yours either');
    symlinkSync(outside, path.join(root, 'linked'));
    const fs = new ConfinedFs(raw(), root, WRITES);
    const read = await codeOf(fs.readFile(path.join(root, 'linked', 'secret'), { maxBytes: 100 }));
    expect(read).toBe('EOUTSIDE');
    expect(readFailure(Object.assign(new Error(), { code: read }))).toBe('not-a-file');
    const sub = path.join(root, 'linked', 'sub');
    expect(await codeOf(fs.list(sub))).toBe('EOUTSIDE');
    expect(await codeOf(fs.lstat(path.join(sub, 'deeper')))).toBe('EOUTSIDE');
    expect(await codeOf(fs.writeAtomic(path.join(sub, 'planted'), [Buffer.from('x')]))).toBe('EOUTSIDE');
    expect(await codeOf(fs.unlink(path.join(sub, 'deeper')))).toBe('EOUTSIDE');
    expect(await codeOf(fs.mkdir(path.join(sub, 'made')))).toBe('EOUTSIDE');
    // The link itself is never opened as a folder (O_DIRECTORY | O_NOFOLLOW): nothing of ours is there.
    const direct = await codeOf(fs.list(path.join(root, 'linked')));
    expect(direct).toBe('ENOTDIR');
    expect(readFailure(Object.assign(new Error(), { code: direct }))).toBe('absent');
    expect(await codeOf(fs.writeAtomic(path.join(root, 'linked', 'planted'), [Buffer.from('x')]))).toBe('ENOTDIR');
    expect(readdirSync(outside).sort()).toEqual(['secret', 'sub']);
    expect(readdirSync(path.join(outside, 'sub'))).toEqual(['deeper']);
    expect(readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('not yours');
  });

  it('refuses a file that is itself a link (O_NOFOLLOW), and reads the link as a link with lstat', async () => {
    const { root, outside } = rootWithNeighbour();
    const link = path.join(root, 'inside', 'link');
    symlinkSync(path.join(outside, 'secret'), link);
    const fs = new ConfinedFs(raw(), root, WRITES);
    const code = await codeOf(fs.readFile(link, { maxBytes: 100 }));
    expect(code).toBe('ELOOP');
    expect(readFailure(Object.assign(new Error(), { code }))).toBe('not-a-file');
    expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
  });

  it('does not block on a FIFO and refuses it as not a regular file; a folder is refused too', async () => {
    const { root } = rootWithNeighbour();
    const fifo = path.join(root, 'inside', 'fifo');
    execFileSync('mkfifo', [fifo]);
    const fs = new ConfinedFs(raw(), root, WRITES);
    // Opened without O_NONBLOCK, a FIFO with no writer would hang this read forever (the test would time out).
    expect(await codeOf(fs.readFile(fifo, { maxBytes: 100 }))).toBe('ENOTREG');
    expect(await codeOf(fs.readFile(path.join(root, 'inside'), { maxBytes: 100 }))).toBe('ENOTREG');
    expect(readFailure(Object.assign(new Error(), { code: 'ENOTREG' }))).toBe('not-a-file');
  });

  it('reads what is really inside', async () => {
    const { root } = rootWithNeighbour();
    const fs = new ConfinedFs(raw(), root, WRITES);
    expect((await fs.readFile(path.join(root, 'inside', 'file'), { maxBytes: 100 })).toString()).toBe('mine');
    expect(await fs.list(path.join(root, 'inside'))).toEqual(['file']);
  });
});

describe('ConfinedFs started reads (with /proc/self/fd location checks)', () => {
  it('a started read through a folder that is a link is refused, and closed only once the read begun beside the check is done', async () => {
    const { root, outside } = rootWithNeighbour();
    symlinkSync(outside, path.join(root, 'linked'));
    // The read starts before the location check (it overlaps the check): here it hangs until released.
    const faulty = new FaultyFs(nodeFs).add({ op: 'read', path: 'secret', times: 1, fault: { hang: true } });
    const fs = new ConfinedFs(faulty, root, WRITES);
    let settled = false;
    const refused = codeOf(fs.startReading(path.join(root, 'linked', 'secret'), { maxBytes: 100 })).finally(() => (settled = true));
    // Issued once the open is done; the check (a readlink on this thread) fails in that same turn.
    while ((faulty.counts.get('read') ?? 0) === 0) await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    expect(faulty.counts.get('close') ?? 0).toBe(0); // not closed under the read: its descriptor number could be reused
    faulty.releaseHung();
    expect(await refused).toBe('EOUTSIDE');
    expect(faulty.counts.get('close')).toBe(1);
    const { handle, read } = await fs.startReading(path.join(root, 'inside', 'file'), { maxBytes: 100 });
    expect((await read.finish(await read.stats)).toString()).toBe('mine');
    await read.idle();
    await handle.close();
  });
});

describe('ConfinedFs writes', () => {
  it('writeAtomic with ifAbsent publishes once, then reports the target present and leaves no temp file', async () => {
    const { root } = rootWithNeighbour();
    const fs = new ConfinedFs(nodeFs, root, WRITES);
    const target = path.join(root, 'inside', 'once');
    expect(await fs.writeAtomic(target, [Buffer.from('first')], { ifAbsent: true })).toBe(true);
    expect(await fs.writeAtomic(target, [Buffer.from('second')], { ifAbsent: true })).toBe(false);
    expect(readFileSync(target, 'utf8')).toBe('first');
    expect(readdirSync(path.join(root, 'inside')).sort()).toEqual(['file', 'once']);
  });

  it('a publication that fails removes its temp file and rethrows', async () => {
    const { root } = rootWithNeighbour();
    const fs = new ConfinedFs(nodeFs, root, WRITES);
    // rename() of a file over a non-empty folder fails (EISDIR): the temp file must not stay behind.
    mkdirSync(path.join(root, 'inside', 'busy', 'child'), { recursive: true });
    expect(await codeOf(fs.writeAtomic(path.join(root, 'inside', 'busy'), [Buffer.from('x')]))).toBe('EISDIR');
    expect(readdirSync(path.join(root, 'inside')).sort()).toEqual(['busy', 'file']);
  });

  it('creates at most the missing folders it is allowed to, never a whole tree', async () => {
    const { root } = rootWithNeighbour();
    const fs = new ConfinedFs(nodeFs, root, WRITES);
    const deep = path.join(root, 'a', 'b', 'c', 'entry');
    expect(await codeOf(fs.writeAtomic(deep, [Buffer.from('x')]))).toBe('ENOENT');
    expect(await codeOf(fs.writeAtomic(deep, [Buffer.from('x')], { createParents: 2 }))).toBe('ENOENT');
    expect(existsSync(path.join(root, 'a'))).toBe(false);
    expect(await fs.writeAtomic(deep, [Buffer.from('x')], { createParents: 3 })).toBe(true);
    expect(readFileSync(deep, 'utf8')).toBe('x');
    expect(await fs.mkdir(path.join(root, 'a'))).toBe(false);
    expect(await fs.unlink(path.join(root, 'a', 'b', 'c', 'gone'))).toBe(false);
  });

  it('ensureRoot creates a missing root only when its parents may be created too', async () => {
    const base = tempDir('nvc-confined-root-');
    const root = path.join(base, 'not', 'mounted', 'cache');
    expect(await codeOf(new ConfinedFs(nodeFs, root, WRITES).ensureRoot(false))).toBe('ENOENT');
    expect(existsSync(path.join(base, 'not'))).toBe(false);
    const fs = new ConfinedFs(nodeFs, root, WRITES);
    await fs.ensureRoot(true);
    expect(await fs.resolveRoot()).toBe(root);
    await fs.ensureRoot(true); // an existing root is fine
  });
});
