// Writers replace one image key with different bytes; readers check every hit's bytes hash to its etag.
'use strict';
const crypto = require('node:crypto');
const { createCacheHandler } = require('../../dist/lib/index.js');
const [role, dir, durationMs, id] = process.argv.slice(2);
const Handler = createCacheHandler({ dir, logLevel: 'error' });
const keys = ['img-a', 'img-b', 'img-c'];
const etagOf = (buffer) => crypto.createHash('sha256').update(buffer).digest('base64url');
(async () => {
  const end = Date.now() + Number(durationMs);
  const counts = { role, writes: 0, reads: 0, hits: 0, mismatches: 0 };
  let seq = 0;
  while (Date.now() < end) {
    const key = keys[seq++ % keys.length];
    const handler = new Handler({});
    if (role === 'writer') {
      const buffer = crypto.randomBytes(20_000 + Math.floor(Math.random() * 200_000));
      await handler.set(key, { kind: 'IMAGE', buffer, etag: etagOf(buffer), upstreamEtag: `up-${id}-${seq}`, extension: 'webp', revalidate: 60 }, { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } });
      counts.writes++;
    } else {
      const got = await handler.get(key, { kind: 'IMAGE', isFallback: false });
      counts.reads++;
      if (got) {
        if (Buffer.isBuffer(got.value.buffer) && etagOf(got.value.buffer) === got.value.etag) counts.hits++;
        else counts.mismatches++;
      }
    }
  }
  process.stdout.write(JSON.stringify(counts) + '\n');
})();
