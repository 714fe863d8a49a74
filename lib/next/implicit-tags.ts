import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { CachedValue, SetContext } from './types';

/**
 * Implicit path tags for Pages Router entries.
 *
 * Next gives every App Router page the `_N_T_` tags that `revalidatePath`
 * sends (server/lib/implicit-tags.js): `_N_T_/layout`, one `…/layout` per
 * parent folder of the route, `_N_T_<route>/page` and `_N_T_<pathname>`.
 * A Pages Router page gets none: Pages never writes `x-next-cache-tags`, so
 * `revalidatePath('/legacy')` from an App Router route or a Server Action
 * reaches nothing, in Next's default cache too. Here a Pages entry carries
 * exactly the tags Next would derive for an App Router page at the same
 * route and path, so `revalidatePath(p)`, `(p, 'page')`, `(route, 'page')`
 * and `(folder, 'layout')` (`('/', 'layout')`: every page) invalidate it on
 * every replica, as they would an App Router page.
 *
 * What the handler is given (16.3.8+): the key
 * `/route-cache/PAGES/<sha256(route)>/$<normalized path>`, with the route
 * (the `[slug]` form) only as its hash; it is recovered through the build's
 * `pages-manifest.json`. Before 16.3.8 the key is the normalized path itself
 * and the route is matched through `routes-manifest.json`.
 */
export const IMPLICIT_TAG_PREFIX = '_N_T_';

const HASHED_PAGES_KEY = /^\/route-cache\/PAGES\/([0-9a-f]{64})\/\$(\/[\s\S]*)$/;
/** Next's isDynamicRoute (strict): a `[param]` segment. */
const DYNAMIC_SEGMENT = /\/\[[^/]+\](?=\/|$)/;
const OUT_OF_CLASS_CHAR = /[^\t\x20-\x7e]/;
const OUT_OF_CLASS_RUN = /[^\t\x20-\x7e]+/g;

/**
 * Next's encodeHeaderSafe (16.3+; 16.2's encodeCacheTag is the same rule):
 * percent-encodes runs outside tab and printable ASCII, leaves the rest as it
 * is. Where Next would throw (a lone surrogate), the tag stays raw.
 */
export function encodeTag(tag: string): string {
  if (!OUT_OF_CLASS_CHAR.test(tag)) return tag;
  try {
    return tag.replace(OUT_OF_CLASS_RUN, (run) => encodeURIComponent(run));
  } catch {
    return tag;
  }
}

/** Next's getDerivedTags: `/layout`, each prefix of the page path as `…/layout`, the page itself last. */
function derivedTags(page: string): string[] {
  const tags = ['/layout'];
  if (!page.startsWith('/')) return tags;
  let end = page.indexOf('/', 1);
  for (;;) {
    if (end === -1) end = page.length;
    let prefix = page.slice(0, end);
    if (prefix) {
      if (!prefix.endsWith('/page') && !prefix.endsWith('/route')) prefix = `${prefix}${prefix.endsWith('/') ? '' : '/'}layout`;
      tags.push(prefix);
    }
    if (end === page.length) return tags;
    end = page.indexOf('/', end + 1);
  }
}

/**
 * The tags Next's getImplicitTags gives an App Router page at `route` (e.g.
 * `/blog/[slug]`) rendering `pathnames` (e.g. `/blog/a`), encoded as Next
 * 16.2+ encodes them, `/` and `/index` each bringing the other.
 */
export function appPageImplicitTags(route: string, pathnames: readonly string[]): string[] {
  const page = route === '/' ? '/page' : `${route}/page`;
  const tags = new Set(derivedTags(page).map((tag) => encodeTag(IMPLICIT_TAG_PREFIX + tag)));
  for (const pathname of pathnames) tags.add(encodeTag(IMPLICIT_TAG_PREFIX + pathname));
  if (tags.has(`${IMPLICIT_TAG_PREFIX}/`)) tags.add(`${IMPLICIT_TAG_PREFIX}/index`);
  if (tags.has(`${IMPLICIT_TAG_PREFIX}/index`)) tags.add(`${IMPLICIT_TAG_PREFIX}/`);
  return [...tags];
}

