#!/usr/bin/env node
// Interim demo: two "servers" (child processes) share one cache folder through the handler, the way two
// Next.js pods share a volume. Prints each step. Run: npm run demo
'use strict';
const { fork } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const dir = process.env.NEXT_VOLUME_CACHE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'next-volume-cache-demo-'));
const agentPath = path.join(__dirname, '..', 'test', 'children', 'agent.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(name) {
  const child = fork(agentPath, [dir, '200'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let id = 0;
  const pending = new Map();
  child.on('message', (m) => {
    if (m.id !== undefined) pending.get(m.id)(m);
  });
  const ready = new Promise((resolve) => child.once('message', resolve));
  const call = (op, args = {}) =>
    new Promise((resolve, reject) => {
      const n = id++;
      pending.set(n, (m) => (m.error ? reject(new Error(m.error)) : resolve(m.result)));
      child.send({ id: n, op, ...args });
    });
  return ready.then(() => ({ name, call, stop: () => child.kill() }));
}

const show = (view) => (view ? `HIT  ${view.html}  (age ${Math.round(view.ageMs)} ms)` : 'MISS');

(async () => {
  console.log(`cache folder: ${dir}\n`);
  const [a, b] = await Promise.all([start('A'), start('B')]);
  const key = '/route-cache/APP_PAGE/demo/$/blog/hello';
  console.log(`A  set   ${key}  (tags: post, _N_T_/blog/hello)`);
  await a.call('set', { key, marker: 'rendered by A', tags: ['post', '_N_T_/blog/hello'] });
  console.log(`B  get   -> ${show(await b.call('get', { key }))}`);
  console.log(`A  revalidateTag(['post'])   (expire now, as updateTag does)`);
  await a.call('revalidate', { tags: ['post'] });
  await sleep(250);
  console.log(`B  get   -> ${show(await b.call('get', { key }))}   (B saw A's invalidation within its 200 ms refresh)`);
  console.log(`B  set   (B re-renders the page)`);
  await b.call('set', { key, marker: 'rendered by B', tags: ['post', '_N_T_/blog/hello'] });
  console.log(`A  get   -> ${show(await a.call('get', { key }))}`);
  console.log(`A  revalidateTag(['post'], { expire: 31536000 })   ('max': stale now, regenerate in the background)`);
  await a.call('revalidate', { tags: ['post'], durations: { expire: 31536000 } });
  await sleep(250);
  const stale = await b.call('get', { key });
  console.log(`B  get   -> ${show(stale)}   (age past the 60 s revalidate window: Next serves it stale and regenerates)`);
  a.stop();
  b.stop();
  const files = [];
  const walk = (d) => {
    for (const n of fs.readdirSync(d)) {
      const p = path.join(d, n);
      if (fs.lstatSync(p).isDirectory()) walk(p);
      else files.push(path.relative(dir, p));
    }
  };
  walk(dir);
  console.log(`\nfiles on the volume:\n  ${files.sort().join('\n  ')}`);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
