import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CacheOptions } from '../lib/config';
import { bindUseCacheHandler } from '../lib/next/use-cache';
import { hashKey } from '../lib/store/hash';
import { SCOPE } from '../lib/service/telemetry';
import { FaultyFs } from './fault-fs';
import { openCache, openedWithin15s, pollUntil, runChild, tempDir, waitFor, type TestCache } from './helpers';
import { registerSdk, type Sdk } from './otel-sdk';
import { total } from './prometheus-text';
import { appPage, FETCH_CTX, fetchValue, PAGE_CTX } from './values';

const PAGE = { kind: 'APP_PAGE' } as const;
const opened: TestCache[] = [];
async function cache(app: string, options: CacheOptions = {}, fs?: FaultyFs): Promise<TestCache> {
  const c = await openCache({ dir: tempDir('nvc-otel-'), app, ...options }, fs);
  opened.push(c);
  return c;
}

let sdk: Sdk;
let beforeSdk: TestCache;

beforeAll(async () => {
  // A get before the app registered its SDK: what the API hands out then stays a no-op for good.
  beforeSdk = await cache('lazy');
  await beforeSdk.handler.get('k', PAGE);
  sdk = registerSdk();
});

afterAll(async () => {
  for (const c of opened) await c.runtime.close();
  await sdk?.shutdown();
});

