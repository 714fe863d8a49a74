import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EntryDraft } from '../lib/service/cache-service';
import { bindHandler } from '../lib/next/handler';
import { appPageImplicitTags, denormalizePagePath, isTaggablePagesEntry, pagesBuildOf, pagesImplicitTags, parsePagesKey } from '../lib/next/implicit-tags';
import { seedFromBuild } from '../lib/next/seed';
import { loadHasher } from '../lib/store/hash';
import { openCache, tempDir, type TestCache } from './helpers';
import { pages, redirect } from './values';

// Next's own derivation and revalidatePath, from the installed next (the version the fixture builds with).
// Its server modules expect the global Node's environment sets up before they load.
(globalThis as { AsyncLocalStorage?: unknown }).AsyncLocalStorage ??= AsyncLocalStorage;
const nextRequire = createRequire(require.resolve('next/package.json'));
const { getImplicitTags } = nextRequire('./dist/server/lib/implicit-tags.js') as {
  getImplicitTags: (page: string, pathname: string, fallbackRouteParams: null) => Promise<{ tags: string[] }>;
};
const { revalidatePath } = nextRequire('./dist/server/web/spec-extension/revalidate.js') as { revalidatePath: (path: string, type?: 'page' | 'layout') => void };
const { workAsyncStorage } = nextRequire('./dist/server/app-render/work-async-storage.external.js') as {
  workAsyncStorage: AsyncLocalStorage<Record<string, unknown>>;
};

