#!/usr/bin/env node
// The benchmark: next-volume-cache side by side with the raw filesystem (the floor), Next's built-in
// FileSystemCache, the maintained Redis handler against a real redis-server, and cacache; all in one
// run on one machine, reported as ratios against the floor measured in the same run.
//
//   npm run bench            full run (about 15 minutes; by hand). It runs with UV_THREADPOOL_SIZE=16,
//                            the setting the README recommends for servers using this cache.
//   npm run bench -- --quick smoke run (CI runs it so the benchmark never rots; nothing is asserted on speed)
//   npm run bench -- --only=integrity[,micro,...]  only those sections (also: operations, processes, scale,
//                            visibility, memory, tier, regeneration, site, network, telemetry)
//   npm run bench -- --only=site --site-rounds=9  more interleaved rounds of the whole site (default 3): on a
//                            shared machine, the median of more rounds moves less between runs
//
// Prints tables and writes the same figures to bench/results/<time>.json.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { fork } = require('node:child_process');
const contenders = require('./contenders.js');
const { PAYLOADS, fetch4k } = require('./payloads.js');

const QUICK = process.argv.includes('--quick');
const SECTIONS = (process.argv.find((a) => a.startsWith('--only=')) ?? '').slice('--only='.length).split(',').filter(Boolean);
const SITE_ROUNDS = siteRounds();
const wants = (section) => SECTIONS.length === 0 || SECTIONS.includes(section);
const results = { machine: machine(), quick: QUICK, startedAt: new Date().toISOString(), micro: [], scale: [], visibility: null, memory: null, site: [] };

