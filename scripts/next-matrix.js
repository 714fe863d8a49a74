// `npm run test:next-matrix [-- <version> ...]`: the whole end-to-end suite (test/e2e) on the newest
// patch of every supported Next.js minor plus the newest 16.x canary, as the npm registry lists them
// now, one version after the other; a table of the results at the end. Each version is also checked
// against this package's declared peer range, as npm would. Exits 1 if anything failed.
// Each version other than the repository's own is installed into .cache/next/<version> (reused).
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { CACHE, REPO, compareVersions, ensureInstalled, nextTarget, parseVersion } = require('./next-target.js');

/** The supported range is 16.x; its oldest minor is 16.0. */
const MAJOR = 16;
const PEER_RANGE = require(path.join(REPO, 'package.json')).peerDependencies.next;

/** From the registry's list: the newest release of each 16.x minor, then the newest 16.x canary if it is newer than all of them. */
function pickVersions(published) {
  const ours = published.filter((v) => /^\d+\.\d+\.\d+(-canary\.\d+)?$/.test(v) && parseVersion(v).major === MAJOR).sort(compareVersions);
  const newestPerMinor = new Map();
  for (const version of ours) if (!parseVersion(version).prerelease) newestPerMinor.set(parseVersion(version).minor, version);
  const releases = [...newestPerMinor.values()];
  const canary = ours.filter((v) => parseVersion(v).prerelease).at(-1);
  const newestRelease = releases.at(-1);
  return canary && (!newestRelease || compareVersions(canary, newestRelease) > 0) ? [...releases, canary] : releases;
}

function registryVersions() {
  return JSON.parse(execFileSync('npm', ['view', 'next', 'versions', '--json'], { encoding: 'utf8' }));
}

/** Counts from vitest's JSON report; a file that failed outside any test (a build in beforeAll) counts as one failure. */
function countResults(reportFile) {
  const counts = { passed: 0, failed: 0, skipped: 0, skippedNames: [] };
  if (!fs.existsSync(reportFile)) return { ...counts, failed: 1 };
  const report = JSON.parse(fs.readFileSync(reportFile, 'utf8'));
  for (const file of report.testResults) {
    const tests = file.assertionResults;
    for (const test of tests) {
      if (test.status === 'passed') counts.passed++;
      else if (test.status === 'failed') counts.failed++;
      else {
        counts.skipped++;
        counts.skippedNames.push(test.title);
      }
    }
    if (file.status === 'failed' && !tests.some((t) => t.status === 'failed')) counts.failed++;
  }
  return counts;
}

/** This package, packed as it would be published (dist/ must be built). */
function packPackage(into) {
  const out = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', into], { cwd: REPO, encoding: 'utf8' });
  return path.join(into, JSON.parse(out)[0].filename);
}

/**
 * Whether npm accepts this package's peerDependencies.next beside next@<version>, as a user's
 * `npm install` would see it (a dry run: only the registry's metadata is fetched). A prerelease
 * satisfies a semver range only when the range names a prerelease of the same x.y.z, so a canary
 * the declared range does not admit is an ERESOLVE error here.
 */
function peerCheck(version, tarball) {
  const project = fs.mkdtempSync(path.join(CACHE, 'peer-check-'));
  try {
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ private: true }));
    const react = ['react', 'react-dom'].map((name) => `${name}@${require(path.join(REPO, 'node_modules', name, 'package.json')).version}`);
    const run = spawnSync('npm', ['install', '--dry-run', '--no-audit', '--no-fund', '--ignore-scripts', tarball, `next@${version}`, ...react], { cwd: project, encoding: 'utf8' });
    const complaint = /ERESOLVE|peer dep/i.test(run.stderr);
    return run.status === 0 && !complaint
      ? 'ok'
      : `rejected: ${run.stderr
          .split('\n')
          .filter((l) => /peer|ERESOLVE/i.test(l))
          .slice(0, 3)
          .join(' | ')}`;
  } finally {
    fs.rmSync(project, { recursive: true, force: true });
  }
}

function runSuite(version) {
  const started = Date.now();
  const reportFile = path.join(CACHE, `e2e-report-${version}.json`);
  fs.rmSync(reportFile, { force: true });
  try {
    // Installed here, once, rather than by the first of the parallel test files.
    ensureInstalled(nextTarget(version), console.log);
  } catch (error) {
    console.error(`next@${version}: install failed: ${error.message}`);
    return { version, passed: 0, failed: 1, skipped: 0, skippedNames: [], seconds: (Date.now() - started) / 1000, exitCode: 1 };
  }
  const vitest = path.join(REPO, 'node_modules', 'vitest', 'vitest.mjs');
  const run = spawnSync(process.execPath, [vitest, 'run', 'test/e2e', '--reporter=default', '--reporter=json', `--outputFile.json=${reportFile}`], {
    cwd: REPO,
    env: { ...process.env, NVC_NEXT_VERSION: version },
    stdio: 'inherit',
  });
  const counts = countResults(reportFile);
  // A crash or an unhandled error fails the version even if no single test did.
  if (run.status !== 0 && counts.failed === 0) counts.failed = 1;
  return { version, ...counts, seconds: (Date.now() - started) / 1000, exitCode: run.status };
}

function printTable(results) {
  const rows = [['next', 'passed', 'failed', 'skipped', 'duration', 'peer range'], ...results.map((r) => [r.version, r.passed, r.failed, r.skipped, `${Math.round(r.seconds)} s`, r.peer === 'ok' ? 'ok' : 'REJECTED'])];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => String(row[column]).length)));
  const line = (row) => row.map((cell, column) => String(cell).padEnd(widths[column])).join('  ');
  console.log(`\nNext.js matrix, ${new Date().toISOString().slice(0, 10)} (e2e suite: test/e2e)`);
  console.log(line(rows[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows.slice(1)) console.log(line(row));
  for (const r of results.filter((x) => x.skippedNames.length > 0)) console.log(`skipped on ${r.version}: ${r.skippedNames.join('; ')}`);
  for (const r of results.filter((x) => x.peer !== 'ok')) console.log(`peerDependencies.next ${PEER_RANGE} on ${r.version}: ${r.peer}`);
}

function main() {
  const requested = process.argv.slice(2);
  const versions = requested.length > 0 ? requested : pickVersions(registryVersions());
  console.log(`Next.js versions to test: ${versions.join(', ')}`);
  fs.mkdirSync(CACHE, { recursive: true });
  const packed = fs.mkdtempSync(path.join(CACHE, 'pack-'));
  const results = [];
  try {
    const tarball = packPackage(packed);
    for (const version of versions) {
      console.log(`\n=== next@${version} ===`);
      const peer = peerCheck(version, tarball);
      results.push({ ...runSuite(version), peer });
    }
  } finally {
    fs.rmSync(packed, { recursive: true, force: true });
  }
  printTable(results);
  process.exitCode = results.some((r) => r.failed > 0 || r.peer !== 'ok') ? 1 : 0;
}

if (require.main === module) main();

module.exports = { countResults, packPackage, peerCheck, pickVersions };
