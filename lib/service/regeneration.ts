import type { VolumeClock } from '../store/clock';
import type { LeaseStore } from '../store/lease-store';
import type { FsGate } from '../util/gate';

export interface RegenerationOptions {
  /** How long a lease holds (0: no leases, every pod regenerates what it finds stale, as Next alone does). */
  leaseMs: number;
  maxClockSkewMs: number;
}

/**
 * One regeneration per staleness across the fleet. When a get finds an
 * entry stale (by its revalidate window or by a stale mark), the process
 * that takes the key's lease (see store/lease-store.ts) answers "stale", so
 * Next regenerates it in the background, and its `set` gives the lease back.
 * The others answer "fresh" until the lease expires or the new version lands
 * (a lease older than the version it is asked about no longer holds),
 * so the origin (CMS, database, API) renders once per staleness instead of
 * once per pod. Nothing is served past its `expire` (the service judges that
 * first), and a holder that dies stops holding after one lease duration.
 *
 * What another process holds is remembered until its lease's expiry, so a
 * stale key asked for again and again costs one lease check per lease, not
 * one per request.
 */
export class Regeneration {
  /** Keys whose lease another process holds: until when (performance.now()), and since when (volume clock). */
  private readonly heldElsewhere = new Map<string, { until: number; takenAt: number }>();
  /** Keys whose lease this process holds, until when (performance.now()). */
  private readonly heldHere = new Map<string, number>();

  constructor(
    private readonly leases: LeaseStore,
    private readonly gate: FsGate,
    private readonly clock: VolumeClock,
    private readonly options: RegenerationOptions,
  ) {}

  get enabled(): boolean {
    return this.options.leaseMs > 0;
  }

  /**
   * Whether this process should regenerate a stale entry: true when it took
   * the lease (or leases are off, or the volume cannot say: then it behaves
   * as without leases), false while another process (or an earlier request
   * here) is regenerating it. `versionWrittenAt` (volume clock) is when the
   * stale version was written: a lease taken before it was for an older
   * version, and no longer holds (its holder wrote this one and died before
   * giving the lease back, say).
   */
  async claim(hash: string, namespace: string, versionWrittenAt?: number): Promise<boolean> {
    if (!this.enabled) return true;
    const id = `${namespace}/${hash}`;
    const now = performance.now();
    if ((this.heldHere.get(id) ?? 0) > now) return false;
    const elsewhere = this.heldElsewhere.get(id);
    if (elsewhere && elsewhere.until > now && (versionWrittenAt === undefined || elsewhere.takenAt >= versionWrittenAt)) return false;
    this.forgetExpired(now);
    try {
      const claim = await this.gate.run(() => this.leases.claim(hash, namespace, { durationMs: this.options.leaseMs, now: this.clock.now(), maxSkewMs: this.options.maxClockSkewMs, versionWrittenAt }));
      if (claim.won) {
        this.heldHere.set(id, now + this.options.leaseMs);
        return true;
      }
      this.heldElsewhere.set(id, { until: now + Math.max(0, claim.expiresAt - this.clock.now()), takenAt: claim.takenAt });
      return false;
    } catch {
      return true;
    }
  }

  /** Whether another process holds the key's lease right now (what a coalescing miss waits on). */
  heldByOther(hash: string, namespace: string): boolean {
    return (this.heldElsewhere.get(`${namespace}/${hash}`)?.until ?? 0) > performance.now();
  }

  /** After this process wrote the key: its lease (if it holds one) is given back. Never throws. */
  async release(hash: string, namespace: string): Promise<void> {
    const id = `${namespace}/${hash}`;
    this.heldElsewhere.delete(id);
    if (!this.heldHere.delete(id)) return;
    await this.gate.run(() => this.leases.release(hash, namespace)).catch(() => undefined);
  }

  private forgetExpired(now: number): void {
    if (this.heldElsewhere.size + this.heldHere.size < 1024) return;
    for (const [id, until] of this.heldHere) if (until <= now) this.heldHere.delete(id);
    for (const [id, held] of this.heldElsewhere) if (held.until <= now) this.heldElsewhere.delete(id);
  }
}