function machine() {
  return { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` };
}

/** Every folder the run makes; all removed when it exits (success, failure or Ctrl-C). */
const made = new Set();
const tmp = (prefix) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nvc-bench-${prefix}-`));
  made.add(dir);
  return dir;
};
process.on('exit', () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** Runs `op(i)` n times with `concurrency` in flight; ops/s, latency percentiles (µs) and how many returned a value. */
async function measure(n, concurrency, op) {
  const latencies = new Float64Array(n);
  let next = 0;
  let returned = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t0 = performance.now();
        if (await op(i)) returned++;
        latencies[i] = (performance.now() - t0) * 1000;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const sorted = Array.from(latencies).sort((a, b) => a - b);
  return { opsPerSec: Math.round(n / seconds), p50us: Math.round(percentile(sorted, 50)), p99us: Math.round(percentile(sorted, 99)), returnedPct: Math.round((100 * returned) / n) };
}

/**
 * Whether a get returned the value intact enough to serve: binary parts still Buffers of the right
 * length. (The floor and cacache return the stored bytes themselves: any non-empty answer counts.)
 */
function servesIntact(got, expected) {
  if (Buffer.isBuffer(got)) return got.length > 0;
  const value = got?.value;
  if (!value || value.kind !== expected.kind) return false;
  if (expected.kind === 'IMAGE') return Buffer.isBuffer(value.buffer) && value.buffer.length === expected.buffer.length;
  if (expected.kind === 'APP_PAGE') {
    return value.html === expected.html && Buffer.isBuffer(value.rscData) && value.rscData.length === expected.rscData.length && value.segmentData instanceof Map && value.segmentData.size === expected.segmentData.size;
  }
  return JSON.stringify(value.data) === JSON.stringify(expected.data);
}

const MAKERS = [
  ['floor', (dir) => contenders.floor(dir)],
  ['nvc', (dir) => contenders.ours(dir)],
  ['nvc-cold', (dir) => contenders.ours(dir, { memoryCacheBytes: 0 })],
  ['nvc-fsync', (dir) => contenders.ours(dir, { fsync: true })],
  ['next-fs', (dir) => contenders.nextFileSystem(dir)],
  ['redis', (dir) => contenders.fortedigitalRedis(dir)],
  ['cacache', (dir) => contenders.cacacheStore(dir)],
];

async function micro() {
  const keys = 64;
  for (const [payloadName, makeValue] of Object.entries(PAYLOADS)) {
    const value = makeValue();
    const big = payloadName.includes('1 MB');
    const n = QUICK ? 20 : big ? 400 : 3000;
    for (const concurrency of [1, 16]) {
      const rows = [];
      for (const [id, make] of MAKERS) {
        const store = await make(tmp(id));
        if (store.supports && !store.supports(value)) {
          rows.push({ payload: payloadName, concurrency, contender: store.name, op: 'all', result: 'not supported' });
          await store.close();
          continue;
        }
        const key = (i) => `/route-cache/APP_PAGE/bench/$/page-${i % keys}`;
        const set = await measure(n, concurrency, (i) => store.set(key(i), value));
        const hit = await measure(n, concurrency, async (i) => servesIntact(await store.get(key(i), value), value));
        const miss = await measure(n, concurrency, (i) => store.get(`/route-cache/APP_PAGE/bench/$/absent-${i}`, value));
        for (const [op, r] of [
          ['get hit', hit],
          ['get miss', miss],
          ['set', set],
        ])
          rows.push({ payload: payloadName, concurrency, contender: store.name, id, op, ...r });
        await store.close();
      }
      for (const row of rows) {
        const base = rows.find((r) => r.id === 'floor' && r.op === row.op);
        if (base && row.opsPerSec) row.vsFloor = +(base.opsPerSec / row.opsPerSec).toFixed(2);
      }
      results.micro.push(...rows);
      console.log(`\n${payloadName}, ${concurrency} in flight (time per op relative to the floor: lower is better)`);
      // 'hit %': gets that returned a value (a "get hit" row below 100 means the contender did not serve it).
      console.table(rows.map((r) => ({ contender: r.contender, op: r.op, 'ops/s': r.opsPerSec ?? r.result, 'p50 µs': r.p50us, 'p99 µs': r.p99us, 'x floor': r.vsFloor, 'hit %': r.op === 'set' ? '' : r.returnedPct })));
    }
  }
}

/** get hits from 4 processes at once, per contender (one shared store each). */
async function multiProcess() {
  const value = 'APP_PAGE 64 KB, 3 segments';
  const rows = [];
  for (const [id] of MAKERS) {
    const dir = tmp(`mp-${id}`);
    let redis;
    if (id === 'redis') redis = await contenders.startRedis(dir);
    const run = (role) =>
      new Promise((resolve, reject) => {
        const child = fork(path.join(__dirname, 'worker.js'), [id, dir, role, value, String(QUICK ? 20 : 1500)], { env: { ...process.env, REDIS_URL: redis?.url ?? '' } });
        child.on('message', resolve);
        child.on('error', reject);
      });
    await run('fill');
    const started = performance.now();
    const parts = await Promise.all([1, 2, 3, 4].map(() => run('get')));
    const seconds = (performance.now() - started) / 1000;
    const total = parts.reduce((a, p) => a + p.ops, 0);
    rows.push({ contender: parts[0].name, id, 'get hit ops/s (4 processes)': Math.round(total / seconds) });
    await redis?.stop();
  }
  const base = rows.find((r) => r.id === 'floor');
  for (const r of rows) r['x floor'] = +(base['get hit ops/s (4 processes)'] / r['get hit ops/s (4 processes)']).toFixed(2);
  results.micro.push(...rows.map((r) => ({ payload: value, concurrency: '4 processes', ...r })));
  console.log(`\n${value}, get hit from 4 processes at once`);
  console.table(rows.map(({ id, ...r }) => r));
}

/** revalidateTag and get cost as the store grows, and a refresh with 1 thousand vs 1 million tag records. */
async function scale() {
  const sizes = QUICK ? [1000, 5000] : [1000, 100_000, 1_000_000];
  const { Runtime } = require('../dist/lib/service/runtime.js');
  const { resolveOptions } = require('../dist/lib/config.js');
  const rows = [];
  for (const size of sizes) {
    const dir = tmp(`scale-${size}`);
    await fill(dir, size);
    const store = await contenders.ours(dir);
    const value = fetch4k();
    await store.set('/scale/probe', value);
    const n = QUICK ? 20 : 500;
    const invalidate = await measure(QUICK ? 10 : 200, 1, (i) => store.runtime.service.invalidate([`t-${i}`]));
    const get = await measure(n, 1, () => store.get('/scale/probe', value));
    rows.push({ entries: size, 'revalidateTag ms (p50)': +(invalidate.p50us / 1000).toFixed(2), 'get hit µs (p50)': get.p50us });
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const first = rows[0];
  for (const r of rows) {
    r['revalidateTag x smallest'] = +(r['revalidateTag ms (p50)'] / first['revalidateTag ms (p50)']).toFixed(2);
    r['get x smallest'] = +(r['get hit µs (p50)'] / first['get hit µs (p50)']).toFixed(2);
  }
  results.scale = rows;
  console.log('\nCost as the store grows (revalidateTag must not grow with the number of entries)');
  console.table(rows);

  // Start-up and idle refresh with many tag records, before and after compaction: bench/tags.js.
  const { execFileSync } = require('node:child_process');
  const out = execFileSync(process.execPath, [path.join(__dirname, 'tags.js'), String(QUICK ? 20_000 : 1_000_000), QUICK ? '10' : '100'], { encoding: 'utf8' });
  results.tagRecords = out;
  console.log(`\nTag records (bench/tags.js)\n${out}`);
  void Runtime;
  void resolveOptions;
}

async function fill(dir, count) {
  const { execFileSync } = require('node:child_process');
  execFileSync(process.execPath, [path.join(__dirname, 'fill.js'), dir, String(count), '32'], { stdio: 'ignore' });
}

/** Time from revalidateTag in one process until another process's get reports the entry invalidated. */
async function visibility() {
  const dir = tmp('visibility');
  const trials = QUICK ? 3 : 40;
  const child = (role) => fork(path.join(__dirname, 'visibility-worker.js'), [role, dir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const reader = child('reader');
  const writer = child('writer');
  const ask = (proc, msg) => new Promise((resolve) => (proc.once('message', resolve), proc.send(msg)));
  await ask(reader, { op: 'ready' });
  await ask(writer, { op: 'ready' });
  const delays = [];
  for (let i = 0; i < trials; i++) {
    await ask(writer, { op: 'set', tag: `v-${i}` });
    await ask(reader, { op: 'waitHit', tag: `v-${i}` });
    const watching = ask(reader, { op: 'watch', tag: `v-${i}` });
    const { at } = await ask(writer, { op: 'revalidate', tag: `v-${i}` });
    const { seenAt } = await watching;
    delays.push(seenAt - at);
  }
  reader.kill();
  writer.kill();
  delays.sort((a, b) => a - b);
  results.visibility = { trials, refreshMs: 1000, p50ms: Math.round(percentile(delays, 50)), p99ms: Math.round(percentile(delays, 99)), maxMs: Math.round(delays[delays.length - 1]) };
  console.log('\nInvalidation visibility across processes, default tag refresh interval (1000 ms)');
  console.table([results.visibility]);
}

/**
 * Peak RSS of a process after 1 million gets across 100 thousand keys: with the memory tier at 50 MiB
 * (Next's default cacheMaxMemorySize; 100 k keys of 4 KB are 400 MB on the volume, so it evicts all
 * along) against the same gets with the tier off, in the same run. The tier must stay within its bound.
 */
async function memory() {
  const dir = tmp('memory');
  const keys = QUICK ? 2000 : 100_000;
  const gets = QUICK ? 20_000 : 1_000_000;
  const run = (id, role) =>
    new Promise((resolve) => {
      const child = fork(path.join(__dirname, 'worker.js'), [id, dir, role, 'FETCH 4 KB', String(role === 'fill' ? keys : gets), String(keys)], { execArgv: ['--expose-gc'] });
      child.on('message', resolve);
    });
  await run('nvc-cold', 'fill');
  const cold = await run('nvc-cold', 'get');
  const tiered = await run('nvc-50mib', 'get');
  results.memory = {
    keys,
    gets,
    'tier off: peak RSS MiB': cold.peakRssMiB,
    'tier 50 MiB: peak RSS MiB': tiered.peakRssMiB,
    'difference MiB (bound 50)': tiered.peakRssMiB - cold.peakRssMiB,
    'start RSS MiB': tiered.baselineRssMiB,
    // Live heap after a full collection at the end: what the tier itself keeps. The peak above is
    // that plus V8's old-generation headroom, which grows with the live heap.
    'live heap MiB: tier off': cold.liveHeapMiB,
    'live heap MiB: tier 50 MiB': tiered.liveHeapMiB,
    'rejected (full tier, key read once)': tiered.rejections,
  };
  console.log(`\nMemory: ${gets} gets across ${keys} keys (4 KB each), tier at 50 MiB against tier off`);
  console.table([results.memory]);
}

/** Every order of `items` (for interleaving a few contenders fairly). */
function permutations(items) {
  if (items.length <= 1) return [items];
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

/**
 * The memory tier against the floor (readFile of the same bytes) in one run: hot gets (served from
 * memory), cold gets (the tier off: every get reads, checks and decodes the file), one in flight.
 */
async function tier() {
  const rows = [];
  for (const payloadName of ['FETCH 4 KB', 'APP_PAGE 90 KB', 'APP_PAGE 1 MB']) {
    const value = PAYLOADS[payloadName]();
    const n = QUICK ? 20 : payloadName.includes('1 MB') ? 1000 : 5000;
    const stores = [await contenders.floor(tmp('tier-floor')), await contenders.ours(tmp('tier-hot')), await contenders.ours(tmp('tier-cold'), { memoryCacheBytes: 0 })];
    const key = (i) => `/route-cache/APP_PAGE/tier/$/page-${i % 16}`;
    for (const store of stores) for (let i = 0; i < 16; i++) await store.set(key(i), value);
    // One get of every key first: the hot store's tier holds them all from then on.
    for (const store of stores) for (let i = 0; i < 16; i++) await store.get(key(i), value);
    // Interleaved, op by op: a busy machine slows all three alike. The order turns through every
    // permutation: what ran just before a get (a close still in flight, or an idle thread pool) moves
    // its latency by tens of µs, and a fixed order gave each store the same predecessor every time.
    const samples = stores.map(() => []);
    const orders = permutations([...stores.keys()]);
    for (let i = 0; i < n; i++) {
      for (const s of orders[i % orders.length]) {
        const store = stores[s];
        const t0 = performance.now();
        if (!(await store.get(key(i), value))) throw new Error(`${store.name} missed ${payloadName}`);
        samples[s].push((performance.now() - t0) * 1000);
      }
    }
    const p50 = samples.map((list) =>
      percentile(
        list.sort((a, b) => a - b),
        50,
      ),
    );
    rows.push({ payload: payloadName, 'floor p50 µs': Math.round(p50[0]), 'hot p50 µs': Math.round(p50[1]), 'cold p50 µs': Math.round(p50[2]), 'hot x floor': +(p50[1] / p50[0]).toFixed(2), 'cold x floor': +(p50[2] / p50[0]).toFixed(2) });
    for (const store of stores) await store.close();
  }
  results.tier = rows;
  console.log('\nMemory tier: get p50 against the floor (readFile of the same bytes), 1 in flight, interleaved');
  console.table(rows);
}

/**
 * Regeneration leases: what a fresh hit costs with leases on and off (nothing: they are not touched),
 * and a stale hit with no contender (one exclusive create) and with one (the holder's lease is read
 * once, then remembered). Entries are made stale by a 'max' revalidation; the tier is off.
 */
async function regeneration() {
  const rows = [];
  const value = PAYLOADS['APP_PAGE 64 KB, 3 segments']();
  const n = QUICK ? 20 : 2000;
  const key = (i) => `/route-cache/APP_PAGE/regen/$/page-${i}`;
  for (const leaseMs of [0, 10_000]) {
    const dir = tmp(`regen-${leaseMs}`);
    const holder = await contenders.ours(dir, { memoryCacheBytes: 0, options: { regenerationLeaseMs: leaseMs, tagRefreshMs: 1 } });
    const reader = await contenders.ours(dir, { memoryCacheBytes: 0, options: { regenerationLeaseMs: leaseMs, tagRefreshMs: 1 } });
    for (let i = 0; i < n; i++) await holder.set(key(i), { ...value, headers: { 'x-next-cache-tags': 'regen' } });
    const fresh = await measure(n, 1, (i) => reader.get(key(i), value));
    await holder.runtime.service.invalidate(['regen'], { expire: 31_536_000 });
    await new Promise((r) => setTimeout(r, 5));
    // Stale, nobody holds a lease: the reader takes one per key (answered stale).
    const staleAlone = await measure(n, 1, (i) => reader.get(key(i), value));
    // Stale, another process holds every key's lease: the holder takes them (fresh reader, new keys' leases).
    const contendedReader = await contenders.ours(dir, { memoryCacheBytes: 0, options: { regenerationLeaseMs: leaseMs, tagRefreshMs: 1 } });
    const staleContended = await measure(n, 1, (i) => contendedReader.get(key(i), value));
    // Asked again: the holder's lease is remembered until it expires, nothing more is read for it.
    const staleRemembered = await measure(n, 1, (i) => contendedReader.get(key(i), value));
    rows.push({
      leases: leaseMs ? `on (${leaseMs} ms)` : 'off',
      'fresh hit p50 µs': fresh.p50us,
      'stale hit, no contender p50 µs': staleAlone.p50us,
      'stale hit, lease held elsewhere p50 µs': staleContended.p50us,
      'same, asked again p50 µs': staleRemembered.p50us,
    });
    for (const store of [holder, reader, contendedReader]) await store.close();
  }
  const off = rows[0];
  for (const r of rows) r['fresh x off'] = +(r['fresh hit p50 µs'] / off['fresh hit p50 µs']).toFixed(2);
  results.regeneration = rows;
  console.log('\nRegeneration leases: hit costs with leases off and on (64 KB page, memory tier off, 1 in flight)');
  console.table(rows);
}

/**
 * The real fixture app under load: next-volume-cache named in next.config and installed from
 * instrumentation.js vs Next's built-in cache (its memory LRU included) vs the Redis handler vs a
 * handler that does nothing (a Map in the process), named in next.config (the most such a handler can
 * reach, since Next imports that module again on every request whatever it does) and installed (the
 * most any installed handler can reach: what is left of a request is Next's own work). Each variant gets a
 * fresh server and cache folder per round; the variants are interleaved over several rounds (every
 * other one in reverse order) and the median kept, because two processes (autocannon and the
 * server) share this machine's cores and its speed drifts between minutes. Besides requests per
 * second, the server's CPU time per request (Linux /proc) is reported: it does not depend on how
 * the scheduler shared the cores with autocannon.
 */
async function site() {
  const autocannon = require('autocannon');
  const fixture = require('../scripts/fixture-app.js');
  // Its own build folder: the test suite may be building or serving the fixture's default one.
  await fixture.buildFixture({ log: console.log, distDir: '.next-bench' });
  const data = await fixture.startDataServer();
  // nvc: the handler named in next.config (cacheHandler); nvc-installed: installed from instrumentation.js
  // (examples/instrumentation), which spares Next's per-request import of a configured handler.
  // noop / noop-installed: a Map and nothing else, named in next.config / installed: the most any handler configured that way can reach.
  const variants = ['nvc', 'nvc-installed', 'builtin', 'redis', 'noop', 'noop-installed'];
  const paths = ['/isr', '/data'];
  const rounds = QUICK ? 1 : SITE_ROUNDS;
  const samples = [];
  for (let round = 0; round < rounds; round++) {
    // Every other round in reverse order: a variant's place in a round (after which one, how far into it) must not favour it.
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      const dir = tmp(`site-${variant}-${round}`);
      const redis = variant === 'redis' ? await contenders.startRedis(dir) : undefined;
      const server = await fixture.startServer({ name: variant, cacheDir: dir, dataPort: data.port, distDir: '.next-bench', env: { FIXTURE_CACHE: variant, REDIS_URL: redis?.url ?? '' } });
      // Every path once before any is measured, so that every server has rendered a page (/data is
      // dynamic). Next's first render starts AsyncLocalStorage instances that then cost something on
      // every promise the process makes (Node 20: two more instances, 30 µs a request here). Without
      // this, the built-in cache served /isr from its build output on a server that had rendered
      // nothing, a state no server serving traffic stays in, and a handler whose first /isr rendered
      // the page paid for those instances for the whole measurement.
      for (const pathname of paths) await (await fetch(server.url + pathname)).arrayBuffer();
      for (const pathname of paths) {
        for (let i = 0; i < 20; i++) await (await fetch(server.url + pathname)).arrayBuffer();
        const cpuBefore = processCpuMs(server.pid);
        const r = await autocannon({ url: server.url + pathname, connections: 16, duration: QUICK ? 1 : 8 });
        const cpuAfter = processCpuMs(server.pid);
        const requests = r.requests.total;
        samples.push({
          variant,
          pathname,
          reqPerSec: requests / (r.duration || 1),
          p50: r.latency.p50,
          p99: r.latency.p99,
          cpuUsPerReq: cpuBefore === undefined || cpuAfter === undefined || requests === 0 ? NaN : ((cpuAfter - cpuBefore) * 1000) / requests,
          errors: r.errors + r.non2xx,
        });
      }
      await server.stop();
      await redis?.stop();
    }
  }
  await data.stop();
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const rows = [];
  for (const pathname of paths) {
    for (const variant of variants) {
      const of = samples.filter((s) => s.variant === variant && s.pathname === pathname);
      rows.push({
        cache: variant,
        path: pathname,
        'req/s': Math.round(median(of.map((s) => s.reqPerSec))),
        'p50 ms': median(of.map((s) => s.p50)),
        'p99 ms': median(of.map((s) => s.p99)),
        'server cpu µs/req': Math.round(median(of.map((s) => s.cpuUsPerReq))),
        errors: of.reduce((sum, s) => sum + s.errors, 0),
      });
    }
    const of = (variant) => rows.find((r) => r.path === pathname && r.cache === variant);
    const nvc = of('nvc');
    const installed = of('nvc-installed');
    for (const row of rows.filter((r) => r.path === pathname)) {
      row['nvc x this (req/s)'] = +(nvc['req/s'] / row['req/s']).toFixed(2);
      row['installed x this (req/s)'] = +(installed['req/s'] / row['req/s']).toFixed(2);
      row['this cpu / nvc cpu'] = +(row['server cpu µs/req'] / nvc['server cpu µs/req']).toFixed(2);
      row['this cpu / installed cpu'] = +(row['server cpu µs/req'] / installed['server cpu µs/req']).toFixed(2);
    }
  }
  results.site = rows;
  console.log(
    `\nWhole site: autocannon, 16 connections, median of ${rounds} interleaved rounds (nvc-installed = installed from instrumentation.js; builtin = Next default config, its memory LRU included; noop = a cacheHandler that does nothing, the ceiling for any handler named in next.config; noop-installed = the same installed from instrumentation.js, the ceiling for any installed handler)`,
  );
  console.table(rows);
}

/** --site-rounds=N: rounds of the site section (a whole number from 1 to 50; default 3). Exits with a clear message otherwise. */
function siteRounds() {
  const flag = process.argv.find((a) => a.startsWith('--site-rounds='));
  if (flag === undefined) return 3;
  const rounds = Number(flag.slice('--site-rounds='.length));
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
    console.error(`bench: ${flag}: expected a whole number of rounds from 1 to 50`);
    process.exit(2);
  }
  return rounds;
}

/** A process's CPU time so far (user + system, its threads included), ms; undefined where /proc is not there. */
function processCpuMs(pid) {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // clock ticks: USER_HZ is 100 on Linux
  } catch {
    return undefined;
  }
}

/**
 * What OpenTelemetry costs a get: @opentelemetry/api absent (hidden by a preload, as when it is not
 * installed), present without an SDK, and present with the real SDK exporting spans and metrics. Each
 * mode in its own process, the modes interleaved over several rounds (the median is kept), and
 * reported against the absent baseline of the same run.
 */
async function telemetry() {
  const dir = tmp('telemetry');
  const rounds = QUICK ? 1 : 5;
  const gets = QUICK ? 300 : 20_000;
  const modes = ['absent', 'api', 'sdk'];
  const runs = [];
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const execArgv = mode === 'absent' ? ['-r', path.join(__dirname, 'hide-otel.js')] : [];
      runs.push(
        await new Promise((resolve, reject) => {
          const child = fork(path.join(__dirname, 'telemetry-worker.js'), [mode, dir, String(gets)], { execArgv });
          child.on('message', resolve);
          child.on('error', reject);
          child.on('exit', (code) => code !== 0 && reject(new Error(`telemetry worker ${mode} exited with ${code}`)));
        }),
      );
    }
  }
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const rows = [];
  for (const scenario of runs[0].rows.map((r) => r.scenario)) {
    for (const mode of modes) {
      const of = runs.filter((r) => r.mode === mode).map((r) => r.rows.find((x) => x.scenario === scenario));
      rows.push({ scenario, mode, 'gets/s': median(of.map((r) => r.opsPerSec)), 'p50 µs': median(of.map((r) => r.p50us)), 'p99 µs': median(of.map((r) => r.p99us)), 'cpu µs/get': median(of.map((r) => r.cpuUs)) });
    }
  }
  for (const row of rows) {
    const base = rows.find((r) => r.scenario === row.scenario && r.mode === 'absent');
    row['p50 x absent'] = +(row['p50 µs'] / base['p50 µs']).toFixed(2);
    row['cpu x absent'] = +(row['cpu µs/get'] / base['cpu µs/get']).toFixed(2);
  }
  const checks = Object.fromEntries(modes.map((mode) => [mode, runs.find((r) => r.mode === mode)]).map(([mode, r]) => [mode, { telemetryAvailable: r.telemetryAvailable, seen: r.seen }]));
  results.telemetry = { rounds, getsPerRound: gets, rows, checks };
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(
    `\nOpenTelemetry's cost on gets (APP_PAGE 64 KB, one at a time, each in an AsyncLocalStorage context as in a Next request; median of ${rounds} interleaved rounds; p50 and CPU time per get relative to the API absent: lower is better)`,
  );
  console.table(rows);
  console.log('what each mode saw (a check of the modes):', JSON.stringify(checks));
}

