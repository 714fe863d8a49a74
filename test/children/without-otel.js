// Runs with bench/hide-otel.js preloaded: a handler's get and set work, and telemetry is the no-op.
'use strict';
const path = require('node:path');
const dist = path.join(__dirname, '..', '..', 'dist', 'lib');
const { createCacheHandler } = require(path.join(dist, 'index.js'));
const { telemetryAvailable } = require(path.join(dist, 'service', 'telemetry.js'));

(async () => {
  let apiLoadable = true;
  try {
    require('@opentelemetry/api');
  } catch {
    apiLoadable = false;
  }
  const Handler = createCacheHandler({ dir: process.argv[2], logLevel: 'error' });
  const handler = new Handler({});
  const ctx = { kind: 'FETCH' };
  await handler.get('k', ctx);
  await handler.set('k', { kind: 'FETCH', data: { headers: {}, body: 'e30=', url: 'http://x/', status: 200 }, revalidate: 60, tags: [] }, { fetchCache: true });
  const hit = (await handler.get('k', ctx)) !== null;
  const { getMetrics } = require(path.join(dist, 'index.js'));
  process.stdout.write(JSON.stringify({ apiLoadable, telemetryAvailable: telemetryAvailable(), hit, gets: getMetrics()[0].metrics.gets }));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
