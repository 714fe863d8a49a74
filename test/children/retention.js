// Does a cache call keep the caller's async context alive after it completed? Modelled on Next's own
// test ("does not retain the async context that populated an entry", cache-handlers/default.test.ts):
// a request-like AsyncLocalStorage store holding a big object, a WeakRef to it, the call made inside
// `storage.run(store, ...)`, then gc and a check that the WeakRef was cleared.
//
//   node --expose-gc retention.js <dist> <mode> <cacheDir> [<nextDir>]
//
// One mode per process, so that "cold" means a fresh process (the runtime opens inside the call).
// The package is loaded at top level, outside any store, as Next loads its cache handlers. Prints one
// JSON line: { mode, refs: [{ name, quick, settled }] }, where `quick` is the check right after the
// call (a few gc rounds) and `settled` the one after background work the call started has finished.
'use strict';
const { AsyncLocalStorage } = require('node:async_hooks');
const fs = require('node:fs');
const path = require('node:path');

const [dist, mode, dir, nextDir] = process.argv.slice(2);
if (typeof gc !== 'function') throw new Error('run with --expose-gc');
const requestStorage = new AsyncLocalStorage();
const options = { dir, logLevel: 'silent', seed: mode === 'page-autoseed' };
const serverDistDir = nextDir ? path.join(nextDir, 'server') : undefined;

let PageHandler;
let useCache;
function loadPackage() {
  PageHandler = require(path.join(dist, 'lib/index.js')).createCacheHandler(options);
  useCache = require(path.join(dist, 'lib/use-cache.js')).createUseCacheHandler(options);
}
// Next loads its cache handlers outside any request; one mode loads them inside one instead.
if (mode !== 'package-loaded-in-request') loadPackage();

/** Runs `work` in a fresh request store; resolves, once it completed, with a WeakRef to that store. */
async function inRequest(work) {
  let ref;
  // The payload makes a retained store visible in a heap snapshot too; the WeakRef is what is checked.
  await requestStorage.run({ requestId: mode, payload: Buffer.alloc(8 * 1024 * 1024) }, async () => {
    ref = new WeakRef(requestStorage.getStore());
    await work();
  });
  return ref;
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Next's expectCollected: gc and a macrotask turn, `rounds` times (a WeakRef's target survives its own job). */
async function collected(ref, rounds) {
  for (let i = 0; i < rounds; i++) {
    globalThis.gc();
    await nextTurn();
  }
  return ref.deref() === undefined;
}