/**
 * What a secret costs (issue 14): gets with and without one, in the same run (each entry's seal is
 * checked on every get), and the MAC candidates per payload size, with xxh64 (the checksum every
 * entry carries anyway, secret or not) as the reference.
 */
async function integrity() {
  const gets = [];
  for (const payloadName of Object.keys(PAYLOADS)) gets.push(await secretGetCost(payloadName));
  console.log('\nA get with and without a secret (1 in flight, the two stores measured in alternating rounds, median p50; x no secret: time per get relative to the same run without one)');
  console.table(gets);
  const macs = await macCosts();
  results.integrity = { gets, macs };
  console.log('\nMAC candidates, µs per message (candidates interleaved, median of batches; x xxh64: relative to the checksum every entry already has)');
  console.table(macs);
}

/** p50 of a hit with and without a secret, alternating between the two stores so that a busy machine weighs on both alike. */
async function secretGetCost(payloadName) {
  const value = PAYLOADS[payloadName]();
  const n = QUICK ? 20 : payloadName.includes('1 MB') ? 200 : 1000;
  const key = (i) => `/route-cache/APP_PAGE/bench/$/integrity-${i % 64}`;
  const stores = {};
  // The memory tier off: every get reads, checks and decodes the file (what a seal adds to).
  for (const [label, options] of [
    ['no secret', { memoryCacheBytes: 0 }],
    ['secret', { memoryCacheBytes: 0, secret: 'bench-secret-0123456789abcdef' }],
  ]) {
    stores[label] = await contenders.ours(tmp(`integrity-${label.replace(' ', '-')}`), options);
    await measure(64, 1, (i) => stores[label].set(key(i), value));
  }
  const rounds = { 'no secret': [], secret: [] };
  for (let round = 0; round < (QUICK ? 1 : 5); round++) {
    for (const label of Object.keys(stores)) rounds[label].push(await measure(n, 1, async (i) => servesIntact(await stores[label].get(key(i), value), value)));
  }
  const row = { payload: payloadName };
  for (const [label, measured] of Object.entries(rounds)) {
    const p50s = measured.map((m) => m.p50us).sort((a, b) => a - b);
    row[`get p50 µs (${label})`] = p50s[Math.floor(p50s.length / 2)];
    row[`hit % (${label})`] = Math.min(...measured.map((m) => m.returnedPct));
  }
  row['x no secret'] = +(row['get p50 µs (secret)'] / row['get p50 µs (no secret)']).toFixed(2);
  for (const store of Object.values(stores)) await store.close();
  return row;
}

