import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { VolumeFs } from '../lib/fs/syscalls';
import { MAX_SNAPSHOT_BYTES } from '../lib/tags/files';
import { encodeInvalidation } from '../lib/tags/record';
import { FaultyFs } from './fault-fs';
import { openCache, tempDir, type TestCache } from './helpers';
import { FETCH_CTX, fetchValue } from './values';

const opened: TestCache[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const c of opened.splice(0)) await c.runtime.close();
});

/** A cache root whose tag folders exist (a first process opened it), then a fresh process on it after `plant` damaged it. */
async function afterDamage(plant: (c: TestCache) => void, fs?: VolumeFs): Promise<TestCache> {
  const dir = tempDir('nvc-tag-damage-');
  const first = await openCache({ dir });
  await first.runtime.ready();
  plant(first);
  await first.runtime.close();
  // Refreshes are due every millisecond of performance.now(), which the later-scan tests step on a fake clock.
  const c = await openCache({ dir, tagRefreshMs: 1 }, fs);
  opened.push(c);
  await c.runtime.service.refreshTags(); // its first load of the tag state
  return c;
}

/** The next refresh of `c` is due (its interval, on a faked performance.now(), has passed) and rescans (a new head). */
async function rescan(c: TestCache, tag: string): Promise<void> {
  await c.handler.revalidateTag([tag]);
  vi.advanceTimersByTime(2);
  await c.runtime.service.refreshTags();
}

/** Sets a path's mtime `ms` before now, as a file last written then would have it; returns the mtime as stored (ns-rounded). */
function writtenAgo(file: string, ms: number): number {
  const when = new Date(Date.now() - ms);
  utimesSync(file, when, when);
  return statSync(file).mtimeMs;
}

describe('the tag log fails closed on a file it cannot use, bounded by what the file may hold (its mtime)', () => {
  it('a folder named like a segment cannot hold records any writer made (writers create regular files): a stranger, ignored, nothing expired', async () => {
    let mtime = 0;
    const c = await afterDamage((first) => {
      const segment = path.join(first.runtime.layout.invalidationsDir, 'someone-1-abcdef.000000.log');
      mkdirSync(segment);
      mtime = writtenAgo(segment, 10_000);
    });
    expect(c.runtime.metrics.tagFilesUnusable).toBe(0);
    expect(c.runtime.service.tagVerdict(['any'], mtime - 1)).toBe('fresh');
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(await c.handler.get('k', {})).not.toBeNull();
  });

  it('a snapshot that is a FIFO is refused without blocking and fails closed at its mtime', async () => {
    let mtime = 0;
    const c = await afterDamage((first) => {
      execFileSync('mkfifo', [first.runtime.layout.tagSnapshot]);
      mtime = writtenAgo(first.runtime.layout.tagSnapshot, 5_000);
    });
    expect(c.runtime.metrics.tagFilesUnusable).toBe(1);
    expect(c.runtime.service.tagVerdict(['t'], mtime - 1)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['t'], mtime + 1)).toBe('fresh');
  });

  it('a snapshot past its size cap (a sparse file: no memory reserved for it) or failing its check fails closed', async () => {
    for (const plant of [(file: string) => truncateSync(file, MAX_SNAPSHOT_BYTES + 1), (file: string) => writeFileSync(file, 'not a snapshot\n')]) {
      let mtime = 0;
      const c = await afterDamage((first) => {
        writeFileSync(first.runtime.layout.tagSnapshot, '');
        plant(first.runtime.layout.tagSnapshot);
        mtime = writtenAgo(first.runtime.layout.tagSnapshot, 5_000);
      });
      expect(c.runtime.metrics.tagFilesUnusable).toBe(1);
      expect(c.runtime.service.tagVerdict(['t'], mtime - 1)).toBe('expired');
      expect(c.runtime.service.tagVerdict(['t'], mtime + 1)).toBe('fresh');
    }
  });

  it('a segment that cannot be opened (EIO) fails closed at the mtime lstat gives; once readable again, its records count', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const name = 'someone-1-abcdef.000000.log';
    const faulty = new FaultyFs().add({ op: 'open', path: name, fault: { code: 'EIO' }, times: 1 });
    let mtime = 0;
    const c = await afterDamage((first) => {
      const segment = path.join(first.runtime.layout.invalidationsDir, name);
      // Its record is dated after the mtime the file is given (a writer's clock ahead): only reading it expires 'listed' past that mtime.
      const recorded = Date.now() - 1_000;
      writeFileSync(segment, encodeInvalidation({ tags: ['listed'], stale: recorded, expired: recorded }));
      mtime = writtenAgo(segment, 3_000);
    }, faulty);
    expect(c.runtime.metrics.tagFilesUnusable).toBe(1);
    expect(c.runtime.service.tagVerdict(['other'], mtime - 1)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['other'], mtime + 1)).toBe('fresh');
    expect(c.runtime.service.tagVerdict(['listed'], mtime + 1)).toBe('fresh'); // not read yet
    // The fault is gone (it fired once): the next scan reads the segment in full, and its record counts.
    await rescan(c, 'bump');
    expect(c.runtime.service.tagVerdict(['listed'], mtime + 1)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['other'], mtime - 1)).toBe('expired'); // the damage mark stays: what it expired stays expired
    expect(c.runtime.service.tagVerdict(['other'], mtime + 1)).toBe('fresh');
  });

  it('a name in the segment folder that is not a segment is ignored, whatever it holds', async () => {
    const c = await afterDamage((first) => {
      writeFileSync(path.join(first.runtime.layout.invalidationsDir, 'notes.txt'), encodeInvalidation({ tags: ['planted'], stale: 1, expired: 1 }));
      writeFileSync(path.join(first.runtime.layout.invalidationsDir, 'someone-1-abcdef.000000.log'), encodeInvalidation({ tags: ['real'], stale: 1, expired: 1 }));
    });
    expect(c.runtime.service.tagVerdict(['planted'], 0)).toBe('fresh');
    expect(c.runtime.service.tagVerdict(['real'], 0)).toBe('expired');
    expect(c.runtime.metrics.tagFilesUnusable).toBe(0);
  });

  it('a damaged file is judged again at every scan: removed, it is forgotten; damaged again later, it counts again', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const name = 'someone-1-abcdef.000000.log';
    const faulty = new FaultyFs().add({ op: 'open', path: name, fault: { code: 'EIO' } });
    let segment = '';
    const c = await afterDamage((first) => {
      segment = path.join(first.runtime.layout.invalidationsDir, name);
      writeFileSync(segment, encodeInvalidation({ tags: ['x'], stale: 1, expired: 1 }));
    }, faulty);
    expect(c.runtime.metrics.tagFilesUnusable).toBe(1);
    await rescan(c, 'still-damaged');
    expect(c.runtime.metrics.tagFilesUnusable).toBe(1);
    rmSync(segment);
    await rescan(c, 'removed');
    writeFileSync(segment, encodeInvalidation({ tags: ['x'], stale: 1, expired: 1 }));
    await rescan(c, 'damaged-again');
    expect(c.runtime.metrics.tagFilesUnusable).toBe(2);
  });
});
