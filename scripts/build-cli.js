// Bundles the CLI (bin/cli.ts, the lib code it imports and its npm dependencies) into one file,
// dist/bin/cli.js. Run after `tsc`, which type-checks bin/ and emits dist/lib.
//
// Why a bundle: a Next.js `output: 'standalone'` image traces only what the app imports (dist/lib and
// its dependencies). The example's Dockerfile copies node_modules/next-volume-cache next to it, and the
// CLI must run from that folder alone: commander, cli-progress, proper-lockfile and xxhash-wasm may be
// missing from the image's node_modules. Bundling from the TypeScript entry (not from tsc's output) keeps
// this script independent of how lib/ is laid out.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

const REPO = path.resolve(__dirname, '..');
const ENTRY = path.join(REPO, 'bin', 'cli.ts');
const OUT_DIR = path.join(REPO, 'dist', 'bin');
const OUT_FILE = path.join(OUT_DIR, 'cli.js');

async function buildCli() {
  // tsc also emits dist/bin (cli.js, .d.ts, .map): the bundle replaces all of it, nothing of tsc's is kept.
  fs.rmSync(OUT_DIR, { recursive: true, force: true });
  const result = await esbuild.build({
    entryPoints: [ENTRY],
    outfile: OUT_FILE,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // The entry's `#!/usr/bin/env node` line is kept by esbuild at the top of the output.
    tsconfig: path.join(REPO, 'tsconfig.json'),
    legalComments: 'eof',
    logLevel: 'warning',
    metafile: true,
  });
  if (result.errors.length) throw new Error(`esbuild failed: ${result.errors.map((e) => e.text).join('; ')}`);
  assertSelfContained(result.metafile);
  fs.chmodSync(OUT_FILE, 0o755);
  return OUT_FILE;
}

/** A bare `require` left in the bundle (other than Node's built-ins) would fail in the image. */
function assertSelfContained(metafile) {
  const output = metafile.outputs[path.relative(process.cwd(), OUT_FILE)] ?? Object.values(metafile.outputs)[0];
  const external = (output?.imports ?? []).filter((i) => i.external && !isBuiltin(i.path));
  if (external.length) throw new Error(`the CLI bundle still requires: ${external.map((i) => i.path).join(', ')}`);
}

function isBuiltin(specifier) {
  return require('node:module').isBuiltin(specifier);
}

if (require.main === module) {
  buildCli().then(
    (file) => console.log(`bundled ${path.relative(REPO, file)} (${fs.statSync(file).size} bytes)`),
    (error) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}

module.exports = { buildCli };
