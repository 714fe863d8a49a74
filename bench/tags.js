#!/usr/bin/env node
// Tag log scale: start-up cost of a new process with N invalidation records before and after
// compaction, and the steady-state cost of a refresh that finds nothing new.
//   node bench/tags.js [records=1000000] [writers=100]
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Runtime } = require('../dist/lib/service/runtime.js');
const { resolveOptions } = require('../dist/lib/config.js');
const { loadHasher } = require('../dist/lib/store/hash.js');
const { encodeInvalidation } = require('../dist/lib/tags/record.js');
const { compact } = require('../dist/lib/maintenance/index.js');

const records = Number(process.argv[2] || 1_000_000);
const writers = Number(process.argv[3] || 100);

const sleepMs = (ms) => new Promise((r) => setTimeout(r, ms));

function runtime(dir) {
  return new Runtime({ settings: { ...resolveOptions({ logLevel: 'silent' }, {}), dir, tagRefreshMs: 1 }, createParents: true });
}

async function startUp(dir) {
  const rt = runtime(dir);
  const t0 = performance.now();
  await rt.ready();
  const t1 = performance.now();
  await rt.service.refreshTags();
  const t2 = performance.now();
  const tags = rt.service.tagViewSize();
  await rt.close();
  return { openMs: t1 - t0, firstRefreshMs: t2 - t1, tags, rssMiB: process.memoryUsage().rss / 2 ** 20 };
}

async function idleRefresh(dir, rounds) {
  const rt = runtime(dir);
  await rt.ready();
  await rt.service.refreshTags();
  let spent = 0;
  for (let i = 0; i < rounds; i++) {
    await sleepMs(1); // the refresh interval (tagRefreshMs: 1) must pass, or the call does nothing
    const t0 = performance.now();
    await rt.service.refreshTags();
    spent += performance.now() - t0;
  }
  const perRefreshUs = (spent / rounds) * 1000;
  await rt.close();
  return perRefreshUs;
}

(async () => {
  await loadHasher();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvc-bench-tags-'));
  const rt = runtime(dir);
  await rt.ready();
  await rt.close();
  const inval = path.join(dir, 'apps/default/tags/inval');
  const perWriter = Math.ceil(records / writers);
  const now = Date.now();
  for (let w = 0; w < writers; w++) {
    const lines = [];
    for (let i = 0; i < perWriter && w * perWriter + i < records; i++) {
      const n = w * perWriter + i;
      lines.push(encodeInvalidation({ tags: [`tag-${n % 50_000}`, `_N_T_/p/${n % 20_000}`], stale: now - n, expired: now - n }));
    }
    fs.writeFileSync(path.join(inval, `bench-${w}-aaaaaa.000000.log`), lines.join(''));
  }
  const bytes = fs.readdirSync(inval).reduce((n, f) => n + fs.statSync(path.join(inval, f)).size, 0);
  console.log(`${records} invalidation records from ${writers} writers, ${(bytes / 2 ** 20).toFixed(1)} MiB of logs`);
  const before = await startUp(dir);
  const t0 = performance.now();
  const result = await compact({ dir, logLevel: 'silent', leaseTimeoutMs: 1 });
  const compactMs = performance.now() - t0;
  const after = await startUp(dir);
  const idleUs = await idleRefresh(dir, 20000);
  console.table([
    { phase: 'before compaction', 'open ms': before.openMs.toFixed(1), 'first refresh ms': before.firstRefreshMs.toFixed(1), tags: before.tags },
    { phase: 'after compaction', 'open ms': after.openMs.toFixed(1), 'first refresh ms': after.firstRefreshMs.toFixed(1), tags: after.tags },
  ]);
  console.log(`compaction: ${compactMs.toFixed(0)} ms, folded ${result.recordsFolded} records, deleted ${result.segmentsDeleted} segments`);
  console.log(`ratio first refresh before/after compaction: ${(before.firstRefreshMs / after.firstRefreshMs).toFixed(1)}x`);
  console.log(`idle refresh (nothing new): ${idleUs.toFixed(1)} us each (open + read + close of tags/head)`);
  fs.rmSync(dir, { recursive: true, force: true });
})();
