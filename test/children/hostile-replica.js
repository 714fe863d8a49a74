// A replica for the hostile-volume test: the real handler (one per cache root and app) in its own
// process, driven over IPC. Loads the library from NVC_DIST (default: this repository's dist), so the
// same test can be pointed at another build. Messages: { id, op, ... } -> { id, result } | { id, error }.
// On { op: 'done' } it closes the IPC channel and must then exit by itself: a thread stuck on a FIFO,
// or any handle the library left open, keeps it alive and the test sees it.
'use strict';
const path = require('node:path');
const DIST = process.env.NVC_DIST || path.join(__dirname, '..', '..', 'dist');
const { createCacheHandler } = require(path.join(DIST, 'lib', 'index.js'));

const [optionsJson] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
const classes = new Map();

function handler(dir, app, serverDistDir) {
  const id = JSON.stringify([dir, app]);
  let Handler = classes.get(id);
  if (!Handler) {
    Handler = createCacheHandler({ dir, app, ...options });
    classes.set(id, Handler);
  }
  return new Handler(serverDistDir ? { serverDistDir } : {});
}

/** A value of each kind carrying `marker`, and the contexts Next passes for it. */
function valueOf(kind, marker, tags) {
  if (kind === 'image') {
    return { value: { kind: 'IMAGE', buffer: Buffer.from(marker), etag: 'e', upstreamEtag: 'u', extension: 'png', revalidate: 3600 }, setCtx: { kind: 'IMAGE', cacheControl: { revalidate: 3600 } }, getCtx: { kind: 'IMAGE' } };
  }
  if (kind === 'fetch') {
    const value = { kind: 'FETCH', data: { headers: {}, body: marker, url: 'http://x/', status: 200 }, revalidate: 3600, tags };
    return { value, setCtx: { fetchCache: true, tags }, getCtx: { kind: 'FETCH', tags } };
  }
  const value = {
    kind: 'APP_PAGE',
    html: `<p>${marker}</p>`,
    rscData: Buffer.from(`rsc ${marker}`),
    segmentData: new Map([['/_tree', Buffer.from(marker)]]),
    headers: { 'x-next-cache-tags': tags.join(',') },
    status: 200,
  };
  return { value, setCtx: { kind: 'APP_PAGE', cacheControl: { revalidate: 3600, expire: 86400 } }, getCtx: { kind: 'APP_PAGE' } };
}

/** The marker a served value carries. */
function markerOf(value) {
  if (value.kind === 'IMAGE') return Buffer.from(value.buffer).toString();
  if (value.kind === 'FETCH') return value.data.body;
  const match = /^<p>(.*)<\/p>$/s.exec(value.html ?? '');
  return match ? match[1] : `unexpected html ${JSON.stringify(value.html)}`;
}

const timed = async (work) => {
  const started = performance.now();
  const result = await work();
  return { ms: Math.round(performance.now() - started), ...result };
};

const ops = {
  set: ({ dir, app, key, kind = 'page', marker, tags = [], serverDistDir }) =>
    timed(async () => {
      const { value, setCtx } = valueOf(kind, marker, tags);
      await handler(dir, app, serverDistDir).set(key, value, setCtx);
      return {};
    }),
  get: ({ dir, app, key, kind = 'page', tags = [], serverDistDir }) =>
    timed(async () => {
      const got = await handler(dir, app, serverDistDir).get(key, valueOf(kind, '', tags).getCtx);
      return { marker: got ? markerOf(got.value) : null };
    }),
  revalidate: ({ dir, app, tags }) =>
    timed(async () => {
      try {
        await handler(dir, app).revalidateTag(tags);
        return { ok: true };
      } catch (error) {
        return { ok: false, error: String(error && error.message) };
      }
    }),
};

process.on('message', (msg) => {
  if (msg.op === 'done') {
    process.disconnect();
    return;
  }
  ops[msg.op](msg)
    .then((result) => process.send({ id: msg.id, result }))
    .catch((error) => process.send({ id: msg.id, error: String((error && error.stack) || error) }));
});
process.send({ ready: true });
