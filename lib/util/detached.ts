import { AsyncResource } from 'node:async_hooks';

/**
 * Runs `work` outside of whatever asynchronous context the caller is in.
 *
 * Next.js runs each request inside AsyncLocalStorage stores (the request's
 * headers, cookies, work unit store...). Timers, intervals and promise
 * chains created during a call keep the stores that were current when they
 * were created alive for as long as they live. The cache's long-lived
 * machinery (start-up, lease and metrics timers, the tag log's append queue)
 * is created lazily by the first call that needs it, which is inside some
 * request: without this, that request's whole context would stay in memory
 * for the life of the process (Next guards its own handler against this).
 *
 * The root is the context this module was loaded in (Next loads cache
 * handlers at start-up or before any request store is active): a bound
 * function, as `AsyncLocalStorage.snapshot()` makes. Should the module ever
 * be loaded inside a request, the stores Node 20 copied onto the root are
 * dropped as well, so that one request is not kept either.
 */
const root = new AsyncResource('next-volume-cache');
for (const symbol of Object.getOwnPropertySymbols(root)) {
  if (symbol.description === 'kResourceStore') delete (root as unknown as Record<symbol, unknown>)[symbol];
}

export function detached<T>(work: () => T): T {
  return root.runInAsyncScope(work);
}
