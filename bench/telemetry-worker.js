// A benchmark child for the cost of OpenTelemetry on gets: one mode per process.
//   telemetry-worker.js absent|api|sdk <dir> <gets>
//   absent: run with `-r bench/hide-otel.js`, as in an app without @opentelemetry/api (the no-op path);
//   api:    the API installed, no SDK registered (what most apps with Next's own tracing have);
//   sdk:    the real SDK: a NodeTracerProvider with a batching span processor and a MeterProvider read
//           by the Prometheus exporter, as an app that exports both would run.
// Every get runs inside an AsyncLocalStorage context, as inside a Next.js request (Next keeps its
// request state in AsyncLocalStorage): the async-hooks cost that comes with any context in Node 20 is
// then paid in every mode, as in an app, and not charged to the SDK's context manager.
// Reports over IPC: per scenario, gets/s and latency percentiles; and what the SDK saw (a check that
// the mode is what it claims).
'use strict';
const { AsyncLocalStorage } = require('node:async_hooks');
const fs = require('node:fs');
const path = require('node:path');

const [mode, dir, getsArg] = process.argv.slice(2);
const gets = Number(getsArg);

function registerSdk() {
  const api = require('@opentelemetry/api');
  const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
  const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
  const { MeterProvider } = require('@opentelemetry/sdk-metrics');
  const { PrometheusExporter } = require('@opentelemetry/exporter-prometheus');
  let spans = 0;
  const counting = { export: (batch, done) => ((spans += batch.length), done({ code: 0 })), shutdown: async () => {}, forceFlush: async () => {} };
  const tracer = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(counting)] });
  tracer.register();
  const reader = new PrometheusExporter({ preventServerStart: true });
  api.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  return {
    async seen() {
      await tracer.forceFlush();
      const { resourceMetrics } = await reader.collect();
      const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'next_volume_cache.gets');
      return { spans, gets: (metric?.dataPoints ?? []).reduce((sum, p) => sum + p.value, 0) };
    },
  };
}

async function measure(n, op) {
  const latencies = new Float64Array(n);
  for (let i = 0; i < Math.min(200, n); i++) await op(i); // warm-up: JIT, the tag view, the memory tier
  const started = performance.now();
  const cpu = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await op(i);
    latencies[i] = (performance.now() - t0) * 1000;
  }
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const sorted = Array.from(latencies).sort((a, b) => a - b);
  const at = (p) => sorted[Math.min(n - 1, Math.floor((p / 100) * n))];
  // CPU time (every thread of the process: the libuv pool's file reads too) is what a get costs; wall
  // time on a shared machine also counts the other processes' turns.
  return { opsPerSec: Math.round(n / seconds), p50us: +at(50).toFixed(1), p99us: +at(99).toFixed(1), cpuUs: +((used.user + used.system) / n).toFixed(2) };
}

(async () => {
  const sdk = mode === 'sdk' ? registerSdk() : undefined;
  const { Runtime } = require('../dist/lib/service/runtime.js');
  const { resolveOptions } = require('../dist/lib/config.js');
  const { bindHandler } = require('../dist/lib/next/handler.js');
  const { loadHasher } = require('../dist/lib/store/hash.js');
  const { telemetryAvailable } = require('../dist/lib/service/telemetry.js');
  const { appPage } = require('./payloads.js');
  await loadHasher();
  const value = appPage(64 * 1024, 3);
  const ctx = { set: { kind: 'APP_PAGE', cacheControl: { revalidate: 3600, expire: 86400 } }, get: { kind: 'APP_PAGE' } };
  const rows = [];
  for (const [scenario, memoryCacheBytes] of [
    ['get hit, from the volume', 0],
    ['get hit, from memory', 64 * 1024 * 1024],
  ]) {
    const root = fs.mkdtempSync(path.join(dir, 'root-'));
    const runtime = new Runtime({ settings: { ...resolveOptions({ logLevel: 'error', memoryCacheBytes }, {}), dir: root }, createParents: true });
    const handler = new (bindHandler(() => runtime))({});
    const keys = 16;
    for (let i = 0; i < keys; i++) await handler.set(`/route-cache/APP_PAGE/bench/$/p-${i}`, value, ctx.set);
    const request = new AsyncLocalStorage();
    const result = await measure(gets, (i) => request.run({ request: i }, () => handler.get(`/route-cache/APP_PAGE/bench/$/p-${i % keys}`, ctx.get)));
    rows.push({ scenario, ...result });
    await runtime.close();
  }
  const seen = sdk ? await sdk.seen() : undefined;
  process.send({ mode, telemetryAvailable: telemetryAvailable(), seen, rows }, () => process.exit(0));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