describe('OpenTelemetry metrics with the real SDK', () => {
  it('counts from the first call after the SDK registers, and follows a replaced meter provider', async () => {
    await beforeSdk.handler.get('k', PAGE);
    await beforeSdk.handler.get('k2', PAGE);
    expect(total(await sdk.scrape(), 'next_volume_cache_gets_total', { next_volume_cache_app: 'lazy' })).toBe(2);
    await sdk.replaceMeterProvider();
    await beforeSdk.handler.get('k', PAGE);
    expect(total(await sdk.scrape(), 'next_volume_cache_gets_total', { next_volume_cache_app: 'lazy' })).toBe(1);
    expect(beforeSdk.runtime.metrics.gets).toBe(4);
  });

  it('counts gets by outcome and miss cause, sets and their failures, with latency histograms', async () => {
    const fs = new FaultyFs();
    const c = await cache('outcomes', { memoryCacheBytes: 10 * 1024 * 1024 }, fs);
    const page = '/route-cache/APP_PAGE/h/$/outcome-page';
    await c.handler.set(page, appPage({ tags: 'outcome-tag-1' }), PAGE_CTX);
    await c.handler.get('/route-cache/APP_PAGE/h/$/absent', PAGE); // miss: absent
    await c.handler.get(page, PAGE); // hit, read from the volume (and kept in memory)
    await c.handler.get(page, PAGE); // memory_hit
    await c.handler.revalidateTag(['outcome-tag-1'], { expire: 3600 });
    await c.handler.get(page, PAGE); // stale: this process takes the regeneration lease
    await c.handler.set('outcome-fetch', fetchValue('x', ['outcome-tag-2']), { ...FETCH_CTX, tags: ['outcome-tag-2'] });
    await c.handler.revalidateTag(['outcome-tag-2']);
    await c.handler.get('outcome-fetch', { kind: 'FETCH', tags: ['outcome-tag-2'] }); // miss: invalidated
    fs.add({ op: 'writev', path: '/entries/', times: 1, fault: { code: 'ENOSPC' } });
    await c.handler.set('/route-cache/APP_PAGE/h/$/full', appPage(), PAGE_CTX); // fails: the disk is full
    await bindUseCacheHandler(() => c.runtime).get('use-cache-key', []); // miss: absent, in the 'use cache' namespace

    const text = await sdk.scrape();
    const app = { next_volume_cache_app: 'outcomes' };
    const pageGets = { ...app, next_volume_cache_namespace_kind: 'shared', next_volume_cache_entry_kind: 'app_page' };
    expect(total(text, 'next_volume_cache_gets_total', { ...pageGets, next_volume_cache_get_outcome: 'hit' })).toBe(1);
    expect(total(text, 'next_volume_cache_gets_total', { ...pageGets, next_volume_cache_get_outcome: 'memory_hit' })).toBe(1);
    expect(total(text, 'next_volume_cache_gets_total', { ...pageGets, next_volume_cache_get_outcome: 'stale' })).toBe(1);
    expect(total(text, 'next_volume_cache_gets_total', { ...pageGets, next_volume_cache_get_outcome: 'miss', next_volume_cache_miss_cause: 'absent' })).toBe(1);
    expect(total(text, 'next_volume_cache_gets_total', { ...app, next_volume_cache_entry_kind: 'fetch', next_volume_cache_miss_cause: 'invalidated' })).toBe(1);
    expect(total(text, 'next_volume_cache_gets_total', { ...app, next_volume_cache_namespace_kind: 'use-cache', next_volume_cache_entry_kind: 'use_cache', next_volume_cache_miss_cause: 'absent' })).toBe(1);
    // Every get is timed once, and the numbers agree with getMetrics().
    expect(total(text, 'next_volume_cache_get_duration_seconds_count', app)).toBe(6);
    expect(c.runtime.metrics.gets).toBe(6);
    expect(total(text, 'next_volume_cache_get_duration_seconds_sum', app)).toBeGreaterThan(0);
    expect(total(text, 'next_volume_cache_sets_total', app)).toBe(3);
    expect(total(text, 'next_volume_cache_set_duration_seconds_count', app)).toBe(3);
    expect(total(text, 'next_volume_cache_set_failures_total', { ...app, error_type: 'ENOSPC', next_volume_cache_entry_kind: 'app_page' })).toBe(1);
    expect(total(text, 'next_volume_cache_invalidations_total', { ...app, next_volume_cache_invalidation_phase: 'recorded' })).toBe(2);
    // Neither a key nor a tag is ever a label value: their number has no bound.
    for (const word of ['outcome-page', 'outcome-fetch', 'outcome-tag', 'use-cache-key', '/route-cache']) expect(text).not.toContain(word);
  });

  it('counts timeouts per operation, and shows the slot a hung call holds until it returns', async () => {
    const fs = new FaultyFs();
    const c = await cache('hung', { timeoutMs: 1000, concurrency: 2 }, fs);
    expect(await openedWithin15s(c.runtime)).toBe(true);
    await c.handler.set('/route-cache/APP_PAGE/h/$/hung', appPage(), PAGE_CTX);
    // The set's tag index append runs in the background: with it holding a slot, the get would time out waiting for one instead.
    expect(await waitFor(() => c.runtime.service.gateSlots().active === 0)).toBe(true);
    fs.add({ op: 'open', path: (p) => p.endsWith('.entry'), times: 1, fault: { hang: true } });
    expect(await c.handler.get('/route-cache/APP_PAGE/h/$/hung', PAGE)).toBeNull();
    const app = { next_volume_cache_app: 'hung' };
    const text = await sdk.scrape();
    expect(total(text, 'next_volume_cache_gate_failures_total', { ...app, next_volume_cache_operation: 'get', error_type: 'timeout' })).toBe(1);
    expect(total(text, 'next_volume_cache_gets_total', { ...app, next_volume_cache_miss_cause: 'timeout' })).toBe(1);
    expect(total(text, 'next_volume_cache_gate_slot_usage', { ...app, next_volume_cache_gate_slot_state: 'stuck' })).toBe(1);
    expect(total(text, 'next_volume_cache_gate_slot_limit', app)).toBe(2);
    fs.releaseHung();
    expect(await waitFor(async () => total(await sdk.scrape(), 'next_volume_cache_gate_slot_usage', { ...app, next_volume_cache_gate_slot_state: 'stuck' }) === 0)).toBe(true);
  });

  it("records another process's invalidation as applied here, with its lag; its own records are not counted again", async () => {
    const dir = tempDir('nvc-otel-lag-');
    const a = await openCache({ dir, app: 'lag', tagRefreshMs: 50 });
    const b = await openCache({ dir, app: 'lag', tagRefreshMs: 50 });
    opened.push(a, b);
    await a.handler.set('lag-fetch', fetchValue('v', ['lag-tag']), { ...FETCH_CTX, tags: ['lag-tag'] });
    expect(await b.handler.get('lag-fetch', { kind: 'FETCH', tags: ['lag-tag'] })).not.toBeNull(); // b's view is loaded
    const app = { next_volume_cache_app: 'lag' };
    const invalidatedAt = performance.now();
    await a.handler.revalidateTag(['lag-tag']);
    const applied = (text: string) => total(text, 'next_volume_cache_invalidations_total', { ...app, next_volume_cache_invalidation_phase: 'applied' });
    const text = await pollUntil(
      async () => {
        await b.handler.get('lag-fetch', { kind: 'FETCH', tags: ['lag-tag'] });
        return sdk.scrape();
      },
      (scraped) => applied(scraped) > 0,
    );
    expect(applied(text)).toBe(1);
    const elapsed = (performance.now() - invalidatedAt) / 1000;
    expect(total(text, 'next_volume_cache_invalidation_lag_seconds_count', app)).toBe(1);
    const lag = total(text, 'next_volume_cache_invalidation_lag_seconds_sum', app);
    expect(lag).toBeGreaterThanOrEqual(0);
    // Both stamps are on the volume clock; allow its millisecond rounding and the two runtimes' calibrations.
    expect(lag).toBeLessThanOrEqual(elapsed + 0.05);
    // a reads its own segment back at its next refresh: that is not an invalidation arriving.
    const refreshes = a.runtime.metrics.tagRefreshes;
    const readBack = await pollUntil(
      async () => {
        await a.handler.get('lag-fetch', { kind: 'FETCH', tags: ['lag-tag'] });
        return a.runtime.metrics.tagRefreshes;
      },
      (n) => n > refreshes,
    );
    expect(readBack).toBeGreaterThan(refreshes);
    const after = await sdk.scrape();
    expect(total(after, 'next_volume_cache_invalidations_total', { ...app, next_volume_cache_invalidation_phase: 'applied' })).toBe(1);
    expect(total(after, 'next_volume_cache_invalidations_total', { ...app, next_volume_cache_invalidation_phase: 'recorded' })).toBe(1);
    expect(total(after, 'next_volume_cache_tag_refresh_duration_seconds_count', app)).toBeGreaterThanOrEqual(2);
  });

  it("reports the tag view's age, the gate's limit and the memory tier while the runtime is open, and nothing once it is closed", async () => {
    const c = await cache('gauges', { memoryCacheBytes: 10 * 1024 * 1024, concurrency: 3 });
    await c.handler.set('/route-cache/APP_PAGE/h/$/g', appPage(), PAGE_CTX);
    await c.handler.get('/route-cache/APP_PAGE/h/$/g', PAGE);
    const app = { next_volume_cache_app: 'gauges' };
    const text = await sdk.scrape();
    const age = total(text, 'next_volume_cache_tag_view_age_seconds', app);
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(60);
    expect(total(text, 'next_volume_cache_gate_slot_limit', app)).toBe(3);
    expect(total(text, 'next_volume_cache_memory_usage_bytes', app)).toBe(c.runtime.metricsSnapshot().memory.bytes);
    expect(total(text, 'next_volume_cache_memory_usage_bytes', app)).toBeGreaterThan(0);
    expect(total(text, 'next_volume_cache_memory_entries', app)).toBe(1);
    expect(total(text, 'next_volume_cache_memory_limit_bytes', app)).toBe(10 * 1024 * 1024);
    // Closed, it is no longer read: the app's figures are the next runtime's alone (runtimes of one app add up).
    await c.runtime.close();
    const next = await cache('gauges', { concurrency: 5 });
    await next.handler.get('x', PAGE);
    expect(total(await sdk.scrape(), 'next_volume_cache_gate_slot_limit', app)).toBe(5);
  });
});

