import { cpSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DIST, runChild, tempDir } from './helpers';

describe('loading as Next does', () => {
  it('works from require and import, and two copies of the package share one runtime', async () => {
    const copy = path.join(tempDir(), 'dist');
    cpSync(DIST, copy, { recursive: true });
    const dir = tempDir();
    const result = await runChild('load-twice.js', [DIST, copy, dir], { NEXT_VOLUME_CACHE_DIR: dir, NEXT_VOLUME_CACHE_LOG_LEVEL: 'silent', NODE_PATH: path.join(DIST, '..', 'node_modules') });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ requireIsClass: true, importIsClass: true, hits: 2, runtimesSeenByCopy: 1, getsSeenByCopy: 2 });
  });
});
