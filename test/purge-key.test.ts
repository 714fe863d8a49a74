import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers';
import { cliJson, fakeBuild, filesWith, fill, pageKey } from './volume-tools';

/**
 * Issue 13, item 3: `purge --key` finds a key wherever the library stores it
 * (a page in its build's namespace, a fetch in `shared`, a 'use cache' entry
 * in `use-cache`, an optimized image in its build's image namespace), and
 * `--build` narrows it to one build's copy. Filled through the public
 * handlers with real BUILD_IDs, as a served build fills it.
 */
describe('purge --key in every namespace', () => {
  it("deletes a page of each build, a fetch, a use-cache entry and an image; with --build only that build's copy", async () => {
    const dir = tempDir('nvc-purge-key-');
    const builds = tempDir('nvc-purge-key-builds-');
    const a = fakeBuild(builds, 'AAAA1111');
    const b = fakeBuild(builds, 'BBBB2222');
    const page = pageKey('/blog/a', '/blog/[slug]/page');
    // One server per build, as pods of two releases are.
    await fill(dir, [
      { op: 'page', key: page, serverDistDir: a.serverDistDir, tags: ['_N_T_/blog/a'] },
      { op: 'fetch', key: 'https://api.example/data', serverDistDir: a.serverDistDir, tags: ['data'] },
      { op: 'useCache', key: '["AAAA1111","fn-id",[]]', tags: ['uc'] },
      { op: 'image', key: '/_next/image?url=%2Fa.png&w=64&q=75', serverDistDir: a.serverDistDir },
    ]);
    await fill(dir, [
      { op: 'page', key: page, serverDistDir: b.serverDistDir, tags: ['_N_T_/blog/a'] },
      { op: 'image', key: '/_next/image?url=%2Fa.png&w=64&q=75', serverDistDir: b.serverDistDir },
    ]);
    const entries = (ns: string) => filesWith(dir, `/entries/${ns}/`, '.entry').length;
    const images = (ns: string) => filesWith(dir, `/images/${ns}/`).length;
    expect([entries('build-AAAA1111'), entries('build-BBBB2222'), entries('shared'), entries('use-cache')]).toEqual([1, 1, 1, 1]);
    expect([images('build-AAAA1111'), images('build-BBBB2222')]).toEqual([2, 2]); // a sidecar and its raw file each

    // --build: only build AAAA1111's copy of the page goes; build BBBB2222 still serves its own.
    expect(await cliJson(['purge', '--dir', dir, '--key', page, '--build', 'AAAA1111'])).toMatchObject({ method: 'keys', matched: 1, deleted: 1 });
    expect([entries('build-AAAA1111'), entries('build-BBBB2222')]).toEqual([0, 1]);
    expect(await fill(dir, [{ op: 'get', key: page, serverDistDir: a.serverDistDir, kind: 'APP_PAGE' }])).toEqual([false]);
    expect(await fill(dir, [{ op: 'get', key: page, serverDistDir: b.serverDistDir, kind: 'APP_PAGE' }])).toEqual([true]);

    // Without --build: every build's copy.
    expect(await cliJson(['purge', '--dir', dir, '--key', page])).toMatchObject({ matched: 1, deleted: 1 });
    expect(entries('build-BBBB2222')).toBe(0);

    // An image, narrowed to one build, then everywhere: the sidecar and its raw file go together.
    const imageKey = '/_next/image?url=%2Fa.png&w=64&q=75';
    expect(await cliJson(['purge', '--dir', dir, '--key', imageKey, '--build', 'BBBB2222'])).toMatchObject({ matched: 1, deleted: 1 });
    expect([images('build-AAAA1111'), images('build-BBBB2222')]).toEqual([2, 0]);
    expect(await cliJson(['purge', '--dir', dir, '--key', imageKey])).toMatchObject({ matched: 1, deleted: 1 });
    expect(images('build-AAAA1111')).toBe(0);

    // A fetch (shared across builds) and a 'use cache' entry.
    expect(await cliJson(['purge', '--dir', dir, '--key', 'https://api.example/data'])).toMatchObject({ matched: 1, deleted: 1 });
    expect(await cliJson(['purge', '--dir', dir, '--key', '["AAAA1111","fn-id",[]]'])).toMatchObject({ matched: 1, deleted: 1 });
    expect([entries('shared'), entries('use-cache')]).toEqual([0, 0]);
    expect(await fill(dir, [{ op: 'get', key: '["AAAA1111","fn-id",[]]', kind: 'USE_CACHE' }])).toEqual([false]);
  });

  it("--dry-run lists every namespace's copy and deletes none; a key nowhere matches nothing", async () => {
    const dir = tempDir('nvc-purge-key-dry-');
    const builds = tempDir('nvc-purge-key-builds-');
    const a = fakeBuild(builds, 'AAAA1111');
    const b = fakeBuild(builds, 'BBBB2222');
    const page = pageKey('/');
    for (const build of [a, b]) await fill(dir, [{ op: 'page', key: page, serverDistDir: build.serverDistDir }]);
    const dry = await cliJson<{ matched: number; deleted: number; sample: string[] }>(['purge', '--dir', dir, '--key', page, '--dry-run']);
    expect(dry).toMatchObject({ matched: 2, deleted: 0 });
    expect(dry.sample.map((p) => p.split('/')[3]).sort()).toEqual(['build-AAAA1111', 'build-BBBB2222']);
    expect(filesWith(dir, '.entry')).toHaveLength(2);
    expect(await cliJson(['purge', '--dir', dir, '--key', pageKey('/nowhere')])).toMatchObject({ matched: 0, deleted: 0 });
  });
});
