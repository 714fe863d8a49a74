// Loads the package through require and through import (as next.config.mjs and Next's server do), plus a
// second physical copy of it, and checks they share one runtime per process.
'use strict';
const path = require('node:path');
// argv[4] is the cache folder, for the command line only: the handler reads it from NEXT_VOLUME_CACHE_DIR, as under Next.
const [dist, copy] = process.argv.slice(2);
(async () => {
  const viaRequire = require(path.join(dist, 'lib/index.js'));
  // Next: import(path).then(m => m.default || m), then interopDefault (m.default || m).
  const imported = await import(path.join(dist, 'lib/index.js'));
  const afterImport = imported.default || imported;
  const HandlerFromImport = afterImport.default || afterImport;
  const copyModule = require(path.join(copy, 'lib/index.js'));
  const a = new viaRequire.default({});
  const b = new HandlerFromImport({});
  const c = new copyModule.default({});
  await a.set('k', { kind: 'FETCH', data: { headers: {}, body: 'x', url: 'u', status: 200 }, revalidate: 5 }, { fetchCache: true });
  const hits = [await b.get('k', {}), await c.get('k', {})].filter(Boolean).length;
  process.stdout.write(
    JSON.stringify({
      requireIsClass: typeof viaRequire.default === 'function',
      importIsClass: typeof HandlerFromImport === 'function' && HandlerFromImport === viaRequire.default,
      hits,
      runtimesSeenByCopy: copyModule.getMetrics().length,
      getsSeenByCopy: copyModule.getMetrics()[0].metrics.gets,
    }) + '\n',
  );
})();
