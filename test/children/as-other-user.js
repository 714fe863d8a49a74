// Run as another user (setpriv) against a cache root owned by root: reads work, writes fail with EACCES.
'use strict';
const { createCacheHandler, getMetrics } = require('../../dist/lib/index.js');
const [dir] = process.argv.slice(2);
const Handler = createCacheHandler({ dir, logLevel: 'silent' });
const handler = new Handler({});
(async () => {
  const before = await handler.get('written-by-root', {});
  await handler.set('written-by-nobody', { kind: 'FETCH', data: { headers: {}, body: 'x', url: 'u', status: 200 }, revalidate: 5 }, { fetchCache: true });
  const after = await handler.get('written-by-nobody', {});
  let invalidation = 'resolved';
  try {
    await handler.revalidateTag(['t']);
  } catch (error) {
    invalidation = 'rejected';
  }
  const m = getMetrics()[0].metrics;
  process.stdout.write(JSON.stringify({ uid: process.getuid(), hit: before !== null, wrote: after !== null, setFailures: m.setFailures, invalidation }) + '\n');
})();