/** µs per message of each MAC candidate at 4 KiB, 64 KiB and 1 MiB. */
async function macCosts() {
  const crypto = require('node:crypto');
  const { loadHasher, checksum } = require('../dist/lib/store/hash.js');
  const { createIntegrity } = require('../dist/lib/store/integrity.js');
  await loadHasher();
  const key = crypto.randomBytes(32);
  const nonce = crypto.randomBytes(12);
  const aeadTag = (algorithm) => (data) => {
    // Used as a MAC: the data is additional authenticated data, nothing is encrypted.
    const cipher = crypto.createCipheriv(algorithm, key, nonce, { authTagLength: 16 });
    cipher.setAAD(data, { plaintextLength: 0 });
    cipher.final();
    return cipher.getAuthTag();
  };
  const library = createIntegrity(['bench-secret-0123456789abcdef']);
  const candidates = {
    xxh64: (data) => checksum([data]),
    'chacha20-poly1305': aeadTag('chacha20-poly1305'),
    'aes-256-gcm GMAC': aeadTag('aes-256-gcm'),
    'HMAC-SHA256': (data) => crypto.createHmac('sha256', key).update(data).digest(),
    // What a sealed get pays: chacha20-poly1305 with a fresh nonce, the place bound in.
    'library seal': (data) => library.seal('app/shared', [data]),
  };
  const rows = [];
  for (const [label, size] of [
    ['4 KiB', 4096],
    ['64 KiB', 65536],
    ['1 MiB', 1048576],
  ]) {
    const data = crypto.randomBytes(size);
    const perBatch = QUICK ? 20 : Math.max(100, Math.round(1e8 / size));
    const micros = microsPerCall(Object.fromEntries(Object.entries(candidates).map(([name, mac]) => [name, () => mac(data)])), perBatch);
    for (const [name, us] of Object.entries(micros)) rows.push({ size: label, mac: name, 'µs per message': us, 'x xxh64': +(us / micros.xxh64).toFixed(1) });
  }
  return rows;
}

