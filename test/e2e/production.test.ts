import { lstatSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { walk } from '../helpers';
import { askPage, type PageAnswer } from './page-answer';
import * as image from '../../scripts/production-image.js';
import * as fixture from '../../scripts/fixture-app.js';

/**
 * The Kubernetes example exactly as a user deploys it (issue 13): the example app built with
 * `output: 'standalone'` and the package from `npm pack`, the image's file tree from the Dockerfile's
 * COPY lines, two `node server.js` pods and the manifests' commands run from that tree as non-root
 * uids on a setgid group folder (what `fsGroup` gives), with the manifests' environment.
 */
const missing = image.podsUnavailable();
if (missing && process.env.CI === 'true') throw new Error(`the production-shaped test must run in CI: ${missing}`);
if (missing) console.log(`SKIP production-shaped e2e: ${missing}`);

type Image = ReturnType<typeof image.assembleImage>;
type Workload = ReturnType<typeof image.exampleWorkloads>[number];
type Container = Workload['containers'][number];
type PodServer = Awaited<ReturnType<typeof image.startPodServer>>;
type DataServer = Awaited<ReturnType<typeof fixture.startDataServer>>;
interface PodUser {
  uid: number;
  gid: number;
  fsGroup: number;
}

/** A uid and primary group other than the image's, in the same fsGroup: a pod of another release or a debug pod. */
const OTHER_UID = 1001;
/** Past the Deployment's tag refresh interval, with room for a loaded machine. */
const CROSS_SERVER_DEADLINE_MS = 15_000;

const workloads = image.exampleWorkloads();
const deployment = only(workloads.filter((w) => w.kind === 'Deployment'));
const cronJob = only(workloads.filter((w) => w.kind === 'CronJob'));
const web = only(deployment.containers);
const maintenance = only(cronJob.containers);
/** `node <path to cli.js>` as the manifests invoke it. */
const cliPrefix = maintenance.commands[0]!.argv.slice(0, 2);

function only<T>(items: T[]): T {
  if (items.length !== 1) throw new Error(`expected exactly one, found ${items.length}`);
  return items[0]!;
}

const temps: string[] = [];
/** Pod A's image tree, which the manifests' commands also run from. */
let img: Image;
/** Pod B's own image tree, as each pod has its own container filesystem: only the volume is shared. */
let imgB: Image;
let cacheDir: string;
let data: DataServer;
let podUser: PodUser;
let jobUser: PodUser;
let otherUser: PodUser;
let a: PodServer | undefined;
let b: PodServer | undefined;

/** The manifest's env for `container`, adapted to this machine: the volume's path, ports, the fixture's needs. */
function envFor(container: Container, extra: Record<string, string> = {}): Record<string, string> {
  return image.podEnv(img.env, container.env, { NEXT_VOLUME_CACHE_DIR: cacheDir, NEXT_TELEMETRY_DISABLED: '1', ...extra });
}

async function startPod(name: string, tree: Image): Promise<PodServer> {
  const env = envFor(web, { PORT: String(await fixture.freePort()), HOSTNAME: '127.0.0.1', SERVER_NAME: name, DATA_PORT: String(data.port) });
  return image.startPodServer(tree, podUser, env, web.readinessPath ?? '/');
}

/** Who a workload's processes run as: its runAsUser/runAsGroup, else the image's USER; its fsGroup as supplementary group. */
function identityOf(workload: Workload): PodUser {
  if (typeof workload.fsGroup !== 'number') throw new Error(`${workload.kind} ${workload.name} sets no securityContext.fsGroup`);
  const fromImage = image.imageUser(img.user);
  return { uid: workload.runAsUser ?? fromImage.uid, gid: workload.runAsGroup ?? fromImage.gid, fsGroup: workload.fsGroup };
}

type Answer = PageAnswer;

function get(server: PodServer, pathname: string): Promise<Answer> {
  return askPage(server.url, pathname);
}

/** Requests `pathname` until `done` holds or the deadline passes; returns the last answer. */
async function pollUntil(server: PodServer, pathname: string, done: (answer: Answer) => boolean): Promise<Answer> {
  const deadline = Date.now() + CROSS_SERVER_DEADLINE_MS;
  let answer = await get(server, pathname);
  while (!done(answer) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    answer = await get(server, pathname);
  }
  return answer;
}

/** Runs commands from the image tree as `user`; returns one line per failure (empty when all succeed). */
async function runAll(user: PodUser, container: Container, commands: Array<{ argv: string[] }>): Promise<string[]> {
  const failures: string[] = [];
  for (const { argv } of commands) {
    const result = await image.runAsPod(img, user, argv, envFor(container));
    if (result.code !== 0) failures.push(`uid ${user.uid}: ${argv.join(' ')} exited with ${result.code ?? result.signal}: ${(result.stderr || result.stdout).trim()}`);
  }
  return failures;
}

describe.skipIf(missing !== undefined)('the Kubernetes example in production shape: standalone image tree, non-root pods, fsGroup volume', () => {
  beforeAll(async () => {
    const log = (message: string) => console.log(`[production] ${message}`);
    const build = image.openTempDir('nvc-prod-build-');
    temps.push(build);
    const project = image.buildExampleApp(build, log);
    const [rootA, rootB] = [image.openTempDir('nvc-prod-image-'), image.openTempDir('nvc-prod-image-')];
    temps.push(rootA, rootB);
    img = image.assembleImage(project, rootA);
    imgB = image.assembleImage(project, rootB);
    // The build folder (next, sharp, swc: hundreds of MB) is not needed once the image tree exists.
    rmSync(build, { recursive: true, force: true });

    podUser = identityOf(deployment);
    jobUser = identityOf(cronJob);
    const fsGroup = podUser.fsGroup;
    otherUser = { uid: OTHER_UID, gid: OTHER_UID, fsGroup };
    if (otherUser.uid === podUser.uid || otherUser.uid === jobUser.uid) throw new Error(`the second uid ${OTHER_UID} must differ from the manifests' uids`);
    const volume = image.openTempDir('nvc-prod-volume-');
    temps.push(volume);
    cacheDir = image.makeGroupVolume(path.join(volume, 'cache'), fsGroup);

    data = await fixture.startDataServer();
    [a, b] = await Promise.all([startPod('A', img), startPod('B', imgB)]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await data?.stop();
    for (const dir of temps) rmSync(dir, { recursive: true, force: true });
  });

  it('the image tree has no node_modules above it, and holds the packed package the CLI path points to', () => {
    expect(image.nodeModulesAbove(img.workdir)).toEqual([]);
    expect(readFileSync(path.join(img.workdir, cliPrefix[1]!), 'utf8')).toMatch(/^#!\/usr\/bin\/env node/);
    const installed = JSON.parse(readFileSync(path.join(img.workdir, 'node_modules', 'next-volume-cache', 'package.json'), 'utf8')) as { version: string };
    const repo = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    expect(installed.version).toBe(repo.version);
    expect(cronJob.fsGroup).toBe(deployment.fsGroup);
  });

  it('the two pods share one volume: pages, fetch data and an optimized image written by A are served by B', async () => {
    await get(a!, '/blog/a');
    const onA = await get(a!, '/blog/a');
    const onB = await get(b!, '/blog/a');
    expect(onA.status).toBe(200);
    expect(onB.cache).toBe('HIT');
    expect(onB.render).toBe(onA.render);
    const dataA = await get(a!, '/data');
    expect(dataA.status).toBe(200);
    expect((await get(b!, '/data')).status).toBe(200);
    expect((await get(a!, '/_next/image?url=%2Fphoto.png&w=256&q=75')).status).toBe(200);
    // Tag log records for the maintenance commands to fold.
    expect((await fetch(`${a!.url}/api/revalidate?tag=data`)).status).toBe(200);
  });

  it(`the Deployment's startupProbe passes from the image tree as the pods' uid and as uid ${OTHER_UID} of the same group`, async () => {
    expect(web.commands.map((c) => c.origin)).toContain('startupProbe');
    const failures = [...(await runAll(podUser, web, web.commands)), ...(await runAll(otherUser, web, web.commands))];
    expect(failures).toEqual([]);
  });

  it(`every CronJob command runs from the image tree as the job's uid and as uid ${OTHER_UID}, with the CronJob's environment`, async () => {
    expect(maintenance.commands.length).toBeGreaterThanOrEqual(2);
    const failures = [...(await runAll(jobUser, maintenance, maintenance.commands)), ...(await runAll(otherUser, maintenance, maintenance.commands))];
    expect(failures).toEqual([]);
  });

  /** Requests `page` until it is not served as a HIT, for at most the memory tier's trust window plus a loaded machine's slack. */
  async function untilNotHit(server: PodServer, page: string): Promise<Answer> {
    const deadline = Date.now() + CROSS_SERVER_DEADLINE_MS;
    for (;;) {
      const response = await get(server, page);
      if (response.cache !== 'HIT' || Date.now() > deadline) return response;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('purge --key of a page (run from the image tree) makes each server render it again', async () => {
    const page = '/blog/a';
    const key = image.prerenderedPageKey(img, page);
    const purge = async () => {
      const result = await image.runAsPod(img, otherUser, [...cliPrefix, 'purge', '--key', key, '--json'], envFor(maintenance));
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout) as { deleted: number };
    };
    await get(a!, page);
    const before = await get(b!, page);
    expect(before.cache).toBe('HIT');

    expect((await purge()).deleted).toBeGreaterThan(0);
    // A pod's memory tier serves its copy until the copy's trust window (memoryTrustMs, by default the
    // Deployment's tag refresh interval) ends; then it finds the file gone and renders again.
    const afterOnA = await untilNotHit(a!, page);
    expect(afterOnA.cache).toBe('MISS');
    expect(afterOnA.render).not.toBe(before.render);
    expect(afterOnA.render).toMatch(/\|A\|/);
    expect((await get(b!, page)).render).toBe(afterOnA.render);

    expect((await purge()).deleted).toBeGreaterThan(0);
    const afterOnB = await untilNotHit(b!, page);
    expect(afterOnB.cache).toBe('MISS');
    expect(afterOnB.render).not.toBe(afterOnA.render);
    expect(afterOnB.render).toMatch(/\|B\|/);
  });

  it('revalidatePath on A re-renders the page on B', async () => {
    // A page no earlier test rendered: fresh for its whole revalidate window, however slow the machine.
    const page = '/blog/revalidate-path';
    await get(a!, page);
    const before = await get(b!, page);
    expect(before.cache).toBe('HIT');
    expect((await fetch(`${a!.url}/api/revalidate?path=${page}`)).status).toBe(200);
    const after = await pollUntil(b!, page, (answer) => answer.render !== before.render);
    expect(after.render).not.toBe(before.render);
    expect(after.cache).toBe('MISS');
    expect(after.render).toMatch(/\|B\|/);
  });

  it('every file and folder on the volume is group read-write and owned by the fsGroup; folders keep setgid', async () => {
    // Stopped first: a live server's temp file is briefly umask-only before its chmod.
    await Promise.all([a?.stop(), b?.stop()]);
    const { fsGroup } = podUser;
    const paths = walk(cacheDir);
    expect(paths.length).toBeGreaterThan(10);
    const wrong: string[] = [];
    for (const file of [cacheDir, ...paths]) {
      const stat = lstatSync(file);
      const mode = stat.mode & 0o7777;
      const folder = stat.isDirectory();
      const groupOk = folder ? (mode & 0o2070) === 0o2070 : (mode & 0o060) === 0o060;
      if (!groupOk || stat.gid !== fsGroup || stat.isSymbolicLink()) {
        wrong.push(`${path.relative(cacheDir, file) || '.'} ${folder ? 'dir' : 'file'} ${mode.toString(8).padStart(4, '0')} uid ${stat.uid} gid ${stat.gid}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
