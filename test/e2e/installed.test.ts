import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pollUntil, walk } from '../helpers';
import { askPage, type PageAnswer } from './page-answer';
import * as image from '../../scripts/production-image.js';
import * as fixture from '../../scripts/fixture-app.js';
import { nextTarget } from '../../scripts/next-target.js';

/**
 * The handler installed from instrumentation.js (examples/instrumentation) as a user ships it: the
 * example's next.config.js (no `cacheHandler`, the package external to the bundle) and
 * instrumentation.js, the package from `npm pack`, `output: 'standalone'`, the image's file tree from
 * the Kubernetes example's Dockerfile (one copy per server, as each pod has its own), two
 * `node server.js` on one cache folder, on the Next under test (NVC_NEXT_VERSION: the global it
 * relies on is Next's, not documented). Runs as this process's user: the uid and group questions
 * are production.test.ts's.
 */
const INSTALL_EXAMPLE = path.join(image.EXAMPLE, '..', 'instrumentation');
/** Past the servers' tag refresh interval, with room for a loaded machine. */
const CROSS_SERVER_DEADLINE_MS = 15_000;

type Image = ReturnType<typeof image.assembleImage>;
type Server = Awaited<ReturnType<typeof image.startPodServer>>;
type DataServer = Awaited<ReturnType<typeof fixture.startDataServer>>;

const temps: string[] = [];
/** One image tree per server, as each pod has its own container filesystem: only the volume is shared. */
let imgA: Image;
let imgB: Image;
let cacheDir: string;
let data: DataServer;
let a: Server | undefined;
let b: Server | undefined;
/** Whether Next's standalone output (before the Dockerfile's own COPY of the package) has the library. */
let tracedIntoStandalone = false;
/** Files of the build's server output holding a copy of the library's code (none when it stays external). */
let bundledCopies: string[] = [];

async function startServer(name: string, img: Image): Promise<Server> {
  const env = image.podEnv(
    img.env,
    {},
    {
      NEXT_VOLUME_CACHE_DIR: cacheDir,
      NEXT_VOLUME_CACHE_TAG_REFRESH_MS: '500',
      NEXT_TELEMETRY_DISABLED: '1',
      PORT: String(await fixture.freePort()),
      HOSTNAME: '127.0.0.1',
      SERVER_NAME: name,
      DATA_PORT: String(data.port),
    },
  );
  return image.startPodServer(img, undefined, env, '/');
}

function get(server: Server, pathname: string): Promise<PageAnswer> {
  return askPage(server.url, pathname);
}

describe('the handler installed from instrumentation.js, in production shape (npm pack, standalone, image tree)', () => {
  beforeAll(async () => {
    const log = (message: string) => console.log(`[installed] ${message}`);
    const build = image.openTempDir('nvc-installed-build-');
    temps.push(build);
    const project = image.buildExampleApp(build, log, INSTALL_EXAMPLE, nextTarget().version);
    const [rootA, rootB] = [image.openTempDir('nvc-installed-image-'), image.openTempDir('nvc-installed-image-')];
    temps.push(rootA, rootB);
    imgA = image.assembleImage(project, rootA);
    imgB = image.assembleImage(project, rootB);
    tracedIntoStandalone = existsSync(path.join(project, '.next', 'standalone', 'node_modules', 'next-volume-cache', 'dist', 'lib', 'next', 'install.js'));
    // A string only the library's install module holds.
    bundledCopies = walk(path.join(project, '.next', 'server')).filter((file) => file.endsWith('.js') && readFileSync(file, 'utf8').includes('EHANDLERINSTALLED'));
    rmSync(build, { recursive: true, force: true });
    const volume = image.openTempDir('nvc-installed-volume-');
    temps.push(volume);
    cacheDir = path.join(volume, 'cache');
    data = await fixture.startDataServer();
    [a, b] = await Promise.all([startServer('A', imgA), startServer('B', imgB)]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await data?.stop();
    for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  });

  it('Next keeps the package external: traced into the standalone output, no copy bundled into instrumentation', () => {
    expect(image.nodeModulesAbove(imgA.workdir)).toEqual([]);
    expect(tracedIntoStandalone).toBe(true);
    expect(bundledCopies).toEqual([]);
  });

  it('pages rendered by A are served by B from the shared folder, so Next uses the installed handler', async () => {
    const page = '/blog/installed';
    const first = await get(a!, page);
    expect(first.status).toBe(200);
    const onB = await get(b!, page);
    expect(onB.cache).toBe('HIT');
    expect(onB.render).toBe(first.render);
    expect(onB.render).toMatch(/\|A\|/);
    expect(walk(cacheDir).some((file) => file.includes(`${path.sep}entries${path.sep}`))).toBe(true);
  });

  it('fetch data is shared, and revalidatePath on A re-renders the page on B', async () => {
    expect((await get(a!, '/data')).status).toBe(200);
    expect((await get(b!, '/data')).status).toBe(200);
    const page = '/blog/installed-revalidate';
    await get(a!, page);
    const before = await get(b!, page);
    expect(before.cache).toBe('HIT');
    expect((await fetch(`${a!.url}/api/revalidate?path=${page}`)).status).toBe(200);
    const after = await pollUntil(
      () => get(b!, page),
      (answer) => answer.render !== before.render,
      CROSS_SERVER_DEADLINE_MS,
      100,
    );
    expect(after.render).not.toBe(before.render);
    expect(after.render).toMatch(/\|B\|/);
  });

  it('neither server logged an error from the library', () => {
    for (const server of [a!, b!]) expect(server.output()).not.toMatch(/next-volume-cache.*(error|EHANDLERINSTALLED)/i);
  });
});