/** Median over 9 batches of the µs one call of each candidate takes; candidates take turns batch by batch (a warm-up batch first). */
function microsPerCall(calls, perBatch) {
  const batches = Object.fromEntries(Object.keys(calls).map((name) => [name, []]));
  for (let b = 0; b < 10; b++) {
    for (const [name, call] of Object.entries(calls)) {
      const started = performance.now();
      for (let i = 0; i < perBatch; i++) call();
      if (b > 0) batches[name].push(((performance.now() - started) * 1000) / perBatch);
    }
  }
  return Object.fromEntries(Object.entries(batches).map(([name, times]) => [name, +times.sort((a, b) => a - b)[4].toFixed(2)]));
}

/** Filesystem operations per get and set (each is a round trip on NFS), counted through the fs layer. */
async function operations() {
  const { Runtime } = require('../dist/lib/service/runtime.js');
  const { resolveOptions } = require('../dist/lib/config.js');
  const { bindHandler } = require('../dist/lib/next/handler.js');
  const { nodeFs } = require('../dist/lib/fs/syscalls.js');
  const counts = {};
  const counting = {};
  for (const [name, fn] of Object.entries(nodeFs)) counting[name] = (...args) => ((counts[name] = (counts[name] ?? 0) + 1), fn(...args));
  const open = counting.open;
  counting.open = async (...args) => {
    const handle = await open(...args);
    return new Proxy(handle, { get: (target, prop) => (typeof target[prop] === 'function' ? (...a) => ((counts[`file.${String(prop)}`] = (counts[`file.${String(prop)}`] ?? 0) + 1), target[prop](...a)) : target[prop]) });
  };
  const rows = [];
  for (const [payloadName, makeValue] of Object.entries(PAYLOADS)) {
    const dir = tmp('ops');
    const runtime = new Runtime({ settings: { ...resolveOptions({ logLevel: 'error', tagRefreshMs: 3_600_000 }, {}), dir }, createParents: true, fs: counting });
    const handler = new (bindHandler(() => runtime))({});
    const value = makeValue();
    const ctx = value.kind === 'IMAGE' ? { kind: 'IMAGE', cacheControl: { revalidate: 60 } } : value.kind === 'FETCH' ? { fetchCache: true } : { kind: value.kind, cacheControl: { revalidate: 60, expire: 600 } };
    const getCtx = value.kind === 'IMAGE' ? { kind: 'IMAGE' } : value.kind === 'FETCH' ? { kind: 'FETCH' } : { kind: value.kind };
    await handler.set('warm', value, ctx);
    await handler.get('warm', getCtx);
    const measureOps = async (fn) => {
      for (const k of Object.keys(counts)) delete counts[k];
      await fn();
      return Object.entries(counts)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
    };
    rows.push({ payload: payloadName, 'get hit': await measureOps(() => handler.get('warm', getCtx)), 'get miss': await measureOps(() => handler.get('absent', getCtx)), set: await measureOps(() => handler.set('warm', value, ctx)) });
    await runtime.close();
  }
  results.operations = rows;
  console.log('\nFilesystem operations per call (tag refresh excluded: at most one open + read + close of tags/head per interval)');
  console.table(rows);
}

