// Fills a cache root through the public handlers, as a Next.js server would: one process, any
// umask or uid the test starts it under. argv[2] is a JSON plan:
//   { dir, options: {...cache options}, ops: [{ op, ... }] }
// and it prints one JSON line: the results of the ops, in order.
// Ops: page / fetch / image (with an optional serverDistDir: the build it belongs to), useCache,
// revalidate, get (a hit or not), waitFile (a path under dir appears), waitMemberLines (the tag
// index holds at least n lines: membership records are appended in the background).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createCacheHandler } = require('../../dist/lib/index.js');
const { createUseCacheHandler } = require('../../dist/lib/use-cache.js');

const plan = JSON.parse(process.argv[2]);
const options = { dir: plan.dir, logLevel: 'error', ...plan.options };
const Handler = createCacheHandler(options);
const useCache = createUseCacheHandler(options);
const handlerFor = (serverDistDir) => new Handler(serverDistDir ? { serverDistDir } : {});
const DEADLINE_MS = 20_000;

function pageValue(key, tags) {
  return {
    kind: 'APP_PAGE',
    html: `<p>${key}</p>`,
    rscData: Buffer.from(`rsc of ${key}`),
    segmentData: new Map([['/_tree', Buffer.from('tree')]]),
    headers: { 'x-next-cache-tags': tags.join(',') },
    status: 200,
  };
}

function streamOf(text) {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
}

async function poll(condition, what) {
  const deadline = Date.now() + DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

function memberLines() {
  const dir = path.join(plan.dir, 'apps', options.app ?? 'default', 'tags', 'members');
  let lines = 0;
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    lines += fs.readFileSync(path.join(dir, name), 'utf8').split('\n').length - 1;
  }
  return lines;
}

const ops = {
  page: ({ key, serverDistDir, tags = [] }) => handlerFor(serverDistDir).set(key, pageValue(key, tags), { kind: 'APP_PAGE', cacheControl: { revalidate: 60, expire: 3600 } }),
  fetch: ({ key, serverDistDir, tags = [] }) => handlerFor(serverDistDir).set(key, { kind: 'FETCH', data: { headers: {}, body: 'e30=', url: 'http://127.0.0.1/data', status: 200 }, revalidate: 30, tags }, { fetchCache: true, tags }),
  image: ({ key, serverDistDir, bytes = 64 }) =>
    handlerFor(serverDistDir).set(key, { kind: 'IMAGE', buffer: Buffer.alloc(bytes, 7), etag: 'e', upstreamEtag: 'u', extension: 'png', revalidate: 60 }, { kind: 'IMAGE', cacheControl: { revalidate: 60, expire: undefined } }),
  useCache: ({ key, tags = [] }) => useCache.set(key, Promise.resolve({ value: streamOf(`use cache ${key}`), tags, stale: 30, timestamp: Date.now(), expire: 3600, revalidate: 60 })),
  revalidate: ({ tags }) => handlerFor().revalidateTag(tags),
  get: async ({ key, serverDistDir, kind }) => {
    if (kind === 'USE_CACHE') return (await useCache.get(key, [])) !== undefined;
    return (await handlerFor(serverDistDir).get(key, { kind })) !== null;
  },
  waitFile: ({ file }) => poll(() => fs.existsSync(path.join(plan.dir, file)), file),
  waitMemberLines: ({ lines }) => poll(() => memberLines() >= lines, `${lines} tag index lines`),
};

(async () => {
  const results = [];
  for (const step of plan.ops) {
    const run = ops[step.op];
    if (!run) throw new Error(`unknown op ${step.op}`);
    const result = await run(step);
    results.push(result === undefined ? null : result);
  }
  process.stdout.write(JSON.stringify(results) + '\n', () => process.exit(0));
})().catch((error) => {
  process.stderr.write(`${error && error.stack}\n`);
  process.exit(1);
});
