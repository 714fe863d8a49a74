import type { CachedValue, SetContext } from '../lib/next/types';

/** Values shaped exactly as Next 16 passes them to set() (see the contract doc §4). */
export function appPage(options: { segments?: number; html?: string; tags?: string; rsc?: Buffer } = {}): CachedValue {
  const segmentData = new Map<string, Buffer>();
  for (let i = 0; i < (options.segments ?? 3); i++) {
    segmentData.set(i === 0 ? '/_tree' : `/blog/$d$slug/__PAGE__/${i}`, Buffer.from(`segment ${i} \u0000\u00ff`, 'latin1'));
  }
  segmentData.set('/_empty', Buffer.alloc(0));
  return {
    kind: 'APP_PAGE',
    html: options.html ?? '<!DOCTYPE html><html><body>héllo ✓ 日本</body></html>',
    rscData: options.rsc ?? Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0a]),
    segmentData,
    postponed: undefined,
    headers: { 'x-next-cache-tags': options.tags ?? 'post,_N_T_/layout,_N_T_/blog/a' },
    status: 200,
  };
}

export function appRoute(body: Buffer = Buffer.from('{"ok":true}')): CachedValue {
  return { kind: 'APP_ROUTE', body, status: 200, headers: { 'content-type': 'application/json', 'x-next-cache-tags': '_N_T_/api/data' } };
}

export function pages(): CachedValue {
  return { kind: 'PAGES', html: '<div>pages</div>', pageData: { pageProps: { n: 1, nested: { $nvc: 'tricky', list: [1, null, 'x'] } } }, headers: {}, status: 200 };
}

export function redirect(): CachedValue {
  return { kind: 'REDIRECT', props: { __N_REDIRECT: '/target', __N_REDIRECT_STATUS: 307 } };
}

export function fetchValue(body = 'eyJkYXRhIjoxfQ==', tags: string[] = ['data']): CachedValue {
  return { kind: 'FETCH', data: { headers: { 'content-type': 'application/json' }, body, url: 'http://127.0.0.1/data', status: 200 }, revalidate: 30, tags };
}

export function image(buffer: Buffer = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2])): CachedValue {
  return { kind: 'IMAGE', buffer, etag: 'etag-1', upstreamEtag: 'up-1', extension: 'png', revalidate: 14400 };
}

export const PAGE_CTX: SetContext = { kind: 'APP_PAGE', cacheControl: { revalidate: 60, expire: 3600 } };
export const FETCH_CTX: SetContext = { fetchCache: true, tags: ['data'] };

/** Deep equality where Buffers compare by bytes and must stay Buffers, and Maps must stay Maps. */
export function sameValue(a: unknown, b: unknown): boolean {
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map) || !(b instanceof Map) || a.size !== b.size) return false;
    const bKeys = [...b.keys()];
    return [...a.keys()].every((k, i) => bKeys[i] === k && sameValue(a.get(k), b.get(k)));
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => sameValue(v, b[i]));
  }
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const defined = (o: object) => Object.entries(o).filter(([, v]) => v !== undefined);
    const ea = defined(a);
    const eb = new Map(defined(b));
    return ea.length === eb.size && ea.every(([k, v]) => eb.has(k) && sameValue(v, eb.get(k)));
  }
  return Object.is(a, b);
}
