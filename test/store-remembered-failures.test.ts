import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RememberedFailures } from '../lib/store/remembered-failures';
import { tempDir } from './helpers';

afterEach(() => {
  vi.useRealTimers();
});

describe('remembered failures', () => {
  it('recall a failure of this very version of a file for a minute (performance.now, faked), then read again', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const file = path.join(tempDir('nvc-remember-'), 'damaged.entry');
    writeFileSync(file, 'garbage');
    const failures = new RememberedFailures<'corrupt' | 'too-large'>();
    expect(failures.recall(file, statSync(file))).toBeUndefined();
    failures.remember(file, statSync(file), 'corrupt');
    expect(failures.recall(file, statSync(file))).toBe('corrupt');
    vi.advanceTimersByTime(60_000);
    expect(failures.recall(file, statSync(file))).toBe('corrupt');
    vi.advanceTimersByTime(1);
    expect(failures.recall(file, statSync(file))).toBeUndefined();
    // Forgotten once expired: not recalled even within a new minute.
    expect(failures.recall(file, statSync(file))).toBeUndefined();
  });

  it('forget a file rewritten since (new size or mtime): it is read again at once', () => {
    const file = path.join(tempDir('nvc-remember-'), 'entry');
    writeFileSync(file, 'garbage');
    const failures = new RememberedFailures<'corrupt'>();
    failures.remember(file, statSync(file), 'corrupt');
    writeFileSync(file, 'a valid entry, longer');
    expect(failures.recall(file, statSync(file))).toBeUndefined();
    failures.remember(file, statSync(file), 'corrupt');
    expect(failures.recall(path.join(path.dirname(file), 'other'), statSync(file))).toBeUndefined();
  });

  it('start over past 10,000 files (memory stays bounded; forgetting only costs a re-read)', () => {
    const file = path.join(tempDir('nvc-remember-'), 'entry');
    writeFileSync(file, 'x');
    const stats = statSync(file);
    const failures = new RememberedFailures<'corrupt'>();
    for (let i = 0; i < 10_000; i++) failures.remember(`${file}-${i}`, stats, 'corrupt');
    expect(failures.recall(`${file}-0`, stats)).toBe('corrupt');
    failures.remember(`${file}-next`, stats, 'corrupt');
    expect(failures.recall(`${file}-0`, stats)).toBeUndefined();
    expect(failures.recall(`${file}-next`, stats)).toBe('corrupt');
  });
});
