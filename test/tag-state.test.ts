import { describe, expect, it } from 'vitest';
import { ALL_ENTRIES, TagState } from '../lib/tags/tag-state';

const T0 = 1_000_000;

describe('TagState: dropping what can no longer judge an entry (compaction below the watermark)', () => {
  it('drops a tag only when every mark is older than the watermark and already passed', () => {
    const s = new TagState();
    s.apply({ tags: ['old'], stale: T0, expired: T0 }, T0);
    s.apply({ tags: ['recent'], stale: T0 + 5000, expired: T0 + 5000 }, T0 + 5000);
    s.apply({ tags: ['scheduled'], stale: T0, expired: T0 + 60_000 }, T0);
    s.apply({ tags: ['stale-only'], stale: T0 + 4000, expired: T0 }, T0 + 4000);
    const now = T0 + 10_000;
    expect(s.dropOlderThan(T0 + 3000, now)).toBe(1);
    expect(Object.keys(s.toJSON()).sort()).toEqual(['recent', 'scheduled', 'stale-only']);
    // An expiry still in the future keeps its tag whatever the watermark: it has yet to expire entries.
    expect(s.dropOlderThan(T0 + 100_000, now)).toBe(2);
    expect(Object.keys(s.toJSON())).toEqual(['scheduled']);
    expect(s.dropOlderThan(T0 + 100_000, T0 + 60_000)).toBe(1);
    expect(s.size).toBe(0);
  });

  it('an entry written after the dropped marks is judged as before: fresh', () => {
    const s = new TagState();
    s.apply({ tags: ['t'], stale: T0, expired: T0 }, T0);
    expect(s.verdict(['t'], T0 + 10, T0 + 20)).toBe('fresh');
    s.dropOlderThan(T0 + 5, T0 + 20);
    expect(s.verdict(['t'], T0 + 10, T0 + 20)).toBe('fresh');
  });
});

describe('TagState from a snapshot file', () => {
  it('skips malformed tags and keeps the good ones; anything but an object is an empty state', () => {
    const json = {
      good: { s: T0, e: [T0] },
      noStale: { e: [T0] },
      staleNotNumber: { s: 'x', e: [T0] },
      expiriesNotList: { s: T0, e: 5 },
      expiryNotNumber: { s: T0, e: [T0, 'later'] },
      nothing: null,
    };
    expect(TagState.fromJSON(json, T0).toJSON()).toEqual({ good: { s: T0, e: [T0] } });
    for (const bad of [null, 'text', 42, undefined]) expect(TagState.fromJSON(bad, T0).size).toBe(0);
  });

  it('keeps of the passed expiries only the latest (the others cannot decide anything)', () => {
    const state = TagState.fromJSON({ t: { s: 0, e: [T0 + 30, T0 + 10, T0 + 20, T0 + 500] } }, T0 + 100);
    expect(state.toJSON()).toEqual({ t: { s: 0, e: [T0 + 30, T0 + 500] } });
  });
});

describe('ALL_ENTRIES: failing closed', () => {
  it('its marks judge every entry whatever its tags, untagged ones included', () => {
    const s = new TagState();
    s.apply({ tags: [ALL_ENTRIES], stale: T0, expired: T0 }, T0);
    expect(s.verdict([], T0 - 1, T0)).toBe('expired');
    expect(s.verdict(['any', 'tags'], T0 - 1, T0)).toBe('expired');
    expect(s.verdict([], T0 + 1, T0 + 1)).toBe('fresh');
  });
});
