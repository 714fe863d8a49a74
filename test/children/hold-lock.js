// Takes the maintenance lock the way a CronJob's gc does (the library's own gc, with the cache
// options in argv[2] as JSON), and stops inside it, the lock held, until the file argv[3]
// exists: the test looks at the lock folder meanwhile. The stop is a synchronous wait in the
// walk's progress callback, so nothing of the run moves while the test looks.
'use strict';
const fs = require('node:fs');
const { gc } = require('../../dist/lib/maintenance/index.js');

const [optionsJson, releaseFile] = process.argv.slice(2);
const pause = new Int32Array(new SharedArrayBuffer(4));
let stopped = false;
const progress = {
  onShard() {
    if (stopped) return;
    stopped = true;
    process.stdout.write('holding\n');
    const deadline = Date.now() + 60_000;
    while (!fs.existsSync(releaseFile) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 10);
  },
};
gc({ ...JSON.parse(optionsJson), progress }).then(
  () => process.exit(stopped ? 0 : 2),
  (error) => {
    process.stderr.write(`${error && error.stack}\n`);
    process.exit(1);
  },
);
