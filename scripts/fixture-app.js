// Drives the real Next.js app in fixtures/next-app: build it once, start a tiny data server and
// `next start` servers that share one cache folder. Used by the end-to-end tests and the demo.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const lockfile = require('proper-lockfile');

const { REPO, atLeast, nextTarget, prepareFixture } = require('./next-target.js');

/** The Next.js under test: the repository's, or NVC_NEXT_VERSION's (installed into .cache/next/<version>). */
const TARGET = nextTarget();
const NEXT_VERSION = TARGET.version;
const APP = path.join(TARGET.root, 'fixtures', 'next-app');
/** The 'use cache' app (cacheComponents: true cannot share a build with segment revalidate exports). */
const CACHE_COMPONENTS_APP = path.join(TARGET.root, 'fixtures', 'next-app-cc');
const NEXT_BIN = path.join(TARGET.root, 'node_modules', 'next', 'dist', 'bin', 'next');

/** What the Next under test does that older 16.x releases do not; the e2e tests skip only these. */
const FEATURES = {
  /** `images.customCacheHandler`: optimized images through the cacheHandler (16.2.0; 16.0/16.1 refuse the option). */
  imagesThroughHandler: atLeast(NEXT_VERSION, [16, 2, 0]),
  /** The build's `.meta` files name each page's runtime key (`routeCache.key`, 16.3.8), which seeding stores under. */
  seedableBuild: atLeast(NEXT_VERSION, [16, 3, 8]),
  /**
   * Next takes a page's lifetimes from the `cacheControl` the handler's get returns (16.4.0). Before,
   * only from its prerender manifest or a set in the same process: for a path another server neither
   * prerendered nor rendered itself, it sends no Cache-Control and counts the entry stale after 1 s.
   */
  cacheControlFromHandler: atLeast(NEXT_VERSION, [16, 4, 0]),
};

const BUILT_MARKER = 'fixture-build-complete';

/** How long a waiting test file waits for another one's build of the same app before giving up. */
const BUILD_WAIT_MS = 10 * 60_000;
/**
 * A lock whose holder died (a killed test run) is taken over after this long without a refresh. The
 * holder refreshes it every few seconds for as long as its build runs: the build is a child process,
 * so this process's event loop stays free to do so.
 */
const BUILD_LOCK_STALE_MS = 30_000;

/**
 * Builds the app unless a build of the current sources exists (`force` rebuilds); resolves with its BUILD_ID.
 * @param {{ force?: boolean, log?: (message: string) => void, app?: string, distDir?: string, variant?: string }} [options]
 * @returns {Promise<string>}
 */
async function buildFixture({ force = false, log = () => {}, app = APP, distDir = '.next', variant = '1' } = {}) {
  prepareFixture(TARGET, app, log);
  const buildId = path.join(app, distDir, 'BUILD_ID');
  // Next writes BUILD_ID before prerendering: only this marker, written after a successful build, says the build is usable.
  const built = path.join(app, distDir, BUILT_MARKER);
  const fresh = () => !force && fs.existsSync(built) && fs.statSync(built).mtimeMs > newestSource(app);
  if (fresh()) return fs.readFileSync(buildId, 'utf8');
  // Test files run in parallel and may want the same build: one builds, the others wait for it.
  /** @type {Error | undefined} */
  let lost;
  const release = await lockfile.lock(app, {
    lockfilePath: path.join(app, `${distDir}.building`),
    stale: BUILD_LOCK_STALE_MS,
    retries: { retries: Math.ceil(BUILD_WAIT_MS / 1000), factor: 1, minTimeout: 1000, maxTimeout: 1000 },
    // Not proper-lockfile's default (throwing from a timer): the build fails instead, below.
    onCompromised: (error) => (lost = error),
  });
  try {
    if (fresh()) return fs.readFileSync(buildId, 'utf8');
    await runBuild({ log, app, distDir, variant });
    // Another process may have built into the same folder meanwhile: this build cannot be trusted.
    if (lost) throw new Error(`lost the build lock of ${path.relative(REPO, app)} (${distDir}) while building: ${lost.message}`);
    fs.writeFileSync(built, NEXT_VERSION);
    return fs.readFileSync(buildId, 'utf8');
  } finally {
    if (!lost) await release();
  }
}