/** Each tag, plus its raw form where encoding changed it: Next 16.0 and 16.1 neither encode tags nor revalidatePath's. */
function withRawForms(route: string, pathnames: readonly string[], encoded: string[]): string[] {
  const raw = [...derivedTags(route === '/' ? '/page' : `${route}/page`), ...pathnames].map((tag) => IMPLICIT_TAG_PREFIX + tag);
  return [...new Set([...encoded, ...raw])];
}

/** Next's denormalizePagePath: `/index` is `/`, `/index/x` is `/x` (a page named index), dynamic paths as they are. */
export function denormalizePagePath(page: string): string {
  if (page.startsWith('/index/') && !DYNAMIC_SEGMENT.test(page)) return page.slice('/index'.length);
  return page === '/index' ? '/' : page;
}

/** What a Pages Router key says: the route's sha256 (16.3.8+ only) and the concrete path (decoded, with its locale). */
export interface PagesKey {
  routeHash?: string;
  pathname: string;
}

export function parsePagesKey(key: string): PagesKey | undefined {
  const hashed = HASHED_PAGES_KEY.exec(key);
  if (hashed) return { routeHash: hashed[1]!, pathname: denormalizePagePath(hashed[2]!) };
  // Before 16.3.8: the normalized path itself (any other shape is not a Pages key).
  if (!key.startsWith('/') || key.startsWith('/route-cache/')) return undefined;
  return { pathname: denormalizePagePath(key) };
}

/** The build's Pages Router routes, read from its manifests on first use. */
export interface PagesBuild {
  /** The route (`/pp/[slug]`) whose sha256 is `hash`. */
  routeOfHash(hash: string): string | undefined;
  /** The route serving `pathname` (locale removed): its exact page, else the first dynamic route that matches. */
  routeOfPath(pathname: string): string | undefined;
  readonly i18n: { locales: string[]; defaultLocale: string | undefined } | undefined;
}

interface ManifestData {
  routes: Set<string>;
  byHash: Map<string, string>;
  dynamic: Array<{ page: string; regex: RegExp }>;
  i18n: PagesBuild['i18n'];
}

interface RoutesManifest {
  dynamicRoutes?: Array<{ page?: unknown; regex?: unknown }>;
  i18n?: { locales?: unknown; defaultLocale?: unknown } | null;
}

const builds = new Map<string, PagesBuild>();

/**
 * The Pages routes of the build whose `.next/server` this is, once per
 * process and build. Nothing is read until a Pages entry needs it; then the
 * two manifests are read synchronously from local disk (small files beside
 * the build, as Next reads them), so no promise is made in the caller's
 * async context. A manifest that cannot be read leaves its part empty
 * (reported once through `onError`): entries are then tagged by path only.
 */
export function pagesBuildOf(serverDistDir: string, onError: (file: string, error: unknown) => void = () => {}): PagesBuild {
  let build = builds.get(serverDistDir);
  if (!build) {
    build = lazyPagesBuild(serverDistDir, onError);
    builds.set(serverDistDir, build);
  }
  return build;
}

function lazyPagesBuild(serverDistDir: string, onError: (file: string, error: unknown) => void): PagesBuild {
  let data: ManifestData | undefined;
  const load = (): ManifestData => (data ??= readManifests(serverDistDir, onError));
  return {
    routeOfHash: (hash) => load().byHash.get(hash),
    routeOfPath: (pathname) => {
      const { routes, dynamic } = load();
      if (routes.has(pathname)) return pathname;
      return dynamic.find((route) => route.regex.test(pathname))?.page;
    },
    get i18n() {
      return load().i18n;
    },
  };
}

