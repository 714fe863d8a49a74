import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import fg from 'fast-glob';
import type { EntryDraft } from '../service/cache-service';
import type { Runtime, SeedWriter } from '../service/runtime';
import { hashKey } from '../store/hash';
import { buildNamespace } from '../store/layout';
import { detached } from '../util/detached';
import { tagsOf } from './freshness';
import { isTaggablePagesEntry, pagesBuildOf, pagesImplicitTags } from './implicit-tags';
import type { CachedValue } from './types';

/**
 * Seeding: `next build` writes prerendered pages to `.next/server/` and never
 * hands them to the handler, so on an empty volume every page would render
 * again on its first request. This reads the build output (each `.meta`
 * names the runtime key in `routeCache.key`; `prerender-manifest.json` holds
 * the initial lifetimes) and stores each page in the build's namespace.
 *
 * Set-if-absent (a hard link, atomic on NFS): an entry rendered or
 * revalidated at runtime is never overwritten. Entries are stamped with the
 * build's age (from the build files' mtimes), so an invalidation recorded
 * after the build still applies to them: seeding never resurrects content.
 *
 * The build output is on the container's own disk, not on the volume: it is
 * read with plain fs (fast-glob for the walk, whose shape is Next's).
 */
export interface SeedResult {
  buildId: string;
  namespace: string;
  found: number;
  written: number;
  /** Already present (rendered at runtime, or seeded before). */
  skipped: number;
  /** Unreadable or incomplete build files. */
  failed: Array<{ file: string; reason: string }>;
  /**
   * Prerendered pages whose runtime key the build does not name: Next writes `routeCache.key`
   * into its `.meta` files from 16.3.8 on; before that, nothing is seeded.
   */
  unkeyed: number;
}

interface Meta {
  headers?: Record<string, string>;
  status?: number;
  postponed?: string;
  segmentPaths?: string[];
  routeCache?: { key?: string; owner?: { kind?: string; sourceRoute?: string }; isFallback?: boolean };
}

interface PrerenderRoute {
  initialRevalidateSeconds?: number | false;
  initialExpireSeconds?: number;
  initialStatus?: number;
}

type Manifest = { routes: Record<string, PrerenderRoute> };

/** The namespace a build's pages live in, from its `.next` folder's BUILD_ID. */
export async function namespaceOfBuild(nextDir: string): Promise<{ buildId: string; namespace: string }> {
  const buildId = (await readFile(path.join(nextDir, 'BUILD_ID'), 'utf8')).trim();
  return { buildId, namespace: buildNamespace(buildId, hashKey) };
}

export async function seedFromBuild(target: SeedWriter, nextDir: string): Promise<SeedResult> {
  const { buildId, namespace } = await namespaceOfBuild(nextDir);
  const manifest = JSON.parse(await readFile(path.join(nextDir, 'prerender-manifest.json'), 'utf8')) as Manifest;
  const result: SeedResult = { buildId, namespace, found: 0, written: 0, skipped: 0, failed: [], unkeyed: 0 };
  const server = path.join(nextDir, 'server');
  const metas = await fg(['app/**/*.meta', 'pages/**/*.meta'], { cwd: server, onlyFiles: true, followSymbolicLinks: false, dot: true });
  for (const name of metas.sort()) {
    const file = path.join(server, name);
    try {
      const draft = await draftFor(file, path.join(server, name.split('/')[0]!), manifest);
      if (draft === 'unkeyed') result.unkeyed++;
      if (!draft || draft === 'unkeyed') continue;
      result.found++;
      if ((await target.writeIfAbsent(draft)).written) result.written++;
      else result.skipped++;
    } catch (error) {
      result.failed.push({ file: path.relative(nextDir, file), reason: error instanceof Error ? error.message : String(error) });
    }
  }
  return result;
}

const started = new WeakMap<Runtime, Set<string>>();

/**
 * Opt-in (seed: true): on a handler's first call, one pod seeds the build's
 * prerendered pages in the background (see Runtime.seedOnce); once per
 * runtime and build. Runs outside the caller's async context.
 */
