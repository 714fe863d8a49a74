// The storage engines the benchmark puts side by side, each behind the same tiny interface:
//   { name, get(key, kind), set(key, value, kind), close() }
// Values are Next.js cache values (see payloads.js); `kind` is the ctx kind Next passes.
'use strict';
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const path = require('node:path');
const { spawn } = require('node:child_process');
const net = require('node:net');
const { Runtime } = require('../dist/lib/service/runtime.js');
const { resolveOptions } = require('../dist/lib/config.js');
const { bindHandler } = require('../dist/lib/next/handler.js');
const { encodeEntry } = require('../dist/lib/store/codec.js');
const { loadHasher } = require('../dist/lib/store/hash.js');

const ctxFor = (value) =>
  value.kind === 'FETCH'
    ? { set: { fetchCache: true, tags: ['bench'] }, get: { kind: 'FETCH', tags: ['bench'], softTags: [] } }
    : value.kind === 'IMAGE'
      ? { set: { kind: 'IMAGE', cacheControl: { revalidate: 3600, expire: undefined } }, get: { kind: 'IMAGE', isFallback: false } }
      : { set: { kind: value.kind, cacheControl: { revalidate: 3600, expire: 86400 } }, get: { kind: value.kind } };

/** The floor: the same bytes as our entry file, read with one readFile, written by temp file + rename. */
async function floor(dir) {
  await loadHasher();
  let n = 0;
  // One file per key in one folder, named by a hash of the key: no encoding, no checks, no tags.
  const fileOf = (key) => path.join(dir, require('node:crypto').createHash('sha1').update(key).digest('hex'));
  return {
    name: 'floor: fs readFile / tmp+rename',
    async set(key, value) {
      const bytes = Buffer.concat(encodeEntry({ key, kind: value.kind, writtenAt: Date.now(), tags: [], value }));
      const file = fileOf(key);
      const temp = `${file}.tmp${process.pid}.${n++}`;
      await fsp.writeFile(temp, bytes);
      await fsp.rename(temp, file);
    },
    async get(key) {
      const file = fileOf(key);
      try {
        return await fsp.readFile(file);
      } catch {
        return null;
      }
    },
    async close() {},
  };
}

/**
 * next-volume-cache. `memoryCacheBytes`: its memory tier's size (0: off, every get reads the volume: the
 * "cold" path); the default holds every key a section uses, so that repeated gets are memory hits.
 * `secret`: seal everything (the integrity section). `options`: any other library options.
 */
async function ours(dir, { fsync = false, memoryCacheBytes = 512 * 1024 * 1024, secret, name, options = {} } = {}) {
  await loadHasher();
  const runtime = new Runtime({ settings: { ...resolveOptions({ logLevel: 'error', memoryCacheBytes, secret, ...options }, {}), dir, fsync }, createParents: true });
  const Handler = bindHandler(() => runtime);
  const handler = new Handler({});
  return {
    name: name ?? (fsync ? 'next-volume-cache (fsync)' : secret ? 'next-volume-cache (secret)' : memoryCacheBytes === 0 ? 'next-volume-cache (memory tier off)' : 'next-volume-cache'),
    set: (key, value) => handler.set(key, value, ctxFor(value).set),
    get: (key, value) => handler.get(key, ctxFor(value).get),
    close: () => runtime.close(),
    runtime,
  };
}

/** Next's built-in FileSystemCache, constructed as Next constructs it, without its memory LRU. */
async function nextFileSystem(dir) {
  const FileSystemCache = require('next/dist/server/lib/incremental-cache/file-system-cache.js').default;
  const { nodeFs } = require('next/dist/server/lib/node-fs-methods.js');
  const serverDistDir = path.join(dir, 'server');
  fs.mkdirSync(serverDistDir, { recursive: true });
  const cache = new FileSystemCache({ fs: nodeFs, dev: false, flushToDisk: true, serverDistDir, revalidatedTags: [], maxMemoryCacheSize: 0 });
  return {
    name: "Next's FileSystemCache",
    supports: (value) => value.kind !== 'IMAGE',
    set: (key, value) => cache.set(key, value, ctxFor(value).set),
    get: (key, value) => cache.get(key, ctxFor(value).get),
    close: async () => {},
  };
}

const { freePort } = require('../scripts/fixture-app.js');

/** A real redis-server (Debian's) on 127.0.0.1, started and stopped by the benchmark. */
async function startRedis(dir) {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.end(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => new Promise((resolve) => (child.once('exit', resolve), child.kill())) };
}

/**
 * @fortedigital/nextjs-cache-handler (the maintained Redis handler for Next 16), redis-strings
 * handler. Its CacheHandler configures itself once per process (a static onCreation), so one
 * redis-server and one client serve every cell of a run; each cell starts from an empty database.
 */
let sharedRedis;
async function fortedigitalRedis(dir, url = process.env.REDIS_URL, { flush = !url } = {}) {
  if (!sharedRedis) {
    const redis = url ? { url, stop: async () => {} } : await startRedis(dir);
    const { createClient } = require('redis');
    const client = createClient({ url: redis.url });
    await client.connect();
    const { CacheHandler } = await import('@fortedigital/nextjs-cache-handler');
    const createRedisHandler = (await import('@fortedigital/nextjs-cache-handler/redis-strings')).default;
    CacheHandler.onCreation(() => ({ handlers: [createRedisHandler({ client, keyPrefix: 'bench:' })] }));
    const handler = new CacheHandler({ serverDistDir: path.join(dir, 'server'), dev: false, revalidatedTags: [], _requestHeaders: {} });
    sharedRedis = { redis, client, handler };
    process.once('exit', () => sharedRedis?.redis.stop());
  }
  const { client, handler } = sharedRedis;
  // A fresh database per cell; child processes of the multi-process section share the parent's.
  if (flush) await client.flushAll();
  return {
    name: '@fortedigital/nextjs-cache-handler (Redis)',
    set: (key, value) => handler.set(key, value, ctxFor(value).set),
    get: (key, value) => handler.get(key, ctxFor(value).get),
    close: async () => {},
  };
}

/** Stops the shared redis-server, if one was started. */
async function stopShared() {
  if (!sharedRedis) return;
  await sharedRedis.client.quit().catch(() => undefined);
  await sharedRedis.redis.stop();
  sharedRedis = undefined;
}

/** npm's cacache: a content-addressed store with an index, as a storage-engine reference (bytes only). */
async function cacacheStore(dir) {
  const cacache = require('cacache');
  await loadHasher();
  return {
    name: 'cacache',
    async set(key, value) {
      await cacache.put(dir, key, Buffer.concat(encodeEntry({ key, kind: value.kind, writtenAt: Date.now(), tags: [], value })));
    },
    async get(key) {
      try {
        return (await cacache.get(dir, key)).data;
      } catch {
        return null;
      }
    },
    close: async () => {},
  };
}

module.exports = { floor, ours, nextFileSystem, fortedigitalRedis, cacacheStore, startRedis, stopShared, freePort };
