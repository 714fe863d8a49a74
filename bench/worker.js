// A benchmark child process: fills a store or runs gets against it, reports over IPC.
//   worker.js <contender id> <dir> fill|get <payload name> <count> [keys]
'use strict';
const contenders = require('./contenders.js');
const { PAYLOADS } = require('./payloads.js');

const [id, dir, role, payloadName, countArg, keysArg] = process.argv.slice(2);
const makers = {
  floor: () => contenders.floor(dir),
  nvc: () => contenders.ours(dir),
  'nvc-cold': () => contenders.ours(dir, { memoryCacheBytes: 0 }),
  // The memory section's process: a tier of 50 MiB (Next's default cacheMaxMemorySize) under 100 k keys.
  'nvc-50mib': () => contenders.ours(dir, { memoryCacheBytes: 50 * 1024 * 1024 }),
  'nvc-fsync': () => contenders.ours(dir, { fsync: true }),
  'next-fs': () => contenders.nextFileSystem(dir),
  redis: () => contenders.fortedigitalRedis(dir),
  cacache: () => contenders.cacacheStore(dir),
};

(async () => {
  const baselineRssMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
  const store = await makers[id]();
  const value = PAYLOADS[payloadName]();
  const count = Number(countArg);
  const keys = Number(keysArg || 64);
  const key = (i) => `/route-cache/APP_PAGE/bench/$/page-${i % keys}`;
  let ops = 0;
  if (role === 'fill') {
    for (let i = 0; i < keys; i++) await store.set(key(i), value);
  } else {
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < count) {
          const i = next++;
          if (await store.get(key(i), value)) ops++;
        }
      }),
    );
  }
  const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  // What is still alive once garbage is collected (forked with --expose-gc by the memory section).
  if (global.gc) global.gc();
  const liveHeapMiB = Math.round(process.memoryUsage().heapUsed / 2 ** 20);
  const rejections = store.runtime?.metricsSnapshot().memory.rejections;
  await store.close();
  process.send({ name: store.name, ops, peakRssMiB, baselineRssMiB, liveHeapMiB, rejections }, () => process.exit(0));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
