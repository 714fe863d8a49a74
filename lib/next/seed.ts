import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { EntryRecord } from '../store/codec';
import type { VolumeClock } from '../store/clock';
import type { EntryStore } from '../store/entry-store';
import { hashKey } from '../store/hash';
import { buildNamespace } from '../store/layout';
import { tagsOf } from './freshness';
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
 */
export interface SeedTarget {
  /** Where entries go; set-if-absent (EntryStore.writeIfAbsent, possibly behind a gate). */
  store: Pick<EntryStore, 'writeIfAbsent'>;
  clock: VolumeClock;
  /** Told about each entry written, for the tag index. */
  onSeeded?(hash: string, namespace: string, tags: string[]): void;
}

export interface SeedResult {
  buildId: string;
  namespace: string;
  found: number;
  written: number;
  /** Already present (rendered at runtime, or seeded before). */
  skipped: number;
  /** Unreadable or incomplete build files. */
  failed: Array<{ file: string; reason: string }>;
}

interface Meta {
  headers?: Record<string, string>;
  status?: number;
  postponed?: string;
  segmentPaths?: string[];
  routeCache?: { key?: string; owner?: { kind?: string } };
}

interface PrerenderRoute {
  initialRevalidateSeconds?: number | false;
  initialExpireSeconds?: number;
  initialStatus?: number;
}

export async function seedFromBuild(target: SeedTarget, nextDir: string): Promise<SeedResult> {
  const buildId = (await readFile(path.join(nextDir, 'BUILD_ID'), 'utf8')).trim();
  const namespace = buildNamespace(buildId, hashKey);
  const manifest = JSON.parse(await readFile(path.join(nextDir, 'prerender-manifest.json'), 'utf8')) as { routes: Record<string, PrerenderRoute> };
  const result: SeedResult = { buildId, namespace, found: 0, written: 0, skipped: 0, failed: [] };
  for (const area of ['app', 'pages'] as const) {
    const base = path.join(nextDir, 'server', area);
    let names: string[];
    try {
      names = (await readdir(base, { recursive: true })) as string[];
    } catch {
      continue;
    }
    for (const name of names.filter((n) => n.endsWith('.meta')).sort()) {
      const file = path.join(base, name);
      try {
        const record = await recordFor(file, base, manifest, target.clock);
        if (!record) continue;
        result.found++;
        if (await target.store.writeIfAbsent(record, namespace)) {
          result.written++;
          target.onSeeded?.(hashKey(record.key), namespace, record.tags);
        } else {
          result.skipped++;
        }
      } catch (error) {
        result.failed.push({ file: path.relative(nextDir, file), reason: error instanceof Error ? error.message : String(error) });
      }
    }
  }
  return result;
}

async function recordFor(metaFile: string, base: string, manifest: { routes: Record<string, PrerenderRoute> }, clock: VolumeClock): Promise<EntryRecord | undefined> {
  const meta = JSON.parse(await readFile(metaFile, 'utf8')) as Meta;
  const key = meta.routeCache?.key;
  const kind = meta.routeCache?.owner?.kind;
  if (typeof key !== 'string' || typeof kind !== 'string') return undefined;
  const stem = metaFile.slice(0, -'.meta'.length);
  const route = routeOf(path.relative(base, stem));
  const lifetimes = manifest.routes[route];
  const value = await valueFor(kind, stem, meta);
  if (!value) return undefined;
  const built = (await stat(metaFile)).mtimeMs;
  // The build's age on this machine's clock, applied to the volume's: an invalidation after the build wins.
  const writtenAt = clock.now() - Math.max(0, Date.now() - built);
  return {
    key,
    kind: value.kind,
    writtenAt,
    cacheControl: lifetimes ? { revalidate: lifetimes.initialRevalidateSeconds ?? false, expire: lifetimes.initialExpireSeconds } : undefined,
    tags: tagsOf(value, undefined),
    value,
  };
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
