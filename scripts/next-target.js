// Which Next.js the end-to-end fixtures run on. By default the repository's own (node_modules/next);
// with NVC_NEXT_VERSION=<version>, that version, installed on demand into .cache/next/<version>/,
// next to copies of the fixture apps. The copies exist because Node and Turbopack resolve `next`
// from the importing file's folder upwards: a copy under .cache/next/<version>/fixtures/ finds that
// version's node_modules first, and its builds (.next*) cannot collide with another version's.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..');
const CACHE = path.join(REPO, '.cache', 'next');

function installedVersion(root, name = 'next') {
  try {
    return JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch {
    return undefined;
  }
}

/** `16.2.0-canary.3` → { major: 16, minor: 2, patch: 0, prerelease: '-canary.3' }. */
function parseVersion(version) {
  const match = /^(\d+)\.(\d+)\.(\d+)(-.*)?$/.exec(version);
  if (!match) throw new Error(`not a version: ${version}`);
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]), prerelease: match[4] };
}

/** Orders versions as semver does: 16.5.0-canary.9 < 16.5.0-canary.38 < 16.5.0. */
function compareVersions(a, b) {
  const x = parseVersion(a);
  const y = parseVersion(b);
  const release = x.major - y.major || x.minor - y.minor || x.patch - y.patch;
  if (release !== 0) return release;
  if (!x.prerelease || !y.prerelease) return (x.prerelease ? -1 : 0) - (y.prerelease ? -1 : 0);
  const left = x.prerelease.slice(1).split('.');
  const right = y.prerelease.slice(1).split('.');
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    if (left[i] === undefined || right[i] === undefined) return left[i] === undefined ? -1 : 1;
    const numeric = /^\d+$/.test(left[i]) && /^\d+$/.test(right[i]);
    const order = numeric ? Number(left[i]) - Number(right[i]) : left[i] < right[i] ? -1 : left[i] > right[i] ? 1 : 0;
    if (order !== 0) return order;
  }
  return 0;
}

/** Whether `version` is at least `major.minor.patch`; a prerelease counts as its release (16.5.0-canary.38 ≥ 16.5.0). */
function atLeast(version, [major, minor, patch]) {
  const v = parseVersion(version);
  if (v.major !== major) return v.major > major;
  if (v.minor !== minor) return v.minor > minor;
  return v.patch >= patch;
}

/** The Next under test: its version and the folder whose node_modules holds it. */
function nextTarget(requested = process.env.NVC_NEXT_VERSION) {
  const own = installedVersion(REPO);
  if (!requested || requested === own) return { version: own, root: REPO, own: true };
  parseVersion(requested); // a tag like `canary` would make the cache folder ambiguous: exact versions only
  return { version: requested, root: path.join(CACHE, requested), own: false };
}

/** The exact React the repository pins; every supported Next accepts it (`react: ^19.0.0`), and npm refuses a peer conflict. */
function reactPins() {
  const pins = {};
  for (const name of ['react', 'react-dom']) pins[name] = installedVersion(REPO, name);
  return pins;
}

/**
 * Installs next@<version> (and the repository's React) into <root>/node_modules unless it is there.
 * npm runs in a scratch folder whose node_modules is then renamed into place, so an interrupted
 * install leaves no half tree behind that a later run would take for complete.
 */
function ensureInstalled(target, log = () => {}) {
  if (target.own || installedVersion(target.root) === target.version) return;
  fs.mkdirSync(target.root, { recursive: true });
  // Test files start in parallel: one installs, the others wait for it.
  const release = lockFolder(path.join(target.root, '.installing'));
  try {
    if (installedVersion(target.root) !== target.version) install(target, log);
  } finally {
    release();
  }
}

function install(target, log) {
  removeAbandonedScratch(target.root);
  const scratch = path.join(target.root, `.install-${process.pid}`);
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(scratch);
  try {
    const dependencies = { next: target.version, ...reactPins() };
    fs.writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ private: true, dependencies }, null, 2));
    log(`installing next@${target.version} into ${path.relative(REPO, target.root)} (npm install) ...`);
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', '--loglevel=error'], { cwd: scratch, stdio: ['ignore', 'pipe', 'inherit'] });
    moveIntoPlace(path.join(scratch, 'node_modules'), path.join(target.root, 'node_modules'), target);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const found = installedVersion(target.root);
  if (found !== target.version) throw new Error(`${target.root}/node_modules holds next@${found}, not ${target.version}`);
}

