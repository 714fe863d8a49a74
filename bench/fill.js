#!/usr/bin/env node
// Fills a cache root with N real entries (as the handler writes them), for scale checks by hand:
//   node bench/fill.js <dir> [entries=1000000] [concurrency=32]
'use strict';
const { Runtime } = require('../dist/lib/service/runtime.js');
const { resolveOptions } = require('../dist/lib/config.js');

const [dir, countArg, concurrencyArg] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node bench/fill.js <dir> [entries] [concurrency]');
  process.exit(2);
}
const count = Number(countArg || 1_000_000);
const concurrency = Number(concurrencyArg || 32);

(async () => {
  const rt = new Runtime({ settings: { ...resolveOptions({ logLevel: 'error' }, {}), dir, timeoutMs: 60_000, concurrency: 3 }, createParents: true });
  if (!(await rt.ready())) throw new Error(`cannot open ${dir}`);
  const started = Date.now();
  let next = 0;
  const html = '<html>' + 'x'.repeat(600) + '</html>';
  async function worker() {
    while (next < count) {
      const i = next++;
      await rt.service.write(
        {
          key: `/route-cache/APP_PAGE/fill/$/page/${i}`,
          kind: i % 4 === 0 ? 'FETCH' : 'APP_PAGE',
          ageMs: (i % 1000) * 60_000,
          cacheControl: { revalidate: 60, expire: 31_536_000 },
          tags: [`tag-${i % 1000}`, `_N_T_/page/${i}`],
          value: { kind: 'APP_PAGE', html, rscData: Buffer.alloc(200, i % 256), headers: {}, status: 200 },
        },
        'shared',
      );
      if (i % 100_000 === 0 && i > 0) console.log(`${i} entries, ${Math.round(i / ((Date.now() - started) / 1000))}/s`);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  console.log(`filled ${count} entries in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  await rt.close();
})();
