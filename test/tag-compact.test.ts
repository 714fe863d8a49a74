import { existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compact } from '../lib/maintenance';
import type { Layout } from '../lib/store/layout';
import { encodeInvalidation } from '../lib/tags/record';
import { openCache, tempDir, type TestCache } from './helpers';

const opened: TestCache[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) await c.runtime.close();
});

/** A cache root (opened once, closed), its layout. */
async function root(): Promise<{ dir: string; layout: Layout }> {
  const dir = tempDir('nvc-compact-');
  const c = await openCache({ dir });
  await c.runtime.ready();
  await c.runtime.close();
  return { dir, layout: c.runtime.layout };
}

/** A process opening the root after compaction: what it judges. */
async function fresh(dir: string): Promise<TestCache> {
  const c = await openCache({ dir });
  opened.push(c);
  await c.runtime.service.refreshTags();
  return c;
}

/** A segment of a writer with no lease (gone): compaction may fold and delete it. */
function goneWritersSegment(layout: Layout, name: string, records: Array<{ tags: string[]; at: number }>): string {
  const file = path.join(layout.invalidationsDir, name);
  writeFileSync(file, records.map((r) => encodeInvalidation({ tags: r.tags, stale: r.at, expired: r.at })).join(''));
  return file;
}

const compactIt = (dir: string) => compact({ dir, logLevel: 'silent' });

describe('compaction of the tag log', () => {
  it("folds a gone writer's segment into the snapshot and deletes it; a new process starts from the snapshot", async () => {
    const { dir, layout } = await root();
    const at = Date.now() - 1000;
    const file = goneWritersSegment(layout, 'gone-1-aaaaaa.000000.log', [
      { tags: ['a'], at },
      { tags: ['b'], at },
    ]);
    const result = await compactIt(dir);
    expect(result).toMatchObject({ segmentsRead: 1, recordsFolded: 2, segmentsDeleted: 1, segmentsUnreadable: 0, snapshotReplaced: false });
    expect(existsSync(file)).toBe(false);
    const c = await fresh(dir);
    expect(c.runtime.service.tagVerdict(['a'], at - 1)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['c'], at - 1)).toBe('fresh');
  });

  it('keeps tags of any name through the snapshot, __proto__ and constructor included', async () => {
    const { dir, layout } = await root();
    const at = Date.now() - 1000;
    const tags = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    goneWritersSegment(layout, 'gone-2-bbbbbb.000000.log', [{ tags, at }]);
    expect(await compactIt(dir)).toMatchObject({ recordsFolded: 1, segmentsDeleted: 1 });
    const c = await fresh(dir);
    for (const tag of tags) expect(c.runtime.service.tagVerdict([tag], at - 1), tag).toBe('expired');
  });

  it('replaces a damaged snapshot by one that fails closed up to its mtime: nothing it may have held is lost', async () => {
    const { dir, layout } = await root();
    writeFileSync(layout.tagSnapshot, 'garbage that fails its check\n');
    const when = new Date(Date.now() - 5000);
    utimesSync(layout.tagSnapshot, when, when);
    const mtime = statSync(layout.tagSnapshot).mtimeMs;
    const result = await compactIt(dir);
    expect(result.snapshotReplaced).toBe(true);
    const c = await fresh(dir);
    expect(c.runtime.metrics.tagFilesUnusable).toBe(0); // the new snapshot is readable
    expect(c.runtime.service.tagVerdict(['anything'], mtime - 1)).toBe('expired');
    expect(c.runtime.service.tagVerdict(['anything'], mtime + 1)).toBe('fresh');
  });

  it('leaves a folder named like a segment (a stranger: no writer makes one) and other strangers in place, counted; folds the others', async () => {
    const { dir, layout } = await root();
    const unreadable = path.join(layout.invalidationsDir, 'broken-1-bbbbbb.000000.log');
    mkdirSync(unreadable);
    goneWritersSegment(layout, 'gone-1-aaaaaa.000000.log', [{ tags: ['a'], at: Date.now() - 1000 }]);
    writeFileSync(path.join(layout.invalidationsDir, 'README'), 'not a segment');
    const result = await compactIt(dir);
    expect(result).toMatchObject({ segmentsRead: 1, segmentsUnreadable: 0, segmentsDeleted: 1, strangers: 2 });
    expect(readdirSync(layout.invalidationsDir).sort()).toEqual(['README', 'broken-1-bbbbbb.000000.log']);
  });

  it("drops tags older than gc's watermark: they can no longer judge any entry", async () => {
    const { dir, layout } = await root();
    const now = Date.now();
    goneWritersSegment(layout, 'gone-1-aaaaaa.000000.log', [
      { tags: ['old'], at: now - 60_000 },
      { tags: ['new'], at: now - 1000 },
    ]);
    writeFileSync(layout.watermark, `${now - 30_000}\n`);
    const result = await compactIt(dir);
    expect(result).toMatchObject({ recordsFolded: 2, tagsDropped: 1, tags: 1 });
    const c = await fresh(dir);
    expect(c.runtime.service.tagVerdict(['new'], now - 2000)).toBe('expired');
  });
});
