// `npm test` (what CI runs): every test on the repository's pinned Next, then the end-to-end suite
// (test/e2e) again on the oldest supported minor, OLDEST_NEXT, installed from the npm registry into
// .cache/next/ at test time. The two runs are sequential (both would otherwise compete for the two
// cores and slow the timing-sensitive tests) and both always run; the last line is the total, in
// the summary reporter's format. With arguments (`npm test -- test/x.test.ts`) it is one plain
// vitest run of those.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { countResults } = require('./next-matrix.js');
const { REPO, nextTarget } = require('./next-target.js');

/** The newest patch of the oldest supported minor (16.0); `npm run test:next-matrix` covers the rest. */
const OLDEST_NEXT = '16.0.11';
const VITEST = path.join(REPO, 'node_modules', 'vitest', 'vitest.mjs');

function vitest(label, args, env, reportDir) {
  const reportFile = path.join(reportDir, `${label.replace(/\W+/g, '-')}.json`);
  const reporters = ['--reporter=default', '--reporter=./test/summary-reporter.ts', '--reporter=json', `--outputFile.json=${reportFile}`];
  const run = spawnSync(process.execPath, [VITEST, 'run', ...args, ...reporters], { cwd: REPO, env: { ...process.env, ...env }, stdio: 'inherit' });
  const counts = countResults(reportFile);
  // A crash or an unhandled error fails the run even if no single test did.
  if (run.status !== 0 && counts.failed === 0) counts.failed = 1;
  return { label, ...counts };
}

function main() {
  const args = process.argv.slice(2);
  if (args.length > 0) {
    process.exitCode = spawnSync(process.execPath, [VITEST, 'run', ...args], { cwd: REPO, stdio: 'inherit' }).status ?? 1;
    return;
  }
  const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nvc-test-report-'));
  try {
    const runs = [vitest(`next@${nextTarget().version}, all tests`, [], {}, reportDir), vitest(`next@${OLDEST_NEXT}, test/e2e`, ['test/e2e'], { NVC_NEXT_VERSION: OLDEST_NEXT }, reportDir)];
    console.log('');
    for (const run of runs) console.log(`${run.label}: ${run.passed} passed, ${run.failed} failed, ${run.skipped} skipped`);
    const total = (key) => runs.reduce((sum, run) => sum + run[key], 0);
    console.log(`${total('passed')} passed, ${total('failed')} failed, ${total('skipped')} skipped`);
    process.exitCode = total('failed') > 0 ? 1 : 0;
  } finally {
    fs.rmSync(reportDir, { recursive: true, force: true });
  }
}

main();
