import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil, tempDir, waitFor } from '../helpers';
import { findPromtool, promtoolCheckMetrics, structuralProblems, total } from '../prometheus-text';
import * as fixture from '../../scripts/fixture-app.js';

/**
 * The fixture app under `next start`, twice on one cache folder, with the
 * real OpenTelemetry SDK registered by the app's instrumentation hook (see
 * fixtures/next-app/instrumentation.js and otel-setup.cjs): spans written by
 * each server to a file, metrics scraped from each server's OpenTelemetry
 * Prometheus exporter, as a Prometheus server would.
 */
type Server = Awaited<ReturnType<typeof fixture.startServer>> & { spansFile: string; metricsUrl: string };

interface SpanLine {
  name: string;
  scope: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  attributes: Record<string, unknown>;
  status: { code: number };
}

const SCOPE = 'next-volume-cache';
const REQUEST_SPAN = 'BaseServer.handleRequest';
const promtool = findPromtool();

let data: Awaited<ReturnType<typeof fixture.startDataServer>>;
let a: Server;
let b: Server;

async function startWithOtel(name: string, cacheDir: string, outDir: string): Promise<Server> {
  const port = await fixture.freePort();
  const spansFile = path.join(outDir, `spans-${name}.jsonl`);
  const server = await fixture.startServer({
    name,
    cacheDir,
    dataPort: data.port,
    env: { FIXTURE_OTEL_SETUP: path.join(__dirname, 'otel-setup.cjs'), FIXTURE_OTEL_SPANS: spansFile, FIXTURE_OTEL_PROMETHEUS_PORT: String(port) },
  });
  return { ...server, spansFile, metricsUrl: `http://127.0.0.1:${port}/metrics` };
}

