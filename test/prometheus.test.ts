import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './cli-in-process';
import { compact } from '../lib/maintenance';
import { renderPrometheus } from '../lib/maintenance/prometheus';
import { bindHandler } from '../lib/next/handler';
import { bindUseCacheHandler } from '../lib/next/use-cache';
import { openCache, tempDir, walk } from './helpers';
import { familyNames, findPromtool, promtoolCheckMetrics, samples, structuralProblems } from './prometheus-text';
import { appPage, FETCH_CTX, fetchValue, image, PAGE_CTX } from './values';

const promtool = findPromtool();
if (!promtool) console.log("SKIP promtool checks: no promtool (.ci/run unpacks it from Debian's prometheus package into .cache/promtool)");

/** A `.next/server` folder of a build, as Next passes it to the handler. */
function buildFolder(buildId: string): string {
  const next = path.join(tempDir('nvc-build-'), '.next');
  mkdirSync(path.join(next, 'server'), { recursive: true });
  writeFileSync(path.join(next, 'BUILD_ID'), buildId);
  return path.join(next, 'server');
}

/** A root with pages in a build namespace, shared fetches, 'use cache' entries, images, debris, an invalidation and a compaction. */
async function volume(app = 'default', dir = tempDir('nvc-prom-')): Promise<string> {
  const c = await openCache({ dir, app });
  const Pages = bindHandler(() => c.runtime);
  const inBuild = new Pages({ serverDistDir: buildFolder('build-1') });
  for (let i = 0; i < 3; i++) await inBuild.set(`/route-cache/APP_PAGE/h/$/p/${i}`, appPage({ tags: `_N_T_/p/${i}` }), PAGE_CTX);
  for (let i = 0; i < 2; i++) await c.handler.set(`fetch-${i}`, fetchValue(`body-${i}`, ['data']), FETCH_CTX);
  await c.handler.set('img', image(Buffer.alloc(4000, 7)), { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } });
  const useCache = bindUseCacheHandler(() => c.runtime);
  const body = new ReadableStream<Uint8Array>({ start: (ctl) => (ctl.enqueue(new TextEncoder().encode('v')), ctl.close()) });
  await useCache.set('uc-1', Promise.resolve({ value: body, tags: ['t'], stale: 30, timestamp: Date.now(), expire: 3600, revalidate: 60 }));
  await c.handler.revalidateTag(['data']);
  await c.runtime.close();
  await compact({ dir, app });
  // A write interrupted mid-way leaves its temp file; something else dropped a foreign file.
  const shard = path.dirname(walk(dir).find((p) => p.endsWith('.entry'))!);
  writeFileSync(path.join(shard, '.tmp.interrupted'), Buffer.alloc(123));
  writeFileSync(path.join(shard, 'README.txt'), 'not ours');
  return dir;
}

