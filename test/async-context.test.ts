import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DIST, runChild, tempDir } from './helpers';

/**
 * Issue 15, item 1: no cache call keeps its caller's async context alive once it completed.
 *
 * Node 20 and 22 copy the current AsyncLocalStorage stores onto every promise and timer created
 * during a call; anything long-lived made there (the lease interval, the tag log's append queue,
 * lazily started start-up) keeps the request's whole context (Next's work stores, OTel's span)
 * for as long as it lives. Next guards its own handler with the same kind of test
 * (cache-handlers/default.test.ts, "does not retain the async context ...").
 *
 * Each mode runs in its own process (test/children/retention.js, against dist/ as Next loads it,
 * with --expose-gc): "cold" means the runtime opens inside the request. Both checks must find the
 * request's store collected: `quick`, a few gc rounds right after the call (it catches work that
 * holds the store for a while, such as a 100 ms dedupe timer), and `settled`, after the background
 * work the call started (seeding) has finished.
 *
 * NVC_RETENTION_DIST=<other build>/dist runs the same checks against another build (how this test
 * was shown to fail on the code before the fix, 391b13f).
 */
const dist = process.env.NVC_RETENTION_DIST ?? DIST;

interface RefResult {
  name: string;
  quick: boolean;
  settled: boolean;
}

/** A minimal `next build` output with one prerendered Pages Router page, for seeding. */
function fakeBuild(): string {
  const nextDir = tempDir('nvc-retention-build-');
  const pages = path.join(nextDir, 'server', 'pages');
  mkdirSync(pages, { recursive: true });
  writeFileSync(path.join(nextDir, 'BUILD_ID'), 'retention-build\n');
  writeFileSync(path.join(nextDir, 'prerender-manifest.json'), JSON.stringify({ routes: { '/pages-isr': { initialRevalidateSeconds: 60 } } }));
  writeFileSync(path.join(nextDir, 'server', 'pages-manifest.json'), JSON.stringify({ '/_app': 'pages/_app.js', '/pages-isr': 'pages/pages-isr.js' }));
  writeFileSync(path.join(pages, 'pages-isr.html'), '<p>seeded</p>');
  writeFileSync(path.join(pages, 'pages-isr.json'), JSON.stringify({ pageProps: {}, __N_SSG: true }));
  const key = '/route-cache/PAGES/1a6a4d63508b225c8f71048b0ad3bbbe1b3ac485b65511249a3db422c6cc6cad/$/pages-isr';
  writeFileSync(path.join(pages, 'pages-isr.meta'), JSON.stringify({ routeCache: { key, owner: { kind: 'PAGES', sourceRoute: '/pages-isr' }, isFallback: false } }));
  return nextDir;
}

let nextDir: string;
beforeAll(() => {
  nextDir = fakeBuild();
});

async function retention(mode: string): Promise<RefResult[]> {
  const result = await runChild('retention.js', [dist, mode, tempDir('nvc-retention-'), nextDir], {}, process.execPath, ['--expose-gc']);
  expect(result.code, `${mode} exited with ${result.code ?? result.signal}: ${result.stderr}`).toBe(0);
  const parsed = JSON.parse(result.stdout) as { mode: string; refs: RefResult[] };
  return parsed.refs;
}

const collectedEverywhere = (refs: RefResult[]): RefResult[] => refs.map((r) => ({ name: r.name, quick: true, settled: true }));

describe('the caller of a cache call is not kept alive', () => {
  it('control: a store captured by an interval made in the request is reported retained', async () => {
    expect(await retention('control-interval')).toEqual([{ name: 'request', quick: false, settled: false }]);
  });

  it('control: the check right after the call sees a store held by a pending timer', async () => {
    expect(await retention('control-timeout')).toMatchObject([{ name: 'request', quick: false }]);
  });

  const modes: Array<[string, string]> = [
    ['package-loaded-in-request', 'the package loaded inside a store, then a first call in another (both stores)'],
    ['page-cold-get', 'page handler: the first get of a fresh process (constructs and opens the runtime)'],
    ['page-tagged-set', 'page handler: a set with tags (appends to the tag index in the background)'],
    ['page-pages-set', 'page handler: a Pages Router set (its route is looked up in the build)'],
    ['page-revalidateTag', 'page handler: revalidateTag (appends to the tag log, dedupes for 100 ms)'],
    ['page-get-hit', 'page handler: a get that hits'],
    ['page-autoseed', 'page handler: the first call naming a build with seed: true (starts seeding)'],
    ['use-cache-cold-get', "'use cache': the first get of a fresh process"],
    ['use-cache-refreshTags', "'use cache': refreshTags"],
    ['use-cache-tagged-set', "'use cache': a set with tags"],
    ['use-cache-updateTags', "'use cache': updateTags"],
    ['use-cache-get-hit', "'use cache': a get that hits, its stream read"],
    ['use-cache-get-waiting-for-set', "'use cache': a get waiting for a set in flight (both requests)"],
  ];
  for (const [mode, title] of modes) {
    it(title, async () => {
      const refs = await retention(mode);
      expect(refs.length).toBeGreaterThan(0);
      expect(refs).toEqual(collectedEverywhere(refs));
    });
  }
});