export function startAutoSeed(runtime: Runtime, serverDistDir: string | undefined): void {
  if (!runtime.settings.seed || !serverDistDir) return;
  const seen = started.get(runtime) ?? new Set<string>();
  if (seen.has(serverDistDir)) return;
  seen.add(serverDistDir);
  started.set(runtime, seen);
  const namespace = runtime.buildNamespaceOf(serverDistDir);
  if (!namespace) return;
  detached(() => void runtime.seedOnce(namespace, (writer) => seedFromBuild(writer, path.dirname(serverDistDir))));
}

async function draftFor(metaFile: string, base: string, manifest: Manifest): Promise<EntryDraft | 'unkeyed' | undefined> {
  const meta = JSON.parse(await readFile(metaFile, 'utf8')) as Meta;
  const key = meta.routeCache?.key;
  const kind = meta.routeCache?.owner?.kind;
  if (typeof key !== 'string' || typeof kind !== 'string') return 'unkeyed';
  const stem = metaFile.slice(0, -'.meta'.length);
  const lifetimes = manifest.routes[routeOf(path.relative(base, stem))];
  const value = await valueFor(kind, stem, meta);
  if (!value) return undefined;
  const built = (await stat(metaFile)).mtimeMs;
  return {
    key,
    kind: value.kind,
    // The build's age: an invalidation recorded after the build wins over the seeded copy.
    ageMs: Math.max(0, Date.now() - built),
    cacheControl: lifetimes ? { revalidate: lifetimes.initialRevalidateSeconds ?? false, expire: lifetimes.initialExpireSeconds } : undefined,
    tags: [...tagsOf(value, undefined), ...seededPagesTags(meta, key, value, path.dirname(base))],
    value,
  };
}

/** A prerendered Pages Router page gets the implicit path tags a rendered one gets (see implicit-tags.ts); the .meta names its route. */
function seededPagesTags(meta: Meta, key: string, value: CachedValue, serverDir: string): string[] {
  if (meta.routeCache?.owner?.kind !== 'PAGES' || !isTaggablePagesEntry(key, value, { isFallback: meta.routeCache.isFallback === true })) return [];
  const sourceRoute = meta.routeCache.owner.sourceRoute;
  return pagesImplicitTags(key, pagesBuildOf(serverDir), typeof sourceRoute === 'string' ? sourceRoute : undefined);
}

async function valueFor(kind: string, stem: string, meta: Meta): Promise<CachedValue | undefined> {
  const headers = meta.headers ?? {};
  switch (kind) {
    case 'APP_PAGE': {
      const html = await readFile(`${stem}.html`, 'utf8');
      const rscData = await readFile(`${stem}.rsc`).catch(() => undefined);
      let segmentData: Map<string, Buffer> | undefined;
      if (meta.segmentPaths?.length) {
        segmentData = new Map();
        for (const segment of meta.segmentPaths) {
          segmentData.set(segment, await readFile(path.join(`${stem}.segments`, `${segment.replace(/^\//, '')}.segment.rsc`)));
        }
      }
      return { kind: 'APP_PAGE', html, rscData, segmentData, postponed: meta.postponed, headers, status: meta.status };
    }
    case 'APP_ROUTE':
      return { kind: 'APP_ROUTE', body: await readFile(`${stem}.body`), headers, status: meta.status ?? 200 };
    case 'PAGES': {
      const html = await readFile(`${stem}.html`, 'utf8').catch(() => undefined);
      // A notFound page has no HTML: Next takes it from the manifest's notFoundRoutes itself.
      if (html === undefined) return undefined;
      const pageData = JSON.parse(await readFile(`${stem}.json`, 'utf8')) as unknown;
      return { kind: 'PAGES', html, pageData, headers, status: meta.status };
    }
    default:
      return undefined;
  }
}

/** `index` -> `/`, `blog/a` -> `/blog/a`: the prerender manifest's route. */
function routeOf(relativeStem: string): string {
  const route = '/' + relativeStem.split(path.sep).join('/');
  return route === '/index' ? '/' : route;
}
