// Runs a list of CLI commands, one after the other, in this one process (the CLI's own `main`, from
// NVC_DIST or this repository's dist/bin/cli.js), and after each one takes a digest of the watched
// paths. Sends { result } per command as it goes (so a command that hangs is named), then
// { done, peakRssKiB } with VmHWM from /proc/<own pid>/status, then closes the IPC channel and must
// exit by itself.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { digest } = require('./tree-digest.js');
const DIST = process.env.NVC_DIST || path.join(__dirname, '..', '..', 'dist');
const { main } = require(path.join(DIST, 'bin', 'cli.js'));

function peakRssKiB() {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${process.pid}/status`, 'utf8'));
  return match ? Number(match[1]) : NaN;
}

process.once('message', async ({ commands, watch }) => {
  const before = digest(watch);
  for (const argv of commands) {
    let out = '';
    let err = '';
    const started = performance.now();
    process.send({ started: argv });
    const code = await main(
      argv,
      (t) => (out += t + '\n'),
      (t) => (err += t + '\n'),
    );
    const after = digest(watch);
    process.send({ result: { argv, code, ms: Math.round(performance.now() - started), out: out.slice(0, 20_000), err: err.slice(0, 4000), watched: after === before ? 'unchanged' : after } });
  }
  process.send({ done: true, before, peakRssKiB: peakRssKiB() });
  process.disconnect();
});
process.send({ ready: true });
