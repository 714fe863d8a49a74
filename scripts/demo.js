#!/usr/bin/env node
// The demo: the real Next.js app in fixtures/next-app, built once, served by two `next start`
// servers that share one cache folder through next-volume-cache. Prints what to try; Ctrl-C stops.
//   npm run demo            (NEXT_VOLUME_CACHE_DIR picks the folder; default: a new temp folder)
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { buildFixture, startDataServer, startServer } = require('./fixture-app.js');

(async () => {
  const ownFolder = !process.env.NEXT_VOLUME_CACHE_DIR;
  const cacheDir = process.env.NEXT_VOLUME_CACHE_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'next-volume-cache-demo-'));
  await buildFixture({ log: console.log });
  const data = await startDataServer();
  const [a, b] = await Promise.all([startServer({ name: 'A', cacheDir, dataPort: data.port }), startServer({ name: 'B', cacheDir, dataPort: data.port })]);
  const show = async (server, pathname) => {
    const res = await fetch(server.url + pathname);
    const body = await res.text();
    const render = /data-render="([^"]*)"/.exec(body)?.[1] ?? /data-value="([^"]*)"/.exec(body)?.[1] ?? '';
    console.log(`  ${server.name}  GET ${pathname.padEnd(10)} ${res.status}  x-nextjs-cache: ${(res.headers.get('x-nextjs-cache') || '-').padEnd(5)}  rendered: ${render}`);
  };
  console.log(`\ncache folder: ${cacheDir}\nserver A: ${a.url}\nserver B: ${b.url}\n`);
  console.log('A renders /isr; B serves the same render from the shared cache:');
  await show(a, '/isr');
  await show(b, '/isr');
  console.log("A calls revalidatePath('/isr'); B re-renders on its next request:");
  await fetch(`${a.url}/api/revalidate?path=/isr`);
  await new Promise((r) => setTimeout(r, 300));
  await show(b, '/isr');
  await show(a, '/isr');
  console.log(`
Try it yourself:
  curl -si ${a.url}/blog/a | grep -i x-nextjs-cache            # MISS or HIT on A
  curl -si ${b.url}/blog/a | grep -i x-nextjs-cache            # HIT on B: rendered by A
  curl -s  '${a.url}/api/revalidate?tag=_N_T_/blog/a'          # revalidate on A ...
  curl -si ${b.url}/blog/a | grep -i 'x-nextjs-cache\\|data-render' # ... B re-renders (after ~200 ms)
  curl -s  '${a.url}/api/revalidate?tag=data&mode=max'         # stale-while-revalidate for the fetch tag "data"
  node dist/bin/cli.js compact --dir ${cacheDir}               # fold the tag logs

Ctrl-C stops both servers${ownFolder ? ' and removes the cache folder' : ''}.`);
  const stop = async () => {
    await Promise.all([a.stop(), b.stop(), data.stop()]);
    // A folder the demo made in the temp directory goes with it; one the user named stays.
    if (ownFolder) fs.rmSync(cacheDir, { recursive: true, force: true });
    console.log('\nstopped.');
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (process.env.DEMO_EXIT_AFTER_MS) setTimeout(stop, Number(process.env.DEMO_EXIT_AFTER_MS));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