function moveIntoPlace(from, to, target) {
  // A leftover from another version or a broken install goes; a complete one installed meanwhile by a parallel test file stays.
  if (fs.existsSync(to) && installedVersion(target.root) !== target.version) fs.rmSync(to, { recursive: true, force: true });
  try {
    fs.renameSync(from, to);
  } catch (error) {
    if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
  }
}

/** Takes a lock (a folder: mkdir is atomic) for a long operation, waiting up to 10 minutes; returns its release. */
function lockFolder(lockDir) {
  const deadline = Date.now() + 10 * 60_000;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      return () => fs.rmSync(lockDir, { recursive: true, force: true });
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
      // A build or install killed mid-way leaves its lock: older than 10 minutes is stale.
      if (Date.now() - fs.statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs > 10 * 60_000) fs.rmSync(lockDir, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${lockDir}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
    }
  }
}

/** Scratch folders of installs whose process died (killed test runs). */
function removeAbandonedScratch(root) {
  for (const name of fs.readdirSync(root)) {
    const pid = Number(/^\.install-(\d+)$/.exec(name)?.[1]);
    if (pid && !isAlive(pid)) fs.rmSync(path.join(root, name), { recursive: true, force: true });
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Mirrors a fixture app's sources (not its builds) into the target's copy. Files are written to a
 * temporary name and renamed, with the source's mtime, so the build-freshness check sees the
 * source's age and a parallel test file never reads a half-copied file.
 */
function syncFixture(source, copy) {
  fs.mkdirSync(copy, { recursive: true });
  const wanted = new Set();
  for (const name of fs.readdirSync(source)) {
    if (isBuildOutput(name)) continue;
    wanted.add(name);
    const from = path.join(source, name);
    const to = path.join(copy, name);
    const stat = fs.statSync(from);
    if (stat.isDirectory()) syncFixture(from, to);
    else if (!sameFile(stat, to)) copyAtomically(from, to, stat);
  }
  for (const name of fs.readdirSync(copy)) {
    if (!wanted.has(name) && !isBuildOutput(name) && !isTemporary(name)) fs.rmSync(path.join(copy, name), { recursive: true, force: true });
  }
}

const isBuildOutput = (name) => name.startsWith('.next') || name === 'node_modules';
/** Another process's copy in flight (copyAtomically). */
const isTemporary = (name) => /\.copy-\d+$/.test(name);

function sameFile(stat, file) {
  const other = fs.statSync(file, { throwIfNoEntry: false });
  // utimes keeps about a microsecond of the mtime, not the filesystem's nanoseconds.
  return other !== undefined && other.isFile() && other.size === stat.size && Math.abs(other.mtimeMs - stat.mtimeMs) < 1;
}

function copyAtomically(from, to, stat) {
  const temporary = `${to}.copy-${process.pid}`;
  fs.copyFileSync(from, temporary);
  fs.utimesSync(temporary, stat.atime, stat.mtime);
  fs.renameSync(temporary, to);
}

/**
 * Makes <target>/fixtures/<name> a current copy of fixtures/<name>, and <target>/dist point at the
 * repository's dist/: the fixture configs load the handler as `../../dist/lib/...`, which from the
 * copy resolves through that link to the real file (require.resolve follows links), so the handler
 * under test is always the repository's build.
 */
function prepareFixture(target, app, log) {
  if (target.own) return;
  ensureInstalled(target, log);
  const dist = path.join(target.root, 'dist');
  if (!fs.existsSync(dist)) {
    try {
      fs.symlinkSync(path.relative(target.root, path.join(REPO, 'dist')), dist, 'dir');
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
  }
  syncFixture(path.join(REPO, path.relative(target.root, app)), app);
}

module.exports = { REPO, CACHE, atLeast, compareVersions, ensureInstalled, lockFolder, nextTarget, parseVersion, prepareFixture };
