import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildNamespace } from '../lib/store/layout';
import { tempDir } from './helpers';
import { fakeBuild, fill, pageKey } from './volume-tools';

describe('build namespaces', () => {
  it("keep Next's own ids as they are, a leading - or _ included; anything else is hashed into a safe name", () => {
    expect(buildNamespace('sCiAJXEe2yAydFunB36I1')).toBe('build-sCiAJXEe2yAydFunB36I1');
    expect(buildNamespace('-sCiAJXEe2yAydFunB36I')).toBe('build--sCiAJXEe2yAydFunB36I');
    expect(buildNamespace('_b607z9gwo4oaT1BD2q7_')).toBe('build-_b607z9gwo4oaT1BD2q7_');
    for (const hostile of ['../../etc', 'a/b', 'x'.repeat(101), 'line\nbreak', '']) {
      expect(buildNamespace(hostile)).toMatch(/^build-[0-9a-f]{16}$/);
    }
    expect(buildNamespace('a/b')).toBe(buildNamespace('a/b'));
    expect(buildNamespace('a/b')).not.toBe(buildNamespace('a/c'));
  });

  // A process's first call is where the key hasher may not have loaded yet; the namespace must not depend on it.
  it('a fresh server whose BUILD_ID starts with - or _ stores its pages under its build from its very first set', async () => {
    const builds = tempDir('nvc-build-ns-next-');
    for (const id of ['-sCiAJXEe2yAydFunB36I', '_b607z9gwo4oaT1BD2q7_', 'custom/id with spaces']) {
      const dir = tempDir('nvc-build-ns-');
      // fakeBuild names its folder after the id: a folder-safe one, then the real id in BUILD_ID.
      const build = fakeBuild(builds, id.replace(/\W/g, 'x'));
      writeFileSync(path.join(build.nextDir, 'BUILD_ID'), id);
      await fill(dir, [{ op: 'page', key: pageKey('/first'), serverDistDir: build.serverDistDir, tags: ['t'] }]);
      expect(readdirSync(path.join(dir, 'apps/default/entries')).sort(), id).toEqual([buildNamespace(id), 'shared'].sort());
    }
  });
});
