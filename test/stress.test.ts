import { describe, expect, it } from 'vitest';
import { runChild, tempDir, walk } from './helpers';

describe('several processes on one folder', () => {
  it('writers rewriting the same keys never let a reader see a torn or mixed entry', async () => {
    const dir = tempDir();
    const duration = process.env.NVC_SOAK_MS ?? '6000';
    const runs = [...['a', 'b', 'c'].map((id) => runChild('stress.js', ['writer', dir, duration, '8', id])), ...['r1', 'r2', 'r3'].map((id) => runChild('stress.js', ['reader', dir, duration, '8', id]))];
    const results = await Promise.all(runs);
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const counts = results.map((r) => JSON.parse(r.stdout) as { role: string; writes: number; reads: number; hits: number; torn: number });
    const readers = counts.filter((c) => c.role === 'reader');
    const writes = counts.filter((c) => c.role === 'writer').reduce((n, c) => n + c.writes, 0);
    const hits = readers.reduce((n, c) => n + c.hits, 0);
    const torn = readers.reduce((n, c) => n + c.torn, 0);
    console.log(`stress: ${writes} writes, ${readers.reduce((n, c) => n + c.reads, 0)} reads, ${hits} verified hits, ${torn} torn`);
    expect(writes).toBeGreaterThan(100);
    expect(hits).toBeGreaterThan(100);
    expect(torn).toBe(0);
    expect(walk(dir).filter((p) => p.includes('.tmp.'))).toEqual([]);
  });
});
