// Publishes an image and SIGKILLs itself right after the raw file is in place, before the sidecar.
'use strict';
const { Runtime } = require('../../dist/lib/service/runtime.js');
const { resolveOptions } = require('../../dist/lib/config.js');
const { nodeFs } = require('../../dist/lib/fs/syscalls.js');
const [dir, key] = process.argv.slice(2);
const dying = {
  ...nodeFs,
  open: (p, flags, mode) => {
    if (p.includes('.tmp.') && p.includes('.json.')) process.kill(process.pid, 'SIGKILL');
    return nodeFs.open(p, flags, mode);
  },
};
const rt = new Runtime({ settings: { ...resolveOptions({ logLevel: 'silent' }, {}), dir }, createParents: true, fs: dying });
(async () => {
  await rt.ready();
  const buffer = Buffer.alloc(5000, 7);
  await rt.service.writeImage(key, { kind: 'IMAGE', buffer, etag: 'new', upstreamEtag: 'up', extension: 'png', revalidate: 60 }, undefined, 'shared');
  process.stdout.write('not killed\n');
})();
