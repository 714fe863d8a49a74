// A writer or a reader of the multi-process stress test. Every value carries
// its own proof of integrity: the RSC payload and every segment are derived
// from a version id embedded in the HTML, so a torn or mixed entry (HTML of
// one write with RSC of another) is detected by the reader.
'use strict';
const crypto = require('node:crypto');
const { createCacheHandler } = require('../../dist/lib/index.js');

const [role, dir, durationMs, keyCount, id] = process.argv.slice(2);
const Handler = createCacheHandler({ dir, logLevel: 'error' });
const handler = new Handler({});
const keys = Array.from({ length: Number(keyCount) }, (_, i) => `/route-cache/APP_PAGE/stress/$/page-${i}`);
const derive = (version, part) => crypto.createHash('sha256').update(`${version}:${part}`).digest();

function valueFor(version) {
  const size = 1000 + crypto.createHash('md5').update(version).digest()[0] * 400;
  const segmentData = new Map();
  for (let s = 0; s < 3; s++) segmentData.set(`/seg/${s}`, Buffer.concat([derive(version, `seg${s}`), Buffer.alloc(size, s)]));
  return {
    kind: 'APP_PAGE',
    html: `<html data-version="${version}">${'x'.repeat(size)}</html>`,
    rscData: Buffer.concat([derive(version, 'rsc'), Buffer.alloc(size * 2, 7)]),
    segmentData,
    headers: { 'x-next-cache-tags': 'stress' },
    status: 200,
  };
}

function verify(value) {
  const match = /data-version="([^"]+)"/.exec(value.html);
  if (!match) return false;
  const version = match[1];
  const expected = valueFor(version);
  if (!Buffer.isBuffer(value.rscData) || !value.rscData.equals(expected.rscData)) return false;
  if (!(value.segmentData instanceof Map) || value.segmentData.size !== 3) return false;
  for (const [k, v] of expected.segmentData) if (!Buffer.isBuffer(value.segmentData.get(k)) || !value.segmentData.get(k).equals(v)) return false;
  return value.html === expected.html;
}

(async () => {
  const end = Date.now() + Number(durationMs);
  const counts = { role, writes: 0, reads: 0, hits: 0, misses: 0, torn: 0 };
  let seq = 0;
  while (Date.now() < end) {
    const key = keys[Math.floor(Math.random() * keys.length)];
    if (role === 'writer') {
      await handler.set(key, valueFor(`${id}-${seq++}`), { kind: 'APP_PAGE', cacheControl: { revalidate: 3600, expire: 7200 } });
      counts.writes++;
    } else {
      const got = await handler.get(key, { kind: 'APP_PAGE' });
      counts.reads++;
      if (!got) counts.misses++;
      else if (verify(got.value)) counts.hits++;
      else counts.torn++;
    }
  }
  process.stdout.write(JSON.stringify(counts) + '\n');
})().catch((error) => {
  process.stderr.write(String(error && error.stack) + '\n');
  process.exit(1);
});
