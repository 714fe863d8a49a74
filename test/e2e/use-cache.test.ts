import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers';
import { pollUntil } from '../helpers';
import * as fixture from '../../scripts/fixture-app.js';

type Server = Awaited<ReturnType<typeof fixture.startServer>>;

async function value(server: Server, pathname: string): Promise<{ value: string | undefined; cache: string | null }> {
  const res = await fetch(server.url + pathname);
  const body = await res.text();
  return { value: /data-value="([^"]*)"/.exec(body)?.[1], cache: res.headers.get('x-nextjs-cache') };
}

let a: Server;
let b: Server;
let cacheDir: string | undefined;

beforeAll(async () => {
  await fixture.buildFixture({ app: fixture.CACHE_COMPONENTS_APP, log: (m: string) => console.log(m) });
  cacheDir = tempDir('nvc-e2e-cc-');
  [a, b] = await Promise.all([fixture.startServer({ name: 'A', cacheDir, dataPort: 9, app: fixture.CACHE_COMPONENTS_APP }), fixture.startServer({ name: 'B', cacheDir, dataPort: 9, app: fixture.CACHE_COMPONENTS_APP })]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

describe("'use cache' across two servers (cacheComponents: true)", () => {
  it('a value computed on A is served from the shared cache on B', async () => {
    const onA = await value(a, '/dynamic');
    expect(onA.value).toMatch(/^product\|A\|/);
    const onB = await value(b, '/dynamic');
    expect(onB.value).toBe(onA.value);
  });

  it('revalidateTag on A invalidates the cached value on B, and the page that embeds it', async () => {
    const before = (await value(a, '/dynamic')).value;
    await value(a, '/embed');
    const embedBefore = await value(b, '/embed');
    expect(embedBefore.value).toBe(before);
    const res = await fetch(`${a.url}/api/revalidate?tag=product`);
    expect(res.status).toBe(200);
    const after = await pollUntil(
      () => value(b, '/dynamic'),
      (v) => v.value !== before,
    );
    expect(after.value).not.toBe(before);
    expect(after.value).toMatch(/^product\|B\|/);
    const embedAfter = await value(b, '/embed');
    expect(embedAfter.value).not.toBe(embedBefore.value);
    expect((await value(a, '/dynamic')).value).toBe(after.value);
  });
});
