import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfinedFs } from '../lib/fs/confined';
import { nodeFs } from '../lib/fs/syscalls';
import { SegmentWriter, type Lease } from '../lib/tags/segment-writer';
import { tempDir } from './helpers';

const LEASE_TIMEOUT_MS = 2000;

/** A lease whose age and lapses the test sets, as a process's renewals would. */
class TestLease implements Lease {
  ageMs = 0;
  lapseCount = 0;
  renewals = 0;
  age(): number {
    return this.ageMs;
  }
  lapses(): number {
    return this.lapseCount;
  }
  renew(): Promise<void> {
    this.renewals++;
    this.ageMs = 0;
    return Promise.resolve();
  }
}

function writerIn(dir: string, lease: Lease): SegmentWriter {
  const fs = new ConfinedFs(nodeFs, dir, { writer: 'w1', fsync: false, fileMode: undefined, dirMode: undefined });
  return new SegmentWriter({ fs, dir, lease, leaseTimeoutMs: LEASE_TIMEOUT_MS, durable: false });
}

const segments = (dir: string): string[] => readdirSync(dir).sort();

describe('segment writer: no append to a segment a compactor may have deleted', () => {
  it('appends to one segment while the lease holds', async () => {
    const dir = tempDir();
    const lease = new TestLease();
    const writer = writerIn(dir, lease);
    await writer.append('a\n');
    await writer.append('b\n');
    await writer.close();
    expect(segments(dir)).toEqual(['w1.000000.log']);
    expect(readFileSync(path.join(dir, 'w1.000000.log'), 'utf8')).toBe('a\nb\n');
  });

  it('a pause past half the lease, seen at the append: renews, then starts the next segment', async () => {
    const dir = tempDir();
    const lease = new TestLease();
    const writer = writerIn(dir, lease);
    await writer.append('a\n');
    lease.ageMs = LEASE_TIMEOUT_MS;
    // What renew() reports in a real process after such a gap (runtime.ts counts it).
    lease.renew = () => {
      lease.renewals++;
      lease.ageMs = 0;
      lease.lapseCount++;
      return Promise.resolve();
    };
    await writer.append('b\n');
    await writer.close();
    expect(lease.renewals).toBe(1);
    expect(segments(dir)).toEqual(['w1.000000.log', 'w1.000001.log']);
    expect(readFileSync(path.join(dir, 'w1.000001.log'), 'utf8')).toBe('b\n');
  });

  it('a pause already renewed by the periodic timer (it fires first when a stopped process resumes): the next append still starts a new segment', async () => {
    const dir = tempDir();
    const lease = new TestLease();
    const writer = writerIn(dir, lease);
    await writer.append('a\n');
    // The timer's renewal after the pause: the lease is young again, but it lapsed in between.
    lease.lapseCount++;
    lease.ageMs = 0;
    await writer.append('b\n');
    await writer.append('c\n');
    await writer.close();
    expect(lease.renewals).toBe(0);
    expect(segments(dir)).toEqual(['w1.000000.log', 'w1.000001.log']);
    expect(readFileSync(path.join(dir, 'w1.000001.log'), 'utf8')).toBe('b\nc\n');
  });
});
