import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../bin/cli';
import { METRIC } from '../lib/service/telemetry';
import { FaultyFs } from './fault-fs';
import { openCache, openedWithin15s, pollUntil, REPO, tempDir, type TestCache } from './helpers';
import { registerSdk } from './otel-sdk';
import { findPromtool, promtoolCheckExpressions, samples } from './prometheus-text';
import { appPage, FETCH_CTX, fetchValue, PAGE_CTX } from './values';

const DASHBOARD = path.join(REPO, 'examples', 'grafana', 'next-volume-cache.json');
const promtool = findPromtool();
if (!promtool) console.log('SKIP promtool check of the dashboard queries: no promtool (.ci/run unpacks it into .cache/promtool)');

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { uid: string };
  targets?: Array<{ expr: string; refId: string }>;
  panels?: Panel[];
}
interface Dashboard {
  __inputs: Array<{ name: string; pluginId: string }>;
  panels: Panel[];
  templating: { list: Array<{ name: string; query: { query: string } | string }> };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

/** Every panel, those inside collapsed rows too. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

/** Grafana's variables replaced by what PromQL accepts: intervals by a duration first, then `$var` by a word. */
function substituted(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)/g, '5m').replace(/\$\{?[a-zA-Z_]\w*\}?/g, 'x');
}

/** Metric and label names a PromQL expression uses, from the real PromQL grammar (the Prometheus UI's); throws on a syntax error. */
function namesIn(expr: string): { metrics: string[]; labels: string[] } {
  const tree = parser.parse(expr);
  const metrics: string[] = [];
  const labels: string[] = [];
  const cursor = tree.cursor();
  do {
    if (cursor.type.isError) throw new Error(`syntax error in ${expr} at ${cursor.from}`);
    const text = expr.slice(cursor.from, cursor.to);
    if (cursor.name === 'Identifier' && cursor.node.parent?.name === 'VectorSelector') metrics.push(text);
    if (cursor.name === 'LabelName') labels.push(text);
  } while (cursor.next());
  return { metrics, labels };
}

const panels = allPanels(dashboard.panels);
const expressions = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
const variableQueries = dashboard.templating.list.map((v) => (typeof v.query === 'string' ? v.query : v.query.query));

describe('the Grafana dashboard', () => {
  it('is a dashboard with a Prometheus data source input, unique panel ids and a query in every panel', () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', pluginId: 'prometheus' })]);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      expect(panel.datasource?.uid, panel.title).toBe('${DS_PROMETHEUS}');
    }
    expect(expressions.length).toBeGreaterThan(25);
  });

  it('has only valid PromQL: the PromQL grammar parses every query, and promtool accepts each as a rule', () => {
    for (const expr of expressions) expect(() => namesIn(substituted(expr)), expr).not.toThrow();
    expect(() => namesIn('sum(rate(x[5m])')).toThrow(/syntax error/);
    if (promtool) {
      expect(promtoolCheckExpressions(promtool, expressions.map(substituted))).toMatchObject({ code: 0, output: expect.stringContaining(`SUCCESS: ${expressions.length} rules found`) });
      expect(promtoolCheckExpressions(promtool, ['sum(rate(x[5m])']).code).not.toBe(0);
    }
  });

  it('queries only metric and label names the library emits (the OpenTelemetry Prometheus exporter and stats --format prometheus)', async () => {
    const emitted = await emittedNames();
    const used = expressions.map((e) => namesIn(substituted(e)));
    const metrics = new Set(used.flatMap((u) => u.metrics));
    const labels = new Set([...used.flatMap((u) => u.labels), ...variableQueries.flatMap((q) => [...q.matchAll(/label_values\((?:(\w+),\s*)?(\w+)\)/g)].map((m) => m[2]!))]);
    expect([...metrics].filter((m) => !emitted.metrics.has(m))).toEqual([]);
    // instance and job are added by Prometheus when it scrapes.
    expect([...labels].filter((l) => !emitted.labels.has(l) && l !== 'instance' && l !== 'job')).toEqual([]);
    // Every instrument is on the dashboard.
    const otel = [...emitted.otelFamilies].filter((f) => ![...metrics].some((m) => m === f || m.startsWith(`${f}_`)));
    expect(otel).toEqual([]);
  });
});

const opened: TestCache[] = [];
afterAll(async () => {
  for (const c of opened) await c.runtime.close();
});

/**
 * The names the library really emits: every instrument driven once through
 * the real SDK and read through the real Prometheus exporter's handler, and
 * every family of `stats --format prometheus`.
 */
async function emittedNames(): Promise<{ metrics: Set<string>; labels: Set<string>; otelFamilies: Set<string> }> {
  const sdk = registerSdk();
  try {
    const dir = tempDir('nvc-dashboard-');
    const fs = new FaultyFs();
    const a = await openCache({ dir, tagRefreshMs: 20, timeoutMs: 1000, memoryCacheBytes: 1024 * 1024 }, fs);
    const b = await openCache({ dir, tagRefreshMs: 20 });
    opened.push(a, b);
    for (const c of [a, b]) expect(await openedWithin15s(c.runtime)).toBe(true);
    const page = '/route-cache/APP_PAGE/h/$/p';
    await a.handler.set(page, appPage({ tags: 't' }), PAGE_CTX);
    await a.handler.get(page, { kind: 'APP_PAGE' });
    await a.handler.get(page, { kind: 'APP_PAGE' });
    await b.handler.set('f', fetchValue('v', ['t']), FETCH_CTX);
    await b.handler.get('f', { kind: 'FETCH' });
    await a.handler.revalidateTag(['t']);
    // b applies a's invalidation at its next tag refresh (every 20 ms here): its lag.
    await pollUntil(
      async () => {
        await b.handler.get('f', { kind: 'FETCH' });
        return sdk.scrape();
      },
      (text) => text.includes('next_volume_cache_invalidation_lag_seconds_count'),
    );
    fs.add({ op: 'writev', path: '/entries/', times: 1, fault: { code: 'ENOSPC' } });
    await a.handler.set(page, appPage(), PAGE_CTX);
    fs.add({ op: 'open', path: (p) => p.endsWith('.entry'), times: 1, fault: { hang: true } });
    await a.handler.get(page, { kind: 'APP_PAGE' });
    const file = path.join(tempDir('nvc-dashboard-'), 'file');
    writeFileSync(file, 'not a root');
    const broken = await openCache({ dir: file }, undefined, false);
    opened.push(broken);
    await broken.handler.revalidateTag(['t']).catch(() => undefined);
    const otel = await sdk.scrape();
    fs.releaseHung();
    // As the CronJob does: compact (the last compaction's time exists only after one), then stats.
    expect(await main(['compact', '--dir', dir], () => {})).toBe(0);
    let volume = '';
    await main(['stats', '--dir', dir, '--format', 'prometheus'], (t) => (volume += t + '\n'));
    const all = [...samples(otel), ...samples(volume)];
    const otelFamilies = new Set([...otel.matchAll(/^# TYPE (next_volume_cache\S*) \S+$/gm)].map((m) => m[1]!));
    // Each instrument was driven: a test that silently lost one would compare against less.
    expect(otelFamilies.size).toBe(Object.keys(METRIC).length);
    return { metrics: new Set(all.map((s) => s.name)), labels: new Set(all.flatMap((s) => Object.keys(s.labels))), otelFamilies };
  } finally {
    await sdk.shutdown();
  }
}