/** Polls with a deadline: background work (seeding) is awaited, never slept on. */
async function until(condition, what, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function appPage(tags) {
  return { kind: 'APP_PAGE', html: '<p>page</p>', rscData: Buffer.from('rsc'), headers: { 'x-next-cache-tags': tags.join(',') }, status: 200 };
}

const pageSetContext = { kind: 'APP_PAGE', isRoutePPREnabled: false, isFallback: false, cacheControl: { revalidate: 60, expire: 3600 } };

function useCacheEntry(tags) {
  const body = new TextEncoder().encode('use cache body');
  const value = new ReadableStream({
    start(controller) {
      controller.enqueue(body);
      controller.close();
    },
  });
  return { value, tags, stale: 30, timestamp: Date.now(), expire: 3600, revalidate: 60 };
}

/**
 * Reads a 'use cache' stream with its reader: on Node 20 the first `new Response(stream).text()` of a
 * process sets up undici in its caller's context and keeps that caller alive (not ours to test).
 */
async function drain(stream) {
  const reader = stream.getReader();
  for (;;) {
    const { done } = await reader.read();
    if (done) return;
  }
}

/** Opens the runtime outside any store, for the modes that are not about the first call. */
async function warmUp() {
  await new PageHandler({ serverDistDir }).get('/warm-up', { kind: 'APP_PAGE' });
  await useCache.get('warm-up', []);
}

/** Each mode: the calls made inside request stores, and the background work to wait for before `settled`. */
const MODES = {
  // The control: an interval made inside the request keeps its store. Shows that this process's
  // gc and WeakRef checks do see a retained context (a check that cannot fail proves nothing).
  async 'control-interval'() {
    return { refs: { request: await inRequest(async () => void setInterval(() => {}, 60_000).unref()) } };
  },
  // A pending timer made in the request (a dedupe window, a deadline): the quick check must see it. It
  // runs ~40 ms after the call here; the timer is longer so that a loaded machine cannot make it flaky.
  async 'control-timeout'() {
    return { refs: { request: await inRequest(async () => void setTimeout(() => {}, 1000)) } };
  },
  // Something (an instrumentation, a custom server) loads the package inside its own store: what the
  // package makes at load (its detached root, its dependencies' signal handlers) must not keep it.
  async 'package-loaded-in-request'() {
    const loader = await inRequest(async () => loadPackage());
    const request = await inRequest(() => new PageHandler({ serverDistDir }).set('/tagged', appPage(['post']), pageSetContext));
    return { refs: { loader, request } };
  },
  async 'page-cold-get'() {
    return { refs: { request: await inRequest(() => new PageHandler({ serverDistDir }).get('/cold', { kind: 'APP_PAGE', isFallback: false })) } };
  },
  async 'page-tagged-set'() {
    await warmUp();
    const ref = await inRequest(() => new PageHandler({ serverDistDir }).set('/tagged', appPage(['_N_T_/layout', 'post']), pageSetContext));
    return { refs: { request: ref } };
  },
  async 'page-revalidateTag'() {
    await warmUp();
    return { refs: { request: await inRequest(() => new PageHandler({ serverDistDir }).revalidateTag(['post', '_N_T_/tagged'])) } };
  },
  async 'page-get-hit'() {
    await warmUp();
    await new PageHandler({ serverDistDir }).set('/hit', appPage(['post']), pageSetContext);
    const ref = await inRequest(async () => {
      const entry = await new PageHandler({ serverDistDir }).get('/hit', { kind: 'APP_PAGE', isFallback: false });
      if (!entry) throw new Error('expected a hit');
    });
    return { refs: { request: ref } };
  },
  async 'page-pages-set'() {
    await warmUp();
    const key = '/route-cache/PAGES/1a6a4d63508b225c8f71048b0ad3bbbe1b3ac485b65511249a3db422c6cc6cad/$/pages-isr';
    const value = { kind: 'PAGES', html: '<p>pages</p>', pageData: { pageProps: {}, __N_SSG: true }, headers: undefined, status: undefined };
    const ctx = { kind: 'PAGES', isRoutePPREnabled: false, isFallback: false, cacheControl: { revalidate: 60, expire: 3600 } };
    return { refs: { request: await inRequest(() => new PageHandler({ serverDistDir }).set(key, value, ctx)) } };
  },
  async 'page-autoseed'() {
    // Open without a build (no seeding yet); then the first call that names the build starts seeding it.
    await new PageHandler({}).get('/warm-up', { kind: 'APP_PAGE' });
    const ref = await inRequest(() => new PageHandler({ serverDistDir }).get('/seed-trigger', { kind: 'APP_PAGE', isFallback: false }));
    const seeded = path.join(dir, 'apps', 'default', 'seeded');
    return { refs: { request: ref }, settle: () => until(() => fs.existsSync(seeded) && fs.readdirSync(seeded).length > 0, 'the seeded marker') };
  },
  async 'use-cache-cold-get'() {
    return { refs: { request: await inRequest(() => useCache.get('cold', ['_N_T_/layout'])) } };
  },
  async 'use-cache-refreshTags'() {
    await warmUp();
    return { refs: { request: await inRequest(() => useCache.refreshTags()) } };
  },
  async 'use-cache-tagged-set'() {
    await warmUp();
    return { refs: { request: await inRequest(() => useCache.set('tagged', Promise.resolve(useCacheEntry(['post'])))) } };
  },
  async 'use-cache-updateTags'() {
    await warmUp();
    return { refs: { request: await inRequest(() => useCache.updateTags(['post'], undefined)) } };
  },
  async 'use-cache-get-hit'() {
    await warmUp();
    await useCache.set('hit', Promise.resolve(useCacheEntry(['post'])));
    const ref = await inRequest(async () => {
      const entry = await useCache.get('hit', []);
      if (!entry) throw new Error('expected a hit');
      await drain(entry.value);
    });
    return { refs: { request: ref } };
  },
  async 'use-cache-get-waiting-for-set'() {
    await warmUp();
    let resolveEntry;
    const pendingEntry = new Promise((resolve) => (resolveEntry = resolve));
    // One request stores the entry while another asks for it: the get waits for the set in flight.
    const setter = inRequest(() => useCache.set('in-flight', pendingEntry));
    const getter = inRequest(async () => {
      const entry = await useCache.get('in-flight', []);
      if (!entry) throw new Error('expected the entry the set in flight stored');
      await drain(entry.value);
    });
    await nextTurn();
    resolveEntry(useCacheEntry(['post']));
    const [setterRef, getterRef] = await Promise.all([setter, getter]);
    return { refs: { setter: setterRef, getter: getterRef } };
  },
};

(async () => {
  const run = MODES[mode];
  if (!run) throw new Error(`unknown mode ${mode}; modes: ${Object.keys(MODES).join(', ')}`);
  const { refs, settle } = await run();
  const quick = {};
  for (const [name, ref] of Object.entries(refs)) quick[name] = await collected(ref, 3);
  if (settle) await settle();
  const result = [];
  for (const [name, ref] of Object.entries(refs)) result.push({ name, quick: quick[name], settled: await collected(ref, 10) });
  process.stdout.write(JSON.stringify({ mode, refs: result }) + '\n');
  // Exits on its own: an unref'd lease timer must not hold the process, a leaked ref'd one would (the test times out).
})().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