beforeAll(async () => {
  await fixture.buildFixture({ log: (m: string) => console.log(m) });
  const cacheDir = tempDir('nvc-e2e-otel-');
  const outDir = tempDir('nvc-e2e-otel-out-');
  data = await fixture.startDataServer();
  [a, b] = await Promise.all([startWithOtel('A', cacheDir, outDir), startWithOtel('B', cacheDir, outDir)]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await data?.stop();
});

async function get(server: Server, pathname: string): Promise<string | null> {
  const res = await fetch(server.url + pathname);
  await res.text();
  return res.headers.get('x-nextjs-cache');
}

async function scrape(server: Server): Promise<string> {
  return (await fetch(server.metricsUrl)).text();
}

function spans(server: Server): SpanLine[] {
  if (!existsSync(server.spansFile)) return [];
  return readFileSync(server.spansFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as SpanLine);
}

/** The top of a span's parent chain within its trace (undefined while an ancestor has not ended, so is not written yet). */
function rootOf(span: SpanLine, all: Map<string, SpanLine>): SpanLine | undefined {
  let current = span;
  for (let depth = 0; current.parentSpanId; depth++) {
    const parent = all.get(current.parentSpanId);
    if (!parent || depth > 100) return undefined;
    current = parent;
  }
  return current;
}

describe('the fixture app with the real OpenTelemetry SDK', () => {
  it("counts a miss and a set on A, the shared entry's hits on B; each server's exporter output is valid Prometheus text", async () => {
    await get(a, '/isr');
    expect(await get(b, '/isr')).toBe('HIT');
    expect(await get(b, '/isr')).toBe('HIT');
    const onA = await scrape(a);
    const onB = await scrape(b);
    // Pages only (the namespace kind is the build's, or shared when the build has no usable BUILD_ID).
    const page = { next_volume_cache_entry_kind: 'app_page' };
    expect(total(onA, 'next_volume_cache_sets_total', page)).toBeGreaterThanOrEqual(1);
    expect(total(onB, 'next_volume_cache_gets_total', { ...page, next_volume_cache_get_outcome: 'hit' })).toBeGreaterThanOrEqual(1);
    // The second request on B is served from its memory tier.
    expect(total(onB, 'next_volume_cache_gets_total', { ...page, next_volume_cache_get_outcome: 'memory_hit' })).toBeGreaterThanOrEqual(1);
    expect(total(onB + onA, 'next_volume_cache_gets_total', { next_volume_cache_get_outcome: 'miss' })).toBeGreaterThanOrEqual(1);
    expect(total(onB, 'next_volume_cache_get_duration_seconds_count', page)).toBe(total(onB, 'next_volume_cache_gets_total', page));
    for (const text of [onA, onB]) {
      if (promtool) expect(promtoolCheckMetrics(promtool, text)).toMatchObject({ code: 0 });
      expect(structuralProblems(text)).toEqual([]);
    }
  });

  it("records A's revalidateTag, and B applies it with the invalidation's lag", async () => {
    await get(a, '/blog/a');
    expect(await get(b, '/blog/a')).toBe('HIT');
    const before = total(await scrape(b), 'next_volume_cache_invalidations_total', { next_volume_cache_invalidation_phase: 'applied' });
    const sent = Date.now();
    await fetch(`${a.url}/api/revalidate?tag=_N_T_/blog/a`);
    // Next records revalidations after the response is sent.
    expect(await waitFor(async () => total(await scrape(a), 'next_volume_cache_invalidations_total', { next_volume_cache_invalidation_phase: 'recorded' }) >= 1, 20_000, 100)).toBe(true);
    // B answers HIT until its next tag refresh (every 200 ms) reads A's record.
    expect(
      await pollUntil(
        () => get(b, '/blog/a'),
        (cache) => cache !== 'HIT',
        20_000,
        50,
      ),
    ).toBe('MISS');
    const applied = (text: string) => total(text, 'next_volume_cache_invalidations_total', { next_volume_cache_invalidation_phase: 'applied' });
    const onB = await pollUntil(
      () => scrape(b),
      (text) => applied(text) > before,
      20_000,
      100,
    );
    expect(applied(onB)).toBeGreaterThan(before);
    const seen = (Date.now() - sent) / 1000;
    const lags = total(onB, 'next_volume_cache_invalidation_lag_seconds_count');
    const lagSum = total(onB, 'next_volume_cache_invalidation_lag_seconds_sum');
    expect(lags).toBeGreaterThanOrEqual(1);
    // At least the refresh interval B waited at most; no more than the time it took to see it (the volume clock rounds to ms).
    expect(lagSum / lags).toBeGreaterThan(0);
    expect(lagSum / lags).toBeLessThanOrEqual(seen + 0.05);
    // A does not count its own record as one arriving from elsewhere.
    expect(total(await scrape(a), 'next_volume_cache_invalidations_total', { next_volume_cache_invalidation_phase: 'applied' })).toBe(0);
  });

  it("puts every get, set and revalidateTag span in the trace of Next's request span", async () => {
    await get(b, '/data');
    await fetch(`${a.url}/api/revalidate?tag=data`);
    const check = (server: Server) => {
      const all = spans(server);
      const byId = new Map(all.map((s) => [s.spanId, s]));
      const ours = all.filter((s) => s.scope === SCOPE);
      const roots = ours.map((s) => rootOf(s, byId));
      // A background regeneration's set may end after its request span: wait until every ancestor is written.
      if (roots.some((r) => r === undefined)) return undefined;
      return { ours, roots: roots as SpanLine[] };
    };
    for (const server of [a, b]) {
      const written = await pollUntil(
        () => Promise.resolve(check(server)),
        (found) => found !== undefined,
        20_000,
        100,
      );
      expect(written, `${server.name}'s request spans written`).toBeDefined();
      const { ours, roots } = written!;
      expect(ours.length).toBeGreaterThan(3);
      for (const [i, span] of ours.entries()) {
        expect(roots[i]!.attributes['next.span_type'], `${span.name} under ${roots[i]!.name}`).toBe(REQUEST_SPAN);
        expect(roots[i]!.traceId).toBe(span.traceId);
        expect(roots[i]!.scope).toBe('next.js');
      }
      const names = new Set(ours.map((s) => s.name));
      expect(names).toContain('next_volume_cache.get');
      expect(names).toContain('next_volume_cache.set');
    }
    // One per revalidation request (two in this file), each under its API route's request.
    const revalidate = await pollUntil(
      () => Promise.resolve(spans(a).filter((s) => s.name === 'next_volume_cache.revalidate_tag')),
      (found) => found.length >= 2,
      20_000,
      100,
    );
    expect(revalidate.length).toBe(2);
    expect(revalidate.every((s) => s.attributes['next_volume_cache.tag.count'] === 1)).toBe(true);
    const hits = spans(b).filter((s) => s.name === 'next_volume_cache.get' && s.attributes['next_volume_cache.get.outcome'] === 'hit');
    expect(hits.length).toBeGreaterThanOrEqual(1);
    expect(hits[0]!.attributes['next_volume_cache.key.hash']).toMatch(/^[0-9a-f]{16}$/);
  });
});
