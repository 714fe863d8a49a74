// Drives the real Next.js app in fixtures/next-app: build it once, start a tiny data server and
// `next start` servers that share one cache folder. Used by the end-to-end tests and the demo.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..');
const APP = path.join(REPO, 'fixtures', 'next-app');
/** The 'use cache' app (cacheComponents: true cannot share a build with segment revalidate exports). */
const CACHE_COMPONENTS_APP = path.join(REPO, 'fixtures', 'next-app-cc');
const NEXT_BIN = path.join(REPO, 'node_modules', 'next', 'dist', 'bin', 'next');

/** Builds the app unless a build of the current sources exists (`force` rebuilds). */
function buildFixture({ force = false, log = () => {}, app = APP, distDir = '.next', variant = '1' } = {}) {
  const buildId = path.join(app, distDir, 'BUILD_ID');
  const fresh = () => !force && fs.existsSync(buildId) && fs.statSync(buildId).mtimeMs > newestSource(app);
  if (fresh()) return fs.readFileSync(buildId, 'utf8');
  // Test files run in parallel and may want the same build: one builds, the others wait for it.
  const release = lockBuild(path.join(app, `${distDir}.building`));
  try {
    if (fresh()) return fs.readFileSync(buildId, 'utf8');
    return runBuild({ log, app, distDir, variant, buildId });
  } finally {
    release();
  }
}

function lockBuild(lockDir) {
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      return () => fs.rmSync(lockDir, { recursive: true, force: true });
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      // A build killed mid-way leaves its lock: older than 10 minutes is stale.
      if (Date.now() - fs.statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs > 10 * 60_000) fs.rmSync(lockDir, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockDir}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
    }
  }
}

function runBuild({ log, app, distDir, variant, buildId }) {
  log(`building ${path.relative(REPO, app)} into ${distDir} (next build) ...`);
  // No cache folder at build time: `next build` only hands fetches to the handler, and a CI build
  // machine has no volume. The handler must cope (it degrades to misses), which this also proves.
  execFileSync(process.execPath, [NEXT_BIN, 'build'], {
    cwd: app,
    env: {
      ...process.env,
      NEXT_TELEMETRY_DISABLED: '1',
      NEXT_VOLUME_CACHE_DIR: path.join(app, distDir, 'no-volume-at-build', 'cache'),
      DATA_PORT: '9',
      FIXTURE_DIST_DIR: distDir,
      FIXTURE_VARIANT: variant,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return fs.readFileSync(buildId, 'utf8');
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
  return { port, get requests() { return value; }, stop: () => new Promise((resolve) => server.close(resolve)) };
}

/** Starts `next start` on a free port; resolves once it answers. */
async function startServer({ name, cacheDir, dataPort, env = {}, command, commandArgs = [], app = APP, distDir = '.next' }) {
  const port = await freePort();
  const args = [...commandArgs, NEXT_BIN, 'start', '-p', String(port), '-H', '127.0.0.1'];
  const child = spawn(command || process.execPath, args, {
    cwd: app,
    env: {
      ...process.env,
      NEXT_TELEMETRY_DISABLED: '1',
      SERVER_NAME: name,
      NEXT_VOLUME_CACHE_DIR: cacheDir,
      NEXT_VOLUME_CACHE_TAG_REFRESH_MS: '200',
      DATA_PORT: String(dataPort),
      FIXTURE_DIST_DIR: distDir,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server ${name} exited: ${output}`);
    try {
      await fetch(`${url}/api/revalidate`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`server ${name} did not start: ${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  // A child killed by a signal has a signalCode and no exitCode: either means its 'exit' has fired.
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  const kill = (signal) =>
    new Promise((resolve) => {
      if (exited()) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  return {
    name,
    url,
    port,
    pid: child.pid,
    output: () => output,
    /** Sends `signal` and resolves once the server has exited (listening before the signal is sent). */
    kill,
    stop: () => kill('SIGTERM'),
  };
}

/** The action id of the fixture's updateTag server action, from the build's manifest. */
function updateTagActionId() {
  const manifest = JSON.parse(fs.readFileSync(path.join(APP, '.next', 'server', 'server-reference-manifest.json'), 'utf8'));
  const [id] = Object.entries(manifest.node).find(([, v]) => v.filename.endsWith('app/action/page.js'));
  return id;
}

module.exports = { APP, CACHE_COMPONENTS_APP, REPO, buildFixture, startDataServer, startServer, updateTagActionId, freePort };
