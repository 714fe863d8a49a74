// Invalidates unique tags in a loop; prints each tag once revalidateTag resolved (= acknowledged).
'use strict';
const { createCacheHandler } = require('../../dist/lib/index.js');
const [dir, durationMs, name, leaseTimeoutMs] = process.argv.slice(2);
const Handler = createCacheHandler({ dir, leaseTimeoutMs: Number(leaseTimeoutMs), logLevel: 'error' });
(async () => {
  const end = Date.now() + Number(durationMs);
  let seq = 0;
  while (Date.now() < end) {
    const tag = `${name}-${seq++}`;
    await new Handler({}).revalidateTag([tag]);
    process.stdout.write(tag + '\n');
  }
})().catch((error) => {
  process.stderr.write(String(error && error.stack) + '\n');
  process.exit(1);
});
