/** In-process counters, readable with `getMetrics()` and logged periodically when enabled. */
export interface Metrics {
  gets: number;
  hits: number;
  staleServed: number;
  /** Misses by cause: absent, invalidated, expired, damaged kinds, timeout, saturated, ... */
  misses: Record<string, number>;
  sets: number;
  setFailures: number;
  timeouts: number;
  invalidations: number;
  tagRefreshes: number;
  tagRecordsRead: number;
  tagRecordsSkipped: number;
  /** Tag log files (segments, snapshot) that could not be used: see TagLog's fail-closed rule. */
  tagFilesUnusable: number;
  /** Hits served from the memory tier (also counted in hits). */
  memoryHits: number;
  /** Identity checks of memory copies whose trust window was over. */
  memoryChecks: number;
  /** Stale entries this process took the regeneration lease for (answered stale: Next regenerates). */
  regenerationsClaimed: number;
  /** Stale entries answered fresh because another process holds the lease (no regeneration here). */
  regenerationsDeferred: number;
  /** Misses that waited for another process's render (coalesceMissesMs), and those it answered. */
  coalescedWaits: number;
  coalescedHits: number;
}

export function newMetrics(): Metrics {
  return {
    gets: 0,
    hits: 0,
    staleServed: 0,
    misses: {},
    sets: 0,
    setFailures: 0,
    timeouts: 0,
    invalidations: 0,
    tagRefreshes: 0,
    tagRecordsRead: 0,
    tagRecordsSkipped: 0,
    tagFilesUnusable: 0,
    memoryHits: 0,
    memoryChecks: 0,
    regenerationsClaimed: 0,
    regenerationsDeferred: 0,
    coalescedWaits: 0,
    coalescedHits: 0,
  };
}

export function countMiss(metrics: Metrics, reason: string): void {
  metrics.misses[reason] = (metrics.misses[reason] ?? 0) + 1;
}