/** get and set on the emulated network volume (FUSE passthrough, ~1 ms per backing operation), when it can run. */
async function network() {
  let rig;
  const { startRig, PROFILES, rigUnavailable } = require('../scripts/volume-rig.js');
  const reason = rigUnavailable();
  if (reason) {
    console.log(`\nnetwork volume: skipped (${reason})`);
    results.network = { skipped: reason };
    return;
  }
  rig = await startRig(PROFILES.efs, 1);
  try {
    const rows = [];
    // nvc: the memory tier on, so repeated gets are hot; nvc-cold: every get reads the volume.
    for (const [id, make] of MAKERS.filter(([id]) => id === 'floor' || id === 'nvc' || id === 'nvc-cold')) {
      const dir = fs.mkdtempSync(path.join(rig.mounts[0], `${id}-`));
      const store = await make(dir);
      for (const payloadName of ['FETCH 4 KB', 'APP_PAGE 64 KB, 3 segments']) {
        const value = PAYLOADS[payloadName]();
        const n = QUICK ? 10 : 200;
        const set = await measure(n, 1, (i) => store.set(`/n/${i % 16}`, value));
        const hit = await measure(n, 1, (i) => store.get(`/n/${i % 16}`, value));
        rows.push({ payload: payloadName, contender: store.name, 'get p50 ms': +(hit.p50us / 1000).toFixed(2), 'set p50 ms': +(set.p50us / 1000).toFixed(2) });
      }
      await store.close();
    }
    results.network = rows;
    console.log('\nOn the emulated network volume (FUSE, ~1 ms per backing operation)');
    console.table(rows);
  } finally {
    await rig.stop();
  }
}

(async () => {
  console.log(`next-volume-cache benchmark${QUICK ? ' (quick smoke run: numbers are not meaningful)' : ''}`, results.machine);
  if (wants('operations')) await operations();
  if (wants('micro')) await micro();
  if (wants('processes')) await multiProcess();
  if (wants('scale')) await scale();
  if (wants('visibility')) await visibility();
  if (wants('memory')) await memory();
  if (wants('tier')) await tier();
  if (wants('regeneration')) await regeneration();
  if (wants('site')) await site();
  if (wants('network')) await network();
  if (wants('telemetry')) await telemetry();
  if (wants('integrity')) await integrity();
  await contenders.stopShared();
  const out = path.join(__dirname, 'results');
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `${results.startedAt.replace(/[:.]/g, '-')}${QUICK ? '-quick' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(results, null, 2));
  console.log(`\nwritten: ${path.relative(process.cwd(), file)}`);
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
