#!/usr/bin/env node
// Entries per second and peak memory of the CLI's `stats` and `verify` over a filled root:
//   node bench/fill.js /tmp/nvc-1m 1000000 && node bench/walk.js /tmp/nvc-1m
'use strict';
const path = require('node:path');

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node bench/walk.js <filled dir>');
  process.exit(2);
}
const cli = path.join(__dirname, '..', 'dist', 'bin', 'cli.js');
const rows = [];
for (const command of ['stats', 'verify']) {
  const started = process.hrtime.bigint();
  // /usr/bin/time is not always installed: measure peak RSS with a tiny wrapper instead.
  const { spawnSync } = require('node:child_process');
  const run = spawnSync(
    process.execPath,
    [
      '-e',
      `
    const { main } = require(${JSON.stringify(cli)});
    main(['--json', ${JSON.stringify(command)}, '--dir', ${JSON.stringify(dir)}], (t) => process.stdout.write(t), () => {}).then((code) => {
      process.stderr.write(JSON.stringify({ code, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));
    });`,
    ],
    { maxBuffer: 1 << 26 },
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const result = JSON.parse(run.stdout.toString());
  const { maxRssMiB } = JSON.parse(run.stderr.toString());
  const entries = command === 'stats' ? result.entries.total.count : result.checked.entries;
  rows.push({ command, entries, seconds: seconds.toFixed(1), 'entries/s': Math.round(entries / seconds), 'peak RSS MiB': Math.round(maxRssMiB) });
}
console.table(rows);