/** The tags Next's revalidatePath hands to the cache handler's revalidateTag. */
function tagsSentBy(pathname: string, type?: 'page' | 'layout'): string[] {
  const store: Record<string, unknown> = { incrementalCache: {}, cacheLifeProfiles: {}, page: '/api/x/route', route: '/api/x' };
  workAsyncStorage.run(store, () => revalidatePath(pathname, type));
  return ((store.pendingRevalidatedTags as Array<{ tag: string }> | undefined) ?? []).map((item) => item.tag);
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
/** A 16.3.8+ Pages Router key: the route's sha256 and the normalized path. */
const pagesKey = (route: string, normalizedPath: string): string => `/route-cache/PAGES/${sha256(route)}/$${normalizedPath}`;

/** A build folder (`.next`) whose server has these Pages routes and the given routes-manifest extras. */
function fakeBuild(routes: string[], routesManifest: Record<string, unknown> = {}): string {
  const nextDir = tempDir('nvc-implicit-');
  mkdirSync(path.join(nextDir, 'server'), { recursive: true });
  const manifest = Object.fromEntries(['/_app', '/_document', ...routes].map((r) => [r, `pages${r}.js`]));
  writeFileSync(path.join(nextDir, 'server', 'pages-manifest.json'), JSON.stringify(manifest));
  writeFileSync(path.join(nextDir, 'routes-manifest.json'), JSON.stringify({ version: 3, ...routesManifest }));
  return path.join(nextDir, 'server');
}

const DYNAMIC_ROUTES = {
  dynamicRoutes: [
    { page: '/blog/[slug]', regex: '^/blog/([^/]+?)(?:/)?$' },
    { page: '/pp/[slug]', regex: '^/pp/([^/]+?)(?:/)?$' },
    { page: '/docs/[...all]', regex: '^/docs/(.+?)(?:/)?$' },
  ],
};

describe("Next's derivation, for an App Router page at the same route", () => {
  const cases: Array<[string, string]> = [
    ['/pages-isr', '/pages-isr'],
    ['/blog/[slug]', '/blog/a'],
    ['/', '/'],
    ['/(group)/shop/[...all]', '/shop/x/y'],
    ['/blog/[slug]', '/blog/ü a'],
    ['/blog/[slug]', '/blog/😀'],
    ['/a/b/c', '/a/b/c'],
    ['/index', '/index'],
    ['/docs/[[...all]]', '/docs'],
  ];
  for (const [route, pathname] of cases) {
    it(`${route} at ${pathname}: the same tags as getImplicitTags`, async () => {
      const next = await getImplicitTags(route === '/' ? '/page' : `${route}/page`, pathname, null);
      expect(appPageImplicitTags(route, [pathname])).toEqual(next.tags);
    });
  }
});

describe('Pages Router keys', () => {
  it('parses 16.3.8+ hashed keys and older plain keys, denormalizing the path as Next does', () => {
    expect(parsePagesKey(pagesKey('/pp/[slug]', '/pp/ü'))).toEqual({ routeHash: sha256('/pp/[slug]'), pathname: '/pp/ü' });
    expect(parsePagesKey(pagesKey('/', '/index'))).toEqual({ routeHash: sha256('/'), pathname: '/' });
    expect(parsePagesKey('/pp/a')).toEqual({ pathname: '/pp/a' });
    expect(parsePagesKey('/route-cache/APP_PAGE/abc/$/x')).toBeUndefined();
    expect(parsePagesKey('0123abcdef')).toBeUndefined();
    expect([denormalizePagePath('/index'), denormalizePagePath('/index/index'), denormalizePagePath('/index/x'), denormalizePagePath('/index/[slug]')]).toEqual(['/', '/index', '/x', '/index/[slug]']);
  });

  it('tags pages, redirects and notFound entries under Pages keys, never the fallback shell or other kinds', () => {
    const hashed = pagesKey('/pp/[slug]', '/pp/a');
    expect(isTaggablePagesEntry(hashed, pages(), { isFallback: false })).toBe(true);
    expect(isTaggablePagesEntry(hashed, redirect(), undefined)).toBe(true);
    expect(isTaggablePagesEntry(hashed, null, undefined)).toBe(true);
    expect(isTaggablePagesEntry(pagesKey('/pp/[slug]', '/pp/[slug]'), pages(), { isFallback: true })).toBe(false);
    // 16.0-16.2: a plain key; only the value says it is a Pages entry.
    expect(isTaggablePagesEntry('/pp/a', pages(), {})).toBe(true);
    expect(isTaggablePagesEntry('/pp/a', redirect(), {})).toBe(true);
    expect(isTaggablePagesEntry('/pp/a', null, {})).toBe(false);
    expect(isTaggablePagesEntry('/isr', { kind: 'APP_PAGE' }, {})).toBe(false);
  });
});

describe('the implicit tags of a Pages Router entry', () => {
  let server: string;
  beforeAll(() => {
    server = fakeBuild(['/pages-isr', '/pp/[slug]', '/', '/docs/[...all]'], DYNAMIC_ROUTES);
  });

  const table: Array<[string, string, string[]]> = [
    ['/pages-isr', '/pages-isr', ['_N_T_/layout', '_N_T_/pages-isr/layout', '_N_T_/pages-isr/page', '_N_T_/pages-isr']],
    ['/pp/[slug]', '/pp/a', ['_N_T_/layout', '_N_T_/pp/layout', '_N_T_/pp/[slug]/layout', '_N_T_/pp/[slug]/page', '_N_T_/pp/a']],
    ['/', '/index', ['_N_T_/layout', '_N_T_/page', '_N_T_/', '_N_T_/index']],
    ['/docs/[...all]', '/docs/x/y', ['_N_T_/layout', '_N_T_/docs/layout', '_N_T_/docs/[...all]/layout', '_N_T_/docs/[...all]/page', '_N_T_/docs/x/y']],
    // Encoded as 16.2+ encodes (and revalidatePath sends), plus the raw form 16.0/16.1 use.
    ['/pp/[slug]', '/pp/ü', ['_N_T_/layout', '_N_T_/pp/layout', '_N_T_/pp/[slug]/layout', '_N_T_/pp/[slug]/page', '_N_T_/pp/%C3%BC', '_N_T_/pp/ü']],
  ];
  for (const [route, keyPath, expected] of table) {
    it(`${route} at ${keyPath}: the route from the key's hash, through pages-manifest.json`, () => {
      expect(pagesImplicitTags(pagesKey(route, keyPath), pagesBuildOf(server))).toEqual(expected);
    });
  }

  it('on a plain pre-16.3.8 key, the route is matched through routes-manifest.json', () => {
    expect(pagesImplicitTags('/pp/b', pagesBuildOf(server))).toEqual(['_N_T_/layout', '_N_T_/pp/layout', '_N_T_/pp/[slug]/layout', '_N_T_/pp/[slug]/page', '_N_T_/pp/b']);
    expect(pagesImplicitTags('/pages-isr', pagesBuildOf(server))).toEqual(['_N_T_/layout', '_N_T_/pages-isr/layout', '_N_T_/pages-isr/page', '_N_T_/pages-isr']);
    expect(pagesImplicitTags('/index', pagesBuildOf(server))).toEqual(['_N_T_/layout', '_N_T_/page', '_N_T_/', '_N_T_/index']);
  });

  it('without manifests (or a hash it does not know), the path stands for the route', () => {
    const errors: string[] = [];
    const empty = pagesBuildOf(tempDir('nvc-no-build-'), (file) => errors.push(path.basename(file)));
    expect(pagesImplicitTags(pagesKey('/pp/[slug]', '/pp/a'), empty)).toEqual(['_N_T_/layout', '_N_T_/pp/layout', '_N_T_/pp/a/layout', '_N_T_/pp/a/page', '_N_T_/pp/a']);
    expect(errors).toEqual(['pages-manifest.json', 'routes-manifest.json']);
    expect(pagesImplicitTags(pagesKey('/pp/[slug]', '/pp/a'), undefined)).toEqual(pagesImplicitTags(pagesKey('/pp/[slug]', '/pp/a'), empty));
  });

  it('with i18n, the route is matched without the locale; a default-locale page also has its unprefixed path', () => {
    const i18n = pagesBuildOf(fakeBuild(['/pages-isr', '/pp/[slug]', '/'], { ...DYNAMIC_ROUTES, i18n: { locales: ['en', 'fr'], defaultLocale: 'en' } }));
    expect(pagesImplicitTags('/fr/pp/a', i18n)).toEqual(['_N_T_/layout', '_N_T_/pp/layout', '_N_T_/pp/[slug]/layout', '_N_T_/pp/[slug]/page', '_N_T_/fr/pp/a']);
    expect(pagesImplicitTags(pagesKey('/pages-isr', '/en/pages-isr'), i18n)).toEqual(['_N_T_/layout', '_N_T_/pages-isr/layout', '_N_T_/pages-isr/page', '_N_T_/en/pages-isr', '_N_T_/pages-isr']);
    expect(pagesImplicitTags(pagesKey('/', '/en'), i18n)).toEqual(['_N_T_/layout', '_N_T_/page', '_N_T_/en', '_N_T_/', '_N_T_/index']);
  });

  it('reads the manifests once per build, on first use, not before', () => {
    const lazy = fakeBuild(['/pp/[slug]'], DYNAMIC_ROUTES);
    const build = pagesBuildOf(lazy);
    // Replaced before first use: what is read is what is there at first use.
    writeFileSync(path.join(lazy, 'pages-manifest.json'), JSON.stringify({ '/pp/[id]': 'pages/pp/[id].js' }));
    expect(build.routeOfHash(sha256('/pp/[id]'))).toBe('/pp/[id]');
    writeFileSync(path.join(lazy, 'pages-manifest.json'), JSON.stringify({ '/pp/[slug]': 'pages/pp/[slug].js' }));
    expect(pagesBuildOf(lazy).routeOfHash(sha256('/pp/[slug]'))).toBeUndefined();
    expect(pagesBuildOf(lazy).routeOfHash(sha256('/pp/[id]'))).toBe('/pp/[id]');
  });
});

describe("what Next's revalidatePath reaches", () => {
  let server: string;
  beforeAll(() => {
    server = fakeBuild(['/pages-isr', '/pp/[slug]', '/'], DYNAMIC_ROUTES);
  });
  const reaches = (key: string, call: [string, ('page' | 'layout')?]): boolean => {
    const tags = new Set(pagesImplicitTags(key, pagesBuildOf(server)));
    return tagsSentBy(...call).some((tag) => tags.has(tag));
  };

  it('every call that reaches an App Router page at the same route reaches the Pages entry, and only those', () => {
    const pageAtA = pagesKey('/pp/[slug]', '/pp/a');
    const hits: Array<[string, ('page' | 'layout')?]> = [['/pp/a'], ['/pp/[slug]', 'page'], ['/pp/[slug]', 'layout'], ['/pp', 'layout'], ['/', 'layout']];
    const misses: Array<[string, ('page' | 'layout')?]> = [['/pp/b'], ['/pp/a', 'page'], ['/pages-isr'], ['/', 'page'], ['/']];
    for (const call of hits) expect(reaches(pageAtA, call), JSON.stringify(call)).toBe(true);
    for (const call of misses) expect(reaches(pageAtA, call), JSON.stringify(call)).toBe(false);
    const isr = pagesKey('/pages-isr', '/pages-isr');
    for (const call of [['/pages-isr'], ['/pages-isr', 'page'], ['/pages-isr', 'layout'], ['/', 'layout']] as Array<[string, ('page' | 'layout')?]>) {
      expect(reaches(isr, call), JSON.stringify(call)).toBe(true);
    }
    const home = pagesKey('/', '/index');
    for (const call of [['/'], ['/index'], ['/', 'page'], ['/', 'layout']] as Array<[string, ('page' | 'layout')?]>) expect(reaches(home, call), JSON.stringify(call)).toBe(true);
    expect(reaches(pagesKey('/pp/[slug]', '/pp/ü'), ['/pp/ü'])).toBe(true);
  });
});

describe('stored entries', () => {
  const opened: TestCache[] = [];
  afterEach(async () => {
    for (const c of opened.splice(0)) await c.runtime.close();
  });

  it('a Pages entry set through the handler carries the tags; revalidatePath and res.revalidate behave as Next expects', async () => {
    const nextServer = fakeBuild(['/pp/[slug]'], DYNAMIC_ROUTES);
    const c = await openCache({ dir: tempDir() });
    opened.push(c);
    const Handler = bindHandler(() => c.runtime);
    const handler = new Handler({ serverDistDir: nextServer });
    const key = pagesKey('/pp/[slug]', '/pp/a');
    const ctx = { kind: 'PAGES', isRoutePPREnabled: false, isFallback: false, cacheControl: { revalidate: 60, expire: 3600 } };
    await handler.set(key, pages(), ctx);
    expect(await handler.get(key, { kind: 'PAGES', isFallback: false })).not.toBeNull();
    await handler.revalidateTag(tagsSentBy('/pp/[slug]', 'page'));
    expect(await handler.get(key, { kind: 'PAGES', isFallback: false })).toBeNull();
    // res.revalidate(): Next renders again and calls set with the same key: the new entry is served, tagged again.
    await handler.set(key, pages(), ctx);
    expect(await handler.get(key, { kind: 'PAGES', isFallback: false })).not.toBeNull();
    await handler.revalidateTag(tagsSentBy('/', 'layout'));
    expect(await handler.get(key, { kind: 'PAGES', isFallback: false })).toBeNull();
  });

  it('the fallback shell is not tagged: a layout-wide revalidatePath leaves it', async () => {
    const c = await openCache({ dir: tempDir() });
    opened.push(c);
    const key = pagesKey('/pp/[slug]', '/pp/[slug]');
    await c.handler.set(key, pages(), { kind: 'PAGES', isFallback: true, cacheControl: { revalidate: 60, expire: 3600 } });
    await c.handler.revalidateTag(tagsSentBy('/', 'layout'));
    expect(await c.handler.get(key, { kind: 'PAGES', isFallback: true })).not.toBeNull();
  });

  it('seeded Pages entries get the same tags, the route from their .meta', async () => {
    await loadHasher();
    const server = fakeBuild(['/pp/[slug]', '/pages-isr'], DYNAMIC_ROUTES);
    const nextDir = path.dirname(server);
    writeFileSync(path.join(nextDir, 'BUILD_ID'), 'b1\n');
    writeFileSync(path.join(nextDir, 'prerender-manifest.json'), JSON.stringify({ routes: {} }));
    mkdirSync(path.join(server, 'pages', 'pp'), { recursive: true });
    const prerender = (stem: string, route: string, keyPath: string, isFallback = false): void => {
      writeFileSync(path.join(server, 'pages', `${stem}.html`), '<p>seeded</p>');
      writeFileSync(path.join(server, 'pages', `${stem}.json`), '{"pageProps":{}}');
      const routeCache = { key: pagesKey(route, keyPath), owner: { kind: 'PAGES', sourceRoute: route }, isFallback };
      writeFileSync(path.join(server, 'pages', `${stem}.meta`), JSON.stringify({ routeCache }));
    };
    prerender('pp/a', '/pp/[slug]', '/pp/a');
    prerender('pp/[slug]', '/pp/[slug]', '/pp/[slug]', true);
    prerender('pages-isr', '/pages-isr', '/pages-isr');
    const drafts: EntryDraft[] = [];
    const result = await seedFromBuild({ writeIfAbsent: (draft) => (drafts.push(draft), Promise.resolve({ written: true, hash: '' })) }, nextDir);
    expect(result.failed).toEqual([]);
    const tagsByKey = Object.fromEntries(drafts.map((d) => [d.key, d.tags]));
    expect(tagsByKey[pagesKey('/pp/[slug]', '/pp/a')]).toEqual(pagesImplicitTags(pagesKey('/pp/[slug]', '/pp/a'), pagesBuildOf(server)));
    expect(tagsByKey[pagesKey('/pp/[slug]', '/pp/a')]).toContain('_N_T_/pp/[slug]/page');
    expect(tagsByKey[pagesKey('/pages-isr', '/pages-isr')]).toContain('_N_T_/pages-isr');
    expect(tagsByKey[pagesKey('/pp/[slug]', '/pp/[slug]')]).toEqual([]);
  });
});
