/**
 * The volume's clock. Replicas' clocks disagree (±60 s is common enough), so
 * nothing that one process writes and another compares is stamped with a
 * local clock. Every process measures the offset between its own clock and
 * the file times the volume's server assigns (it writes its lease file and
 * reads back the mtime the server gave it), and stamps entries and
 * invalidations with `now()` = local time + offset: one shared clock for all.
 * The error is about half the time a small write takes plus the volume's
 * timestamp granularity, milliseconds, not the tens of seconds of skew.
 */
export class VolumeClock {
  private offsetMs = 0;

  now(): number {
    return Date.now() + this.offsetMs;
  }

  get offset(): number {
    return this.offsetMs;
  }

  /** `before`/`after`: local time around the write; `volumeMtimeMs`: the mtime the volume gave it. */
  calibrate(before: number, after: number, volumeMtimeMs: number): void {
    this.offsetMs = Math.round(volumeMtimeMs - (before + after) / 2);
  }

  /** Converts a volume time into this process's clock, for handing to Next. */
  toLocal(volumeTimeMs: number): number {
    return volumeTimeMs - this.offsetMs;
  }
}
