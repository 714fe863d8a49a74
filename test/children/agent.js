// A long-lived "replica": one handler in its own process, driven over IPC by a test.
// Messages: { id, op, ... } -> { id, result } or { id, error }.
'use strict';
const { createCacheHandler, getMetrics } = require('../../dist/lib/index.js');

const [dir, tagRefreshMs, leaseTimeoutMs] = process.argv.slice(2);
const Handler = createCacheHandler({ dir, tagRefreshMs: Number(tagRefreshMs), leaseTimeoutMs: Number(leaseTimeoutMs) || undefined, logLevel: 'error' });

function page(marker, tags, revalidate) {
  return {
    value: {
      kind: 'APP_PAGE',
      html: `<p>${marker}</p>`,
      rscData: Buffer.from(`rsc ${marker}`),
      segmentData: new Map([['/_tree', Buffer.from(marker)]]),
      headers: { 'x-next-cache-tags': tags.join(',') },
      status: 200,
    },
    ctx: { kind: 'APP_PAGE', cacheControl: { revalidate, expire: revalidate * 100 } },
  };
}

const ops = {
  async set({ key, marker, tags, revalidate = 60 }) {
    const { value, ctx } = page(marker, tags, revalidate);
    await new Handler({}).set(key, value, ctx);
    return true;
  },
  async get({ key }) {
    const startedAt = Date.now();
    const got = await new Handler({}).get(key, { kind: 'APP_PAGE' });
    if (!got) return null;
    return { html: got.value.html, ageMs: Date.now() - got.lastModified, cacheControl: got.cacheControl, startedAt };
  },
  // The same, but says when the request started even on a miss: what coherence tests time reads by.
  async timedGet({ key }) {
    const startedAt = Date.now();
    const got = await new Handler({}).get(key, { kind: 'APP_PAGE' });
    return { startedAt, html: got ? got.value.html : null };
  },
  async revalidate({ tags, durations }) {
    await new Handler({}).revalidateTag(tags, durations);
    return Date.now();
  },
  async metrics() {
    return getMetrics()[0]?.metrics ?? null;
  },
  async now() {
    return Date.now();
  },
  // Test-only look inside: which of `tags` would NOT expire an entry written at the epoch.
  async unexpired({ tags }) {
    new Handler({});
    const rt = require('../../dist/lib/service/registry.js').allRuntimes()[0];
    await rt.ready();
    await rt.service.refreshTags();
    return tags.filter((tag) => rt.service.tagVerdict([tag], 1) !== 'expired');
  },
  async refresh() {
    new Handler({});
    const rt = require('../../dist/lib/service/registry.js').allRuntimes()[0];
    await rt.ready();
    await rt.service.refreshTags();
    return true;
  },
};

process.on('message', (msg) => {
  ops[msg.op](msg)
    .then((result) => process.send({ id: msg.id, result }))
    .catch((error) => process.send({ id: msg.id, error: String(error && error.message) }));
});
process.send({ ready: true });
