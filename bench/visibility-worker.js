// Invalidation visibility: the writer sets and revalidates, the reader reports when it first misses.
'use strict';
const { createCacheHandler } = require('../dist/lib/index.js');
// argv[2] is the role, which only labels the process: the parent drives it over IPC.
const [, dir] = process.argv.slice(2);
const Handler = createCacheHandler({ dir, logLevel: 'error' });
const handler = new Handler({});
const value = { kind: 'FETCH', data: { headers: {}, body: 'x', url: 'u', status: 200 }, revalidate: 3600 };
const key = (tag) => `visibility-${tag}`;

process.on('message', async (msg) => {
  if (msg.op === 'ready') return process.send({ ok: await handler.get('warm-up', {}).then(() => true) });
  if (msg.op === 'set') {
    await handler.set(key(msg.tag), { ...value, tags: [msg.tag] }, { fetchCache: true, tags: [msg.tag] });
    return process.send({ ok: true });
  }
  if (msg.op === 'revalidate') {
    const at = Date.now();
    await handler.revalidateTag([msg.tag]);
    return process.send({ at });
  }
  if (msg.op === 'waitHit') {
    while (!(await handler.get(key(msg.tag), { kind: 'FETCH', tags: [msg.tag] }))) await new Promise((r) => setTimeout(r, 2));
    return process.send({ ok: true });
  }
  if (msg.op === 'watch') {
    while (await handler.get(key(msg.tag), { kind: 'FETCH', tags: [msg.tag] })) await new Promise((r) => setTimeout(r, 2));
    return process.send({ seenAt: Date.now() });
  }
});
