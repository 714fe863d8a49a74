#!/usr/bin/env node
// Finding the entries of one tag through the tag index at scale: files opened and time, before and
// after compaction, against a full walk.
//   node bench/fill.js /tmp/nvc-1m 1000000 && node bench/tag-index.js /tmp/nvc-1m 1000000
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { openMaintenance, compact } = require('../dist/lib/maintenance/index.js');
const { taggedEntries, purgeEntries } = require('../dist/lib/maintenance/purge.js');
const { encodeMembership } = require('../dist/lib/tags/record.js');
const { hashKey } = require('../dist/lib/store/hash.js');
const { nodeFs } = require('../dist/lib/fs/syscalls.js');

const [dir, countArg] = process.argv.slice(2);
const count = Number(countArg || 1_000_000);

function countingFs() {
  const opened = [];
  return { opened, fs: { ...nodeFs, open: (p, f, m) => (opened.push(p), nodeFs.open(p, f, m)), readdir: (p) => (opened.push(p + '/'), nodeFs.readdir(p)) } };
}

(async () => {
  const m = await openMaintenance({ dir, logLevel: 'silent' });
  // The membership records bench/fill.js wrote no handler for: as the handler appends them at set().
  const segment = path.join(m.layout.membersDir, 'bench-1-aaaaaa.000000.log');
  if (!fs.existsSync(segment)) {
    const out = fs.openSync(segment, 'w');
    let lines = [];
    for (let i = 0; i < count; i++) {
      lines.push(encodeMembership({ hash: hashKey(`/route-cache/APP_PAGE/fill/$/page/${i}`), ns: 'shared', tags: [`tag-${i % 1000}`, `_N_T_/page/${i}`] }));
      if (lines.length === 10000) (fs.writeSync(out, lines.join('')), (lines = []));
    }
    fs.writeSync(out, lines.join(''));
    fs.closeSync(out);
  }
  const rows = [];
  for (const phase of ['before compaction', 'after compaction']) {
    if (phase === 'after compaction') await compact({ dir, logLevel: 'silent', leaseTimeoutMs: 1 });
    const counting = countingFs();
    const mc = await openMaintenance({ dir, logLevel: 'silent' }, { fs: counting.fs });
    counting.opened.length = 0;
    const t0 = performance.now();
    const found = await taggedEntries(mc, ['_N_T_/page/123456']);
    rows.push({ phase, method: 'tag index', found: found.entries.length, 'files opened': counting.opened.length, ms: (performance.now() - t0).toFixed(0) });
  }
  const counting = countingFs();
  const mc = await openMaintenance({ dir, logLevel: 'silent' }, { fs: counting.fs });
  counting.opened.length = 0;
  const t0 = performance.now();
  const result = await purgeEntries(mc, { tags: ['_N_T_/page/123456'], scan: true }, true, { check() {} });
  rows.push({ phase: 'no index', method: 'full walk (--scan)', found: result.matched, 'files opened': counting.opened.length, ms: (performance.now() - t0).toFixed(0) });
  console.table(rows);
})();
