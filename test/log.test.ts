import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveOptions } from '../lib/config';
import { CacheLog, type LogRecord } from '../lib/util/log';
import { runChild, tempDir } from './helpers';

function capture(level: 'debug' | 'warn' = 'debug', format: 'text' | 'json' = 'json'): { log: CacheLog; lines: string[] } {
  const lines: string[] = [];
  return { log: new CacheLog(level, (line) => lines.push(line), format), lines };
}

const parse = (line: string): LogRecord => JSON.parse(line) as LogRecord;

afterEach(() => {
  vi.useRealTimers();
});

describe('the JSON log format', () => {
  it('writes one object per line with time, level, event, message and the key hash', () => {
    const { log, lines } = capture();
    log.info('seeded', 'seeded 3 prerendered entries');
    log.onceWarn('entry-checksum', 'treating entry with key hash 0123456789abcdef as a miss: checksum', { keyHash: '0123456789abcdef' });
    log.onceWarn('get:timeout', 'reading an entry failed: timeout', { event: 'get-failed' });
    log.onceWarn('segment-garbage:w1.000001.log', 'skipped 2 unreadable line(s)');
    expect(lines).toHaveLength(4);
    for (const line of lines) expect(line).not.toContain('\n');
    const [info, entry, timeout, garbage] = lines.map(parse);
    expect(info).toMatchObject({ level: 'info', logger: 'next-volume-cache', event: 'seeded', message: 'seeded 3 prerendered entries' });
    expect(new Date(info!.time).toISOString()).toBe(info!.time);
    expect(entry).toEqual({ time: entry!.time, level: 'warn', logger: 'next-volume-cache', event: 'entry-checksum', cause: 'entry-checksum', message: expect.stringContaining('checksum'), keyHash: '0123456789abcdef' });
    expect(timeout).toMatchObject({ event: 'get-failed', cause: 'get:timeout' });
    // The event is the stable part of the cause: what a dashboard counts on.
    expect(garbage).toMatchObject({ event: 'segment-garbage', cause: 'segment-garbage:w1.000001.log' });
  });

  it('reports the repeats of a cause it kept quiet as a count, once a minute', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const { log, lines } = capture();
    for (let i = 0; i < 5; i++) log.onceWarn('get:EIO', 'reading an entry failed: EIO');
    expect(lines).toHaveLength(1);
    expect(parse(lines[0]!).suppressed).toBeUndefined();
    vi.setSystemTime(new Date('2026-01-01T00:01:01Z'));
    log.onceWarn('get:EIO', 'reading an entry failed: EIO');
    expect(lines).toHaveLength(2);
    expect(parse(lines[1]!)).toMatchObject({ event: 'get', cause: 'get:EIO', suppressed: 4, message: 'reading an entry failed: EIO', time: '2026-01-01T00:01:01.000Z' });
  });

  it('keeps the level filter, and the text format as it was', () => {
    const json = capture('warn');
    json.log.debug('volume-open', 'hidden');
    json.log.info('seeded', 'hidden');
    json.log.error('x', 'shown');
    expect(json.lines.map(parse).map((r) => r.level)).toEqual(['error']);

    vi.useFakeTimers({ toFake: ['Date'] });
    const text = capture('warn', 'text');
    text.log.onceWarn('c', 'first');
    text.log.onceWarn('c', 'again');
    vi.setSystemTime(Date.now() + 61_000);
    text.log.onceWarn('c', 'later');
    text.log.always('metrics', 'metrics {"gets":1}', { gets: 1 });
    expect(text.lines).toEqual(['[next-volume-cache] warn: first', '[next-volume-cache] warn: later (1 more like this since the last report)', '[next-volume-cache] metrics {"gets":1}']);
  });

  it('is chosen with logFormat or NEXT_VOLUME_CACHE_LOG_FORMAT; anything but text or json is refused', () => {
    expect(resolveOptions({}, {}).logFormat).toBe('text');
    expect(resolveOptions({}, { NEXT_VOLUME_CACHE_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(resolveOptions({ logFormat: 'text' }, { NEXT_VOLUME_CACHE_LOG_FORMAT: 'json' }).logFormat).toBe('text');
    expect(() => resolveOptions({ logFormat: 'xml' as never }, {})).toThrow(/logFormat: expected one of text, json/);
    expect(() => resolveOptions({}, { NEXT_VOLUME_CACHE_LOG_FORMAT: 'JSON' })).toThrow(/NEXT_VOLUME_CACHE_LOG_FORMAT/);
  });

  it("a real handler's warnings and metrics reach stderr as JSON lines, nothing else", async () => {
    const notAFolder = path.join(tempDir(), 'file');
    writeFileSync(notAFolder, 'not a cache root');
    const broken = await runChild('metrics-log.js', [], { NEXT_VOLUME_CACHE_DIR: notAFolder, NEXT_VOLUME_CACHE_LOG_FORMAT: 'json' });
    expect(broken.code).toBe(0);
    const warnings = broken.stderr.trim().split('\n').map(parse);
    expect(warnings).toEqual([expect.objectContaining({ level: 'warn', event: 'volume-unavailable', cause: 'volume-unavailable', message: expect.stringContaining('is not usable') })]);

    const working = await runChild('metrics-log.js', [], { NEXT_VOLUME_CACHE_DIR: tempDir(), NEXT_VOLUME_CACHE_LOG_FORMAT: 'json', NEXT_VOLUME_CACHE_METRICS_LOG_MS: '100' });
    expect(working.code).toBe(0);
    const records = working.stderr.trim().split('\n').map(parse);
    expect(records.length).toBeGreaterThanOrEqual(1);
    expect(records.every((r) => r.event === 'metrics')).toBe(true);
    expect(records[0]!.data).toMatchObject({ gets: 1, misses: { absent: 1 } });
  });
});