describe('OpenTelemetry spans with the real SDK', () => {
  it('are children of the active span, carry the outcome and the key hash, and report failures with error.type', async () => {
    const fs = new FaultyFs();
    const c = await cache('spans', {}, fs);
    const key = '/route-cache/APP_PAGE/h/$/span-page';
    const tracer = trace.getTracer('test-request');
    const root = await tracer.startActiveSpan('GET /span-page', async (span) => {
      await c.handler.get(key, PAGE);
      await c.handler.set(key, appPage({ tags: 'span-tag' }), PAGE_CTX);
      await c.handler.get(key, PAGE);
      await c.handler.revalidateTag(['span-tag', 'span-tag-2']);
      fs.add({ op: 'writev', path: '/entries/', times: 1, fault: { code: 'ENOSPC' } });
      await c.handler.set(key, appPage(), PAGE_CTX);
      span.end();
      return span.spanContext();
    });
    const ours = sdk.spans().filter((s) => s.instrumentationScope.name === SCOPE && s.spanContext().traceId === root.traceId);
    expect(ours.map((s) => s.name)).toEqual(['next_volume_cache.get', 'next_volume_cache.set', 'next_volume_cache.get', 'next_volume_cache.revalidate_tag', 'next_volume_cache.set']);
    for (const span of ours) expect(span.parentSpanContext?.spanId).toBe(root.spanId);
    const [miss, set, hit, revalidate, failed] = ours;
    expect(miss!.attributes).toMatchObject({
      'next_volume_cache.get.outcome': 'miss',
      'next_volume_cache.miss.cause': 'absent',
      'next_volume_cache.key.hash': hashKey(key),
      'next_volume_cache.entry.kind': 'app_page',
      'next_volume_cache.app': 'spans',
    });
    expect(miss!.status.code).toBe(SpanStatusCode.UNSET);
    expect(set!.attributes['next_volume_cache.key.hash']).toBe(hashKey(key));
    expect(hit!.attributes['next_volume_cache.get.outcome']).toBe('hit');
    expect(revalidate!.attributes['next_volume_cache.tag.count']).toBe(2);
    expect(failed!.status.code).toBe(SpanStatusCode.ERROR);
    expect(failed!.attributes['error.type']).toBe('ENOSPC');
    expect(failed!.events.map((e) => e.name)).toContain('exception');
    for (const span of ours) expect(JSON.stringify(span.attributes)).not.toContain('span-tag');
  });

  it('a revalidateTag that cannot be recorded rejects as before, with an ERROR span and a failure counted', async () => {
    const notAFolder = path.join(tempDir('nvc-otel-'), 'file');
    writeFileSync(notAFolder, 'x');
    const c = await openCache({ dir: notAFolder, app: 'unrecorded' }, undefined, false);
    opened.push(c);
    await expect(c.handler.revalidateTag(['t'])).rejects.toThrow(/cannot record the invalidation/);
    const span = sdk.spans().find((s) => s.name === 'next_volume_cache.revalidate_tag' && s.attributes['next_volume_cache.app'] === 'unrecorded');
    expect(span?.status.code).toBe(SpanStatusCode.ERROR);
    expect(span?.parentSpanContext).toBeUndefined();
    expect(total(await sdk.scrape(), 'next_volume_cache_invalidation_failures_total', { next_volume_cache_app: 'unrecorded', error_type: 'Error' })).toBe(1);
    await c.handler.set('k', fetchValue(), FETCH_CTX);
    expect(total(await sdk.scrape(), 'next_volume_cache_set_failures_total', { next_volume_cache_app: 'unrecorded', error_type: 'unavailable' })).toBe(1);
  });
});

describe('without @opentelemetry/api', () => {
  it('the handler works and reports nothing (the API hidden from require, as when it is not installed)', async () => {
    const result = await runChild('without-otel.js', [tempDir('nvc-no-otel-')], {}, process.execPath, ['-r', path.join(__dirname, '..', 'bench', 'hide-otel.js')]);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ apiLoadable: false, telemetryAvailable: false, hit: true, gets: 2 });
  });
});