function readManifests(serverDistDir: string, onError: (file: string, error: unknown) => void): ManifestData {
  const pages = readJson<Record<string, unknown>>(path.join(serverDistDir, 'pages-manifest.json'), onError) ?? {};
  const routes = new Set(Object.keys(pages).filter((route) => route.startsWith('/')));
  const byHash = new Map([...routes].map((route) => [createHash('sha256').update(route).digest('hex'), route] as const));
  const manifest = readJson<RoutesManifest>(path.join(serverDistDir, '..', 'routes-manifest.json'), onError) ?? {};
  return { routes, byHash, dynamic: dynamicPagesRoutes(manifest, routes), i18n: i18nOf(manifest) };
}

/** routes-manifest lists App routes too: only the Pages ones, in the manifest's (Next's matching) order. */
function dynamicPagesRoutes(manifest: RoutesManifest, routes: Set<string>): ManifestData['dynamic'] {
  const out: ManifestData['dynamic'] = [];
  for (const route of Array.isArray(manifest.dynamicRoutes) ? manifest.dynamicRoutes : []) {
    if (typeof route.page !== 'string' || typeof route.regex !== 'string' || !routes.has(route.page)) continue;
    try {
      out.push({ page: route.page, regex: new RegExp(route.regex) });
    } catch {
      // A pattern this runtime cannot compile: that route falls back to its path.
    }
  }
  return out;
}

function i18nOf(manifest: RoutesManifest): PagesBuild['i18n'] {
  const locales = manifest.i18n?.locales;
  if (!Array.isArray(locales)) return undefined;
  const defaultLocale = manifest.i18n?.defaultLocale;
  return { locales: locales.filter((l): l is string => typeof l === 'string'), defaultLocale: typeof defaultLocale === 'string' ? defaultLocale : undefined };
}

function readJson<T>(file: string, onError: (file: string, error: unknown) => void): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (error) {
    onError(file, error);
    return undefined;
  }
}

/**
 * Whether Next stored this under a Pages Router key: any value under a
 * 16.3.8+ `/route-cache/PAGES/` key (a page, a redirect, a notFound `null`);
 * under an older plain key only a `PAGES` or `REDIRECT` value (a `null` there
 * could be anything). Never the `fallback: true` shell: Next does not write
 * it again at runtime, so invalidating it would turn the fallback into
 * blocking renders until the next deploy.
 */
export function isTaggablePagesEntry(key: string, value: CachedValue | null, ctx: Pick<SetContext, 'isFallback'> | undefined): boolean {
  if (ctx?.isFallback === true) return false;
  if (HASHED_PAGES_KEY.test(key)) return true;
  return value?.kind === 'PAGES' || value?.kind === 'REDIRECT';
}

/**
 * The implicit tags of a Pages Router entry: those of an App Router page at
 * the same route and path (see appPageImplicitTags), in the encoded form and
 * the raw one where they differ. The route comes from `knownRoute` (the
 * seeder reads it from the build), else the key's hash, else the path's
 * match in the build, else the path itself (its `[slug]` forms are then
 * missing). With i18n the key's path carries the locale: the route is
 * matched without it, and a default-locale page is also tagged with the
 * unprefixed path its URL has.
 */
export function pagesImplicitTags(key: string, build: PagesBuild | undefined, knownRoute?: string): string[] {
  const parsed = parsePagesKey(key);
  if (!parsed) return [];
  const { pathname } = parsed;
  const local = withoutLocale(pathname, build?.i18n);
  const route = knownRoute ?? (parsed.routeHash ? build?.routeOfHash(parsed.routeHash) : undefined) ?? build?.routeOfPath(local.pathname) ?? local.pathname;
  const pathnames = local.isDefaultLocale ? [pathname, local.pathname] : [pathname];
  return withRawForms(route, pathnames, appPageImplicitTags(route, pathnames));
}

function withoutLocale(pathname: string, i18n: PagesBuild['i18n']): { pathname: string; isDefaultLocale: boolean } {
  const first = pathname.split('/')[1] ?? '';
  if (!i18n || !i18n.locales.includes(first)) return { pathname, isDefaultLocale: false };
  return { pathname: pathname.slice(first.length + 1) || '/', isDefaultLocale: first === i18n.defaultLocale };
}