/** The one sample of `name` whose labels include `labels`. */
function value(text: string, name: string, labels: Record<string, string> = {}): number {
  const found = samples(text).filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples of ${name} with ${JSON.stringify(labels)}`);
  return found[0]!.value;
}

describe('stats --format prometheus', () => {
  it("prints the volume's figures as gauges that Prometheus's own parser accepts, matching stats --json", async () => {
    const dir = await volume();
    const prom = await cli('stats', '--dir', dir, '--format', 'prometheus');
    expect(prom.code, prom.err).toBe(0);
    const json = JSON.parse((await cli('stats', '--dir', dir, '--json')).out);
    // The node-exporter textfile collector rejects a whole file for one bad line, and TYPE lines after samples.
    if (promtool) expect(promtoolCheckMetrics(promtool, prom.out)).toEqual({ code: 0, output: '' });
    expect(structuralProblems(prom.out)).toEqual([]);
    expect(prom.out.endsWith('\n')).toBe(true);
    expect(prom.out).not.toMatch(/_total\b/);

    const families = familyNames(prom.out);
    expect(families.length).toBeGreaterThan(20);
    for (const name of families) {
      expect(prom.out).toMatch(new RegExp(`^# TYPE ${name} gauge$`, 'm'));
      expect(prom.out).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
    }
    const text = prom.out;
    const app = { next_volume_cache_app: 'default' };
    const build = Object.keys(json.entries.byNamespace).find((ns) => ns !== 'shared' && ns !== 'use-cache')!;
    expect(value(text, 'next_volume_cache_volume_entries', { next_volume_cache_namespace: build, next_volume_cache_namespace_kind: 'build', next_volume_cache_entry_kind: 'app_page' })).toBe(3);
    expect(value(text, 'next_volume_cache_volume_entries', { next_volume_cache_namespace: 'shared', next_volume_cache_entry_kind: 'fetch' })).toBe(2);
    expect(value(text, 'next_volume_cache_volume_entries', { next_volume_cache_namespace_kind: 'use-cache', next_volume_cache_entry_kind: 'use_cache' })).toBe(1);
    const entryBytes = samples(text)
      .filter((x) => x.name === 'next_volume_cache_volume_entry_bytes')
      .reduce((sum, x) => sum + x.value, 0);
    expect(entryBytes).toBe(json.entries.total.bytes);
    expect(value(text, 'next_volume_cache_volume_images', app)).toBe(1);
    expect(value(text, 'next_volume_cache_volume_image_bytes', app)).toBe(json.images.total.bytes);
    expect(value(text, 'next_volume_cache_volume_debris_files', { next_volume_cache_debris_kind: 'temp' })).toBe(1);
    expect(value(text, 'next_volume_cache_volume_debris_bytes', { next_volume_cache_debris_kind: 'temp' })).toBe(123);
    expect(value(text, 'next_volume_cache_volume_debris_files', { next_volume_cache_debris_kind: 'foreign' })).toBe(1);
    expect(value(text, 'next_volume_cache_tag_log_segments', { next_volume_cache_tag_log: 'invalidations' })).toBe(json.tagLog.segments);
    expect(value(text, 'next_volume_cache_tag_log_segment_bytes', { next_volume_cache_tag_log: 'memberships' })).toBe(json.tagLog.memberSegmentBytes);
    expect(value(text, 'next_volume_cache_tag_log_snapshot_tags', app)).toBe(json.tagLog.snapshotTags);
    expect(value(text, 'next_volume_cache_tag_log_last_compaction_timestamp_seconds', app)).toBe(Date.parse(json.tagLog.lastCompaction) / 1000);
    expect(Math.abs(value(text, 'next_volume_cache_tag_log_last_compaction_timestamp_seconds', app) - Date.now() / 1000)).toBeLessThan(600);
    expect(value(text, 'next_volume_cache_writers', app)).toBe(json.tagLog.writers);
    expect(value(text, 'next_volume_cache_writers_alive', app)).toBe(json.tagLog.writersAlive);
    expect(value(text, 'next_volume_cache_volume_builds', app)).toBe(1);
  });

  it("with --all-apps: one document, each family once with every app's series", async () => {
    const dir = await volume('shop');
    await volume('blog', dir);
    const prom = await cli('stats', '--dir', dir, '--all-apps', '--format', 'prometheus');
    expect(prom.code, prom.err).toBe(0);
    if (promtool) expect(promtoolCheckMetrics(promtool, prom.out)).toEqual({ code: 0, output: '' });
    expect(structuralProblems(prom.out)).toEqual([]);
    expect(prom.out.match(/^# TYPE next_volume_cache_writers gauge$/gm)).toHaveLength(1);
    const writers = samples(prom.out)
      .filter((x) => x.name === 'next_volume_cache_writers')
      .map((x) => x.labels.next_volume_cache_app)
      .sort();
    expect(writers).toEqual(['blog', 'shop']);
  });

  it('writes no zero for a timestamp that does not exist (never compacted): the series is left out', async () => {
    const dir = tempDir('nvc-prom-');
    const c = await openCache({ dir });
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    await c.runtime.close();
    const prom = await cli('stats', '--dir', dir, '--format', 'prometheus');
    expect(familyNames(prom.out)).toContain('next_volume_cache_tag_log_last_compaction_timestamp_seconds');
    expect(samples(prom.out).filter((x) => x.name === 'next_volume_cache_tag_log_last_compaction_timestamp_seconds')).toEqual([]);
    if (promtool) expect(promtoolCheckMetrics(promtool, prom.out).code).toBe(0);
  });

  it('is refused, before anything runs, by commands that have no such output; --json stays an alias of --format json', async () => {
    const dir = await volume();
    const files = walk(dir).length;
    const gc = await cli('gc', '--dir', dir, '--grace', '0', '--format', 'prometheus');
    expect(gc.code).toBe(2);
    expect(gc.err).toMatch(/--format prometheus is only for stats/);
    expect(walk(dir).length).toBe(files);
    expect((await cli('stats', '--dir', dir, '--json', '--format', 'table')).code).toBe(2);
    const viaFormat = JSON.parse((await cli('stats', '--dir', dir, '--format', 'json')).out);
    const viaAlias = JSON.parse((await cli('--json', 'stats', '--dir', dir)).out);
    expect(viaFormat.entries).toEqual(viaAlias.entries);
    expect((await cli('stats', '--dir', dir, '--format', 'yaml')).code).toBe(2);
    expect(readdirSync(dir)).toContain('apps');
  });
});

