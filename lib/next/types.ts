import type { CacheControl } from '../store/codec';

/**
 * The slice of Next.js 16's cacheHandler contract this package relies on
 * (see next/dist/server/lib/incremental-cache and response-cache/types.d.ts).
 * Kept local so that `next` is not a dependency of the library.
 */
export type { CacheControl };

export interface NextHandlerOptions {
  dev?: boolean;
  serverDistDir?: string;
  [other: string]: unknown;
}

export interface CachedValue {
  kind: string;
  [field: string]: unknown;
}

export interface GetContext {
  kind?: string;
  /** FETCH: the fetch's own tags. */
  tags?: string[];
  /** FETCH: the page's implicit `_N_T_` tags. */
  softTags?: string[];
  /** FETCH: the revalidate the caller asked for. */
  revalidate?: number | false;
  isFallback?: boolean;
  [other: string]: unknown;
}

export interface SetContext {
  kind?: string;
  fetchCache?: boolean;
  tags?: string[];
  cacheControl?: CacheControl;
  /** PAGES: the `fallback: true` shell (key `$/pp/[slug]`), not a page. */
  isFallback?: boolean;
  [other: string]: unknown;
}

export interface CacheHandlerValue {
  lastModified: number;
  value: CachedValue | null;
  cacheControl?: CacheControl;
}

export interface TagDurations {
  expire?: number;
}

export interface NextCacheHandler {
  get(key: string, ctx?: GetContext): Promise<CacheHandlerValue | null>;
  set(key: string, data: CachedValue | null, ctx?: SetContext): Promise<void>;
  revalidateTag(tags: string | string[], durations?: TagDurations): Promise<void>;
  resetRequestCache(): void;
}

export type NextCacheHandlerClass = new (options?: NextHandlerOptions) => NextCacheHandler;
