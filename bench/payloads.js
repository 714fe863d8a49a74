// The values the benchmark stores: shaped exactly as Next 16 passes them to set().
'use strict';
const crypto = require('node:crypto');

const bytes = (n, seed) => {
  const out = Buffer.alloc(n);
  crypto.createHash('sha256').update(String(seed)).digest().copy(out);
  for (let i = 32; i < n; i++) out[i] = (out[i - 32] * 31 + i) & 0xff;
  return out;
};
const text = (n) => '<div class="row">' + 'lorem ipsum dolor sit amet '.repeat(Math.ceil(n / 27)).slice(0, n - 24) + '</div>';

function fetch4k(seed = 0) {
  return { kind: 'FETCH', data: { headers: { 'content-type': 'application/json' }, body: bytes(3000, seed).toString('base64'), url: 'https://api.example/items', status: 200 }, revalidate: 3600, tags: ['bench'] };
}

function appPage(size, segments, seed = 0) {
  const html = text(Math.round(size * 0.6));
  const rscData = bytes(Math.round(size * 0.25), seed);
  const segmentData = new Map();
  const segmentSize = Math.round((size * 0.15) / Math.max(1, segments));
  for (let i = 0; i < segments; i++) segmentData.set(i === 0 ? '/_tree' : `/blog/$d$slug/__PAGE__/${i}`, bytes(segmentSize, seed + i));
  return { kind: 'APP_PAGE', html, rscData, segmentData, postponed: undefined, headers: { 'x-next-cache-tags': 'bench,_N_T_/layout' }, status: 200 };
}

function image(size, seed = 0) {
  return { kind: 'IMAGE', buffer: bytes(size, seed), etag: `etag-${seed}`, upstreamEtag: `up-${seed}`, extension: 'webp', revalidate: 3600 };
}

const PAYLOADS = {
  'FETCH 4 KB': () => fetch4k(),
  'APP_PAGE 64 KB, 3 segments': () => appPage(64 * 1024, 3),
  'APP_PAGE 90 KB': () => appPage(90 * 1024, 3),
  'APP_PAGE 1 MB': () => appPage(1024 * 1024, 3),
  'IMAGE 200 KB': () => image(200 * 1024),
};

module.exports = { PAYLOADS, fetch4k, appPage, image };