describe('the text format writer', () => {
  it('escapes label values and help text so that they read back exactly', () => {
    const tricky = 'a "quoted" \\ back\nslash';
    const text = renderPrometheus([
      {
        name: 'escaped_labels',
        help: 'help with \\ and\nnewline',
        type: 'gauge',
        samples: [
          { labels: { l: tricky }, value: 1.5 },
          { labels: { l: '' }, value: NaN },
        ],
      },
    ]);
    if (promtool) expect(promtoolCheckMetrics(promtool, text + '\n')).toEqual({ code: 0, output: '' });
    const parsed = samples(text);
    expect(parsed.map((x) => x.labels.l)).toEqual([tricky, '']);
    expect(parsed[1]!.value).toBeNaN();
  });

  it('merges families of one name and refuses what the format does not allow', () => {
    const sample = (app: string) => ({ labels: { next_volume_cache_app: app }, value: 1 });
    const merged = renderPrometheus([
      { name: 'a', help: 'A', type: 'gauge', samples: [sample('x')] },
      { name: 'b', help: 'B', type: 'gauge', samples: [sample('x')] },
      { name: 'a', help: 'A', type: 'gauge', samples: [sample('y')] },
    ]);
    expect(structuralProblems(merged)).toEqual([]);
    expect(merged.split('\n').filter((l) => l.startsWith('a{'))).toHaveLength(2);
    expect(() => renderPrometheus([{ name: 'a', help: 'A', type: 'gauge', samples: [sample('x'), sample('x')] }])).toThrow(/duplicate series/);
    expect(() => renderPrometheus([{ name: 'nvc-entries', help: 'A', type: 'gauge', samples: [] }])).toThrow(/invalid metric name/);
    expect(() => renderPrometheus([{ name: 'a', help: 'A', type: 'gauge', samples: [{ labels: { '1x': 'v' }, value: 1 }] }])).toThrow(/invalid label name/);
  });

  it('the structural check catches split families and duplicate series, which promtool lets through', () => {
    const split = '# HELP a A\n# TYPE a gauge\na 1\n# HELP b B\n# TYPE b gauge\nb 1\na{x="1"} 2\n';
    const duplicate = '# HELP a A\n# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n';
    expect(structuralProblems(split)).toEqual(['family a is split by another family']);
    expect(structuralProblems(duplicate)).toEqual(['duplicate series a{x="1"}']);
    if (promtool) expect(promtoolCheckMetrics(promtool, duplicate).code).toBe(0);
  });
});