/** `next build` in a child process (so this process can keep refreshing the build lock); resolves when it succeeds. */
function runBuild({ log, app, distDir, variant }) {
  log(`building ${path.relative(REPO, app)} into ${distDir} with next@${NEXT_VERSION} (next build) ...`);
  // No cache folder at build time: `next build` only hands fetches to the handler, and a CI build
  // machine has no volume. The handler must cope (it degrades to misses), which this also proves.
  const child = spawn(process.execPath, [NEXT_BIN, 'build'], {
    cwd: app,
    env: nextEnv({
      NEXT_VOLUME_CACHE_DIR: path.join(app, distDir, 'no-volume-at-build', 'cache'),
      DATA_PORT: '9',
      FIXTURE_DIST_DIR: distDir,
      FIXTURE_VARIANT: variant,
    }),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Next reports some build failures (a page timing out) on stdout only: its tail goes into the error.
  let tail = '';
  child.stdout.on('data', (d) => (tail = (tail + d.toString()).slice(-8000)));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`next build of ${path.relative(REPO, app)} (${distDir}) failed: ${signal ?? `exit code ${code}`}\n${tail.split('\n').slice(-30).join('\n')}`))));
  });
}

/**
 * The environment of `next build`/`next start`: this process's, without NODE_ENV. Next sets it to
 * production itself, as in a deployment; vitest's NODE_ENV=test would run Next's development-only
 * code paths instead (on 16.0 a 'use cache' prerender then never settles a handler's I/O).
 */
function nextEnv(vars) {
  const env = { ...process.env, NEXT_TELEMETRY_DISABLED: '1', ...vars };
  delete env.NODE_ENV;
  return env;
}

function newestSource(app) {
  let newest = 0;
  const visit = (dir) => {
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith('.next') || name === 'node_modules') continue;
      const full = path.join(dir, name);
      const stat = fs.statSync(full);
      if (stat.isDirectory()) visit(full);
      else newest = Math.max(newest, stat.mtimeMs);
    }
  };
  visit(app);
  // The handler itself (dist/) is loaded by path at run time, not bundled: no rebuild needed for it.
  return newest;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A data source for fetch(): every request returns the next number. */
async function startDataServer() {
  let value = 0;
  const server = http.createServer((req, res) => {
    value += 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ value }));
  });
  const port = await freePort();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    get requests() {
      return value;
    },
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * Starts `next start` on a free port; resolves once it answers.
 * @param {{ name: string, cacheDir: string, dataPort: number, env?: Record<string, string>, command?: string, commandArgs?: string[], app?: string, distDir?: string }} options
 */
async function startServer({ name, cacheDir, dataPort, env = {}, command, commandArgs = [], app = APP, distDir = '.next' }) {
  const port = await freePort();
  const args = [...commandArgs, NEXT_BIN, 'start', '-p', String(port), '-H', '127.0.0.1'];
  const child = spawn(command || process.execPath, args, {
    cwd: app,
    env: nextEnv({
      SERVER_NAME: name,
      NEXT_VOLUME_CACHE_DIR: cacheDir,
      NEXT_VOLUME_CACHE_TAG_REFRESH_MS: '200',
      DATA_PORT: String(dataPort),
      FIXTURE_DIST_DIR: distDir,
      ...env,
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = watchExit(child);
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exit.how !== undefined) throw new Error(`server ${name} ended (${exit.how}): ${output}`);
    try {
      await fetch(`${url}/api/revalidate`);
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL'); // not left running behind a failed test
        await exit.ended;
        throw new Error(`server ${name} did not start: ${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    name,
    url,
    port,
    output: () => output,
    stop: () => {
      child.kill('SIGTERM'); // a no-op once it has ended
      return exit.ended;
    },
  };
}

/**
 * Follows a child's end from its spawn, so that a later check or wait cannot miss an end that
 * already happened: checking exitCode alone misses a child ended by a signal (exitCode stays
 * null) and a wait attached after the 'exit' event waits forever.
 */
function watchExit(child) {
  /** @type {{ how: string | undefined, ended: Promise<void> }} */
  const exit = { how: undefined, ended: Promise.resolve() };
  exit.ended = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exit.how = signal ?? `exit code ${code}`;
      resolve();
    });
    child.on('error', (error) => {
      if (child.pid !== undefined) return; // a failed kill, not a failed start
      exit.how = error.message;
      resolve();
    });
  });
  return exit;
}

/** The action id of the fixture's updateTag server action, from the build's manifest. */
function updateTagActionId() {
  const manifest = JSON.parse(fs.readFileSync(path.join(APP, '.next', 'server', 'server-reference-manifest.json'), 'utf8'));
  const [id] = Object.entries(manifest.node).find(([, v]) => v.filename.endsWith('app/action/page.js'));
  return id;
}

module.exports = { APP, CACHE_COMPONENTS_APP, FEATURES, NEXT_VERSION, REPO, buildFixture, startDataServer, startServer, updateTagActionId, freePort };
