// Does one kind of work in a loop until it is SIGKILLed; prints 'started', then a line per acknowledged invalidation.
//   crash-op.js <set|image|revalidate|compact|purge|gc> <dir> <trial>
'use strict';
const crypto = require('node:crypto');
const { createCacheHandler } = require('../../dist/lib/index.js');
const maintenance = require('../../dist/lib/maintenance/index.js');
const [op, dir, trial] = process.argv.slice(2);
const options = { dir, logLevel: 'silent', lockStaleMs: 1000, leaseTimeoutMs: 2000 };
const Handler = createCacheHandler(options);
const handler = new Handler({});
const sha = (b) => crypto.createHash('sha256').update(b).digest('base64url');

// A value that proves its own integrity (see crash.test.ts).
function page(seq) {
  const body = crypto.randomBytes(1000 + (seq % 7) * 3000);
  return { kind: 'APP_ROUTE', body, status: 200, headers: { 'x-body-sha': sha(body), 'x-next-cache-tags': 'crash,crash-purge' } };
}

(async () => {
  // Loaded and opened: the test counts its random kill delay from this line, not from the spawn.
  await handler.get('warm-up', {});
  process.stdout.write('started\n');
  for (let seq = 0; ; seq++) {
    switch (op) {
      case 'set':
        await handler.set(`/route-cache/APP_ROUTE/crash/$/k${seq % 10}`, page(seq), { kind: 'APP_ROUTE', cacheControl: { revalidate: 60, expire: 3600 } });
        break;
      case 'image': {
        const buffer = crypto.randomBytes(2000 + (seq % 5) * 5000);
        await handler.set(`img-${seq % 5}`, { kind: 'IMAGE', buffer, etag: sha(buffer), upstreamEtag: 'u', extension: 'png', revalidate: 60 }, { kind: 'IMAGE', cacheControl: { revalidate: 60 } });
        break;
      }
      case 'revalidate': {
        const tag = `ack-${trial}-${seq}`;
        await handler.revalidateTag([tag]);
        process.stdout.write(tag + '\n');
        break;
      }
      case 'compact':
        await maintenance.compact(options, { wait: true });
        break;
      case 'purge': {
        await handler.set(`/route-cache/APP_ROUTE/crash/$/p${seq % 10}`, page(seq), { kind: 'APP_ROUTE', cacheControl: { revalidate: 60, expire: 3600 } });
        await maintenance.purge(options, { tags: ['crash-purge'] }, false, { wait: true });
        process.stdout.write('crash-purge\n');
        break;
      }
      case 'gc':
        await handler.set(`/route-cache/APP_ROUTE/crash/$/g${seq % 10}`, page(seq), { kind: 'APP_ROUTE', cacheControl: { revalidate: 60, expire: 3600 } });
        await maintenance.gc(options, { graceMs: 0, maxBytes: 20_000, debrisAgeMs: 0 }, { wait: true });
        break;
      default:
        throw new Error(`unknown op ${op}`);
    }
  }
})().catch((error) => {
  process.stderr.write(String(error && error.stack) + '\n');
  process.exit(1);
});
