/**
 * The hostile volume (issue 14): real symlinks, FIFOs, sparse files, `.nfs*` and odd names, another
 * UID's 0600 files, future-dated entries and locks, and forged files, planted in a cache root that a
 * healthy writer and running replicas use. For each case:
 *  - a folder outside the root, full of files named like the library's own, is byte-for-byte
 *    unchanged after every command and after the handler's own get/set/revalidateTag;
 *  - gets answer within the deadline, peak RSS stays bounded (VmHWM from /proc/<pid>/status);
 *  - new and running replicas apply a healthy writer's invalidation and keep serving what the
 *    hostile files do not touch;
 *  - every process exits by itself once its work is done.
 * Replicas and CLI runs are child processes loading the build under test: NVC_DIST=<dist folder>
 * points the whole file at another build (how it was shown to fail before the restructuring).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, tempDir, waitFor } from './helpers';
import {
  age,
  appDir,
  chownTree,
  changes,
  DAY_MS,
  digest,
  DIST,
  entryPath,
  everyCommand,
  fifoAt,
  fileOfOtherUser,
  forgedEntry,
  forgeImage,
  handMadeEntry,
  logLine,
  sparseFile,
  GET_DEADLINE_MS,
  hashes,
  keyApartFrom,
  killChildren,
  linkOut,
  PEAK_RSS_MIB,
  rawPathOf,
  Replica,
  runCommands,
  shardOf,
  sidecarPath,
  writeFileIn,
  type CommandsRun,
  type RunAs,
  type Kind,
} from './hostile-rig';

beforeAll(() => hashes.loadHasher());
// Children of a failed case are killed at the end (cases run concurrently: another case's children may still work).
afterAll(() => killChildren());

const A = 'page-a';
const B = 'page-b';
const FB = 'fetch-b';
const HOUR_MS = 3_600_000;
const started = performance.now();
/** Phase timings with NVC_HOSTILE_DEBUG=1 (the file must stay within about a minute). */
function phase(name: string): void {
  if (process.env.NVC_HOSTILE_DEBUG) console.log(`[${Math.round(performance.now() - started)} ms] ${name}`);
}

/** What every app holds: a healthy writer's entries and images, each with the marker a get must return. */
interface Stored {
  key: string;
  kind: Kind;
  tags: string[];
  marker: string;
}
type Stores = Record<string, Stored>;
const page = (key: string, marker: string, tags: string[]): Stored => ({ key, kind: 'page', tags, marker });
/** Victims (entries and images a link will hide) on first-level shards apart from each other and from B and FB. */
const VICTIMS = ['v1', 'v2', 'v3'];
const IMAGES = ['i1', 'i2', 'i3'];

function storedKeys(): Stores {
  const taken = [A, B, FB];
  const pick = (prefix: string): string => {
    const key = keyApartFrom(prefix, taken);
    taken.push(key);
    return key;
  };
  const stored: Stores = { b: page(B, 'B', ['tb']), fb: { key: FB, kind: 'fetch', tags: ['tb'], marker: 'FB' } };
  for (const name of VICTIMS) stored[name] = page(pick(`victim-${name}`), name.toUpperCase(), ['tv']);
  const images: string[] = [];
  for (const name of IMAGES) {
    const key = keyApartFrom(`image-${name}`, images);
    images.push(key);
    stored[name] = { key, kind: 'image', tags: [], marker: name.toUpperCase() };
  }
  return stored;
}

interface Target {
  root: string;
  app: string;
  /** Names (in storedKeys) the hostile files make unservable; everything else must be served. */
  lost: string[];
  /** Serving is not judged (a root whose marker a new replica cannot read: it refuses the root, a running one has it open). */
  unjudged?: boolean;
}

/** What a healthy writer puts in an app before anything hostile happens, and an older build's namespace. */
async function fill(writer: Replica, t: Target, stored: Stores): Promise<void> {
  await writer.set(t.root, t.app, A, 'A', ['ta']);
  for (const s of Object.values(stored)) await writer.set(t.root, t.app, s.key, s.marker, s.tags, s.kind);
  expect((await writer.revalidate(t.root, t.app, ['t-early'])).ok).toBe(true);
  writeFileIn(entryPath(t.root, t.app, 'old-page', 'build-old'), forgedEntry('old-page', 'OLD'));
  const builds = path.join(appDir(t.root, t.app), 'builds');
  writeFileIn(path.join(builds, 'build-old'), '{}\n');
  age(path.join(builds, 'build-old'), Date.now() - 2 * DAY_MS);
  writeFileIn(path.join(builds, 'build-new'), '{}\n');
}

/** Every get of a replica, timed: none may serve what a link led to, each answers within the deadline. */
class Observer {
  readonly times: number[] = [];
  constructor(readonly replica: Replica) {}

  async get(t: Target, key: string, kind: Kind = 'page', tags: string[] = []): Promise<string | null> {
    const got = await this.replica.get(t.root, t.app, key, kind, tags);
    this.times.push(got.ms);
    expect(got.marker, `${t.app}: ${key} was read through a link`).not.toBe('OUTSIDE');
    return got.marker;
  }

  /**
   * The healthy writer's invalidation of `ta` reaches this replica (page-a becomes a miss) and
   * what the case leaves alone is still served.
   */
  async seesHealthyState(t: Target, stored: Stores): Promise<void> {
    const label = `${t.app} in ${path.basename(t.root)}`;
    if (t.unjudged) {
      for (const s of Object.values(stored)) await this.get(t, s.key, s.kind, s.tags);
      return;
    }
    expect(await waitFor(async () => (await this.get(t, A)) === null, 5000), `${label}: the invalidation of ta is applied`).toBe(true);
    for (const [name, s] of Object.entries(stored)) {
      const want = t.lost.includes(name) ? null : s.marker;
      const seen = await waitFor(async () => (await this.get(t, s.key, s.kind, s.tags)) === want, want === null ? 0 : 5000);
      expect(seen, `${label}: ${name} (${s.key}) should be ${want === null ? 'a miss' : 'served'}`).toBe(true);
    }
  }

  expectWithinDeadline(): void {
    expect(Math.max(...this.times), 'slowest get (ms)').toBeLessThan(GET_DEADLINE_MS);
  }
}

/** Asserts that a CLI run left the watched paths unchanged after every command, stayed bounded, and exited. */
function expectHarmless(run: CommandsRun, label: string): void {
  if (process.env.NVC_HOSTILE_DEBUG) for (const r of run.results) console.log(`${r.code} ${r.ms}ms ${r.argv.join(' ')} ${r.err.slice(0, 300)}`);
  expect(run.hung, `${label}: this command did not return`).toBeUndefined();
  for (const r of run.results) {
    const diff = r.watched === 'unchanged' ? [] : changes(run.before, r.watched);
    expect(diff, `${label}: \`${r.argv.join(' ')}\` (exit ${r.code}) changed watched files`).toEqual([]);
  }
  expect(run.peakRssMiB, `${label}: peak RSS of the CLI process (MiB)`).toBeLessThan(PEAK_RSS_MIB);
  expect(run.exited, `${label}: the CLI process exits once its work is done`).toBe(true);
}

async function expectReplicasDone(replicas: Replica[]): Promise<void> {
  for (const replica of replicas) expect(replica.peakRssMiB(), 'peak RSS of a replica (MiB)').toBeLessThan(PEAK_RSS_MIB);
  for (const replica of replicas) expect(await replica.finish(), 'a replica exits once its work is done').toBe(true);
}

/** Runs the setup commands (a compaction, so that snapshots exist) and checks they succeeded. */
async function compactAll(targets: Target[], env: NodeJS.ProcessEnv = {}, as?: RunAs): Promise<void> {
  const run = await runCommands(
    targets.map((t) => ['compact', '--dir', t.root, '--app', t.app]),
    [],
    { env, as },
  );
  for (const r of run.results) expect(r.code, `${r.argv.join(' ')}: ${r.err}`).toBe(0);
}

/** Runs every command on every target, in two child processes at once (the file has a time budget). */
async function runEverywhere(targets: Target[], key: string, watch: string[], env: NodeJS.ProcessEnv = {}): Promise<CommandsRun[]> {
  const half = Math.ceil(targets.length / 2);
  const batches = [targets.slice(0, half), targets.slice(half)].filter((b) => b.length > 0);
  return Promise.all(
    batches.map((batch) =>
      runCommands(
        batch.flatMap((t) => everyCommand(t.root, t.app, key)),
        watch,
        { env },
      ),
    ),
  );
}

/** The results of the commands a run made on one target. */
function resultsFor(runs: CommandsRun[], t: Target): CommandsRun['results'] {
  return runs.flatMap((r) => r.results).filter((r) => r.argv.includes(t.root) && r.argv[r.argv.indexOf('--app') + 1] === t.app);
}

function isLink(file: string): boolean {
  return existsSync(path.dirname(file)) && lstatSync(path.dirname(file)).isDirectory() && readdirSync(path.dirname(file)).includes(path.basename(file)) && lstatSync(file).isSymbolicLink();
}

// ---- symlinks --------------------------------------------------------------------------------

interface LinkCase {
  name: string;
  /** The paths replaced by links, in one app's folder. */
  at: (root: string, app: string, stored: Stores) => string[];
  lost: string[];
}

const inApp =
  (...parts: string[]) =>
  (root: string, app: string): string[] => [path.join(appDir(root, app), ...parts)];
const ENTRIES = ['b', 'fb', ...VICTIMS];

/**
 * A link at each level of an app's tree. Folders the library creates get an app each; links that
 * leave the rest of the app usable share one ('files'), each hiding its own victim.
 */
const LINK_CASES: LinkCase[] = [
  { name: 'app', at: inApp(), lost: [...ENTRIES, ...IMAGES] },
  { name: 'entries', at: inApp('entries'), lost: ENTRIES },
  { name: 'entries-shared', at: inApp('entries', 'shared'), lost: ENTRIES },
  // Tag folders that cannot be used: no entry can be judged, so none is served, by any replica.
  { name: 'tags', at: inApp('tags'), lost: ENTRIES },
  { name: 'tags-inval', at: inApp('tags', 'inval'), lost: ENTRIES },
  { name: 'tags-members', at: inApp('tags', 'members'), lost: [] },
  { name: 'writers', at: inApp('writers'), lost: [] },
  { name: 'builds', at: inApp('builds'), lost: [] },
  { name: 'locks', at: inApp('locks'), lost: [] },
  { name: 'quarantine', at: inApp('quarantine'), lost: [] },
  { name: 'images', at: inApp('images'), lost: IMAGES },
  { name: 'images-shared', at: inApp('images', 'shared'), lost: IMAGES },
  {
    name: 'files',
    at: (r, a, s) => {
      const app = (...parts: string[]): string => path.join(appDir(r, a), ...parts);
      return [
        path.dirname(shardOf(r, a, 'entries', s.v1!.key)),
        shardOf(r, a, 'entries', s.v2!.key),
        entryPath(r, a, s.v3!.key),
        shardOf(r, a, 'images', s.i1!.key),
        sidecarPath(r, a, s.i2!.key),
        rawPathOf(sidecarPath(r, a, s.i3!.key)),
        app('entries', 'build-old'),
        app('tags', 'head'),
        app('tags', 'snapshot'),
        app('tags', 'members.snapshot'),
        app('tags', 'inval', 'planted-1.000001.log'),
        app('writers', 'planted-writer'),
        app('builds', 'build-old'),
        app('seeded'),
      ];
    },
    lost: [...VICTIMS, ...IMAGES],
  },
];

/** One root with an app per link case, and two roots whose own top level is a link (apps/, the marker). */
function linkRoots(): { outside: string; targets: Target[]; stored: Stores } {
  const base = tempDir('nvc-hostile-links-');
  const [outside, root, linkedApps, linkedMarker] = ['outside', 'cache', 'cache-apps-link', 'cache-marker-link'].map((name) => path.join(base, name)) as [string, string, string, string];
  for (const dir of [outside, root, linkedApps, linkedMarker]) mkdirSync(dir);
  const stored = storedKeys();
  const everything = Object.keys(stored);
  const targets: Target[] = [...LINK_CASES.map((c) => ({ root, app: `l-${c.name}`, lost: c.lost })), { root: linkedApps, app: 'default', lost: everything }, { root: linkedMarker, app: 'default', lost: everything, unjudged: true }];
  return { outside, targets, stored };
}

interface Planted {
  target: Target;
  inside: string;
}

/** Replaces every case's paths with links to copies (plus bait) outside; returns what was replaced below an app folder. */
function plantLinks(targets: Target[], outside: string, stored: Stores): Planted[] {
  const planted: Planted[] = [];
  for (const c of LINK_CASES) {
    const target = targets.find((t) => t.app === `l-${c.name}`)!;
    c.at(target.root, target.app, stored).forEach((inside, i) => {
      linkOut(inside, outside, `${c.name}-${i}`);
      // A snapshot replaced by a link may have held invalidations: entries older than the link are
      // expired. Planted an hour ago, it hides nothing written since.
      if (inside.endsWith('snapshot')) age(inside, Date.now() - HOUR_MS);
      if (c.name !== 'app') planted.push({ target, inside });
    });
  }
  const [linkedApps, linkedMarker] = targets.slice(-2).map((t) => t.root) as [string, string];
  linkOut(path.join(linkedApps, 'apps'), outside, 'root-apps');
  linkOut(path.join(linkedMarker, 'next-volume-cache.json'), outside, 'root-marker');
  return planted;
}

/** A replica's own writes (sets of both kinds, an invalidation) with the links in place. */
async function writeThrough(replica: Replica, t: Target): Promise<void> {
  await replica.set(t.root, t.app, 'page-new', 'NEW', ['tn']);
  await replica.set(t.root, t.app, 'img-new', 'IMG-NEW', [], 'image');
  await replica.revalidate(t.root, t.app, ['tn']);
}

/**
 * verify --repair quarantines every link below an app's folder (never following it; the outside
 * digest shows its target untouched), after which every command on that app works again.
 */
function expectLinksRepaired(runs: CommandsRun[], planted: Planted[]): void {
  for (const t of new Set(planted.map((p) => p.target))) {
    const results = resultsFor(runs, t);
    const repair = results.findIndex((r) => r.argv.includes('--repair'));
    expect(results[repair]!.code, `${t.app}: verify --repair: ${results[repair]!.err}`).toBeLessThanOrEqual(3);
    for (const r of results.slice(repair + 1)) expect(r.code, `${t.app}: ${r.argv[0]} after verify --repair: ${r.err}`).toBe(0);
  }
  for (const { inside } of planted) expect(isLink(inside), `${inside} was quarantined`).toBe(false);
}

// ---- one root, one app, one hostile case ---------------------------------------------------------

interface Scenario {
  root: string;
  outside: string;
  target: Target;
  stored: Stores;
  writer: Replica;
  running: Observer;
  /** Options of every replica (a secret...). */
  replica: Record<string, unknown>;
  /** Environment of every CLI run. */
  env: NodeJS.ProcessEnv;
  as: RunAs | undefined;
}

interface ScenarioOptions {
  replica?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  /** Replicas and commands run as this user (the tree is given to it first). */
  as?: RunAs;
}

/**
 * A root whose app a healthy writer filled and compacted, a replica running on it, and the links
 * every case has besides its own hostile files: entries/build-old (an old build gc --keep-builds 1
 * drops) and quarantine/ (where verify --repair moves strangers) lead to a folder outside the root.
 */
async function openScenario(name: string, options: ScenarioOptions = {}): Promise<Scenario> {
  const base = tempDir(`nvc-hostile-${name}-`);
  const root = path.join(base, 'cache');
  const outside = path.join(base, 'outside');
  for (const dir of [root, outside]) mkdirSync(dir);
  if (options.as) {
    chownTree(base, options.as);
    chmodSync(base, 0o755);
  }
  const replica = options.replica ?? {};
  const target: Target = { root, app: 'default', lost: [] };
  const stored = storedKeys();
  phase(`${name}: start`);
  const writer = await Replica.start(replica, {}, options.as);
  await fill(writer, target, stored);
  await compactAll([target], options.env, options.as);
  const running = new Observer(await Replica.start(replica, {}, options.as));
  for (const s of Object.values(stored)) expect(await running.get(target, s.key, s.kind, s.tags)).toBe(s.marker);
  linkOut(path.join(appDir(root, 'default'), 'entries', 'build-old'), outside, 'build-old');
  linkOut(path.join(appDir(root, 'default'), 'quarantine'), outside, 'quarantine');
  if (options.as) chownTree(outside, options.as);
  return { root, outside, target, stored, writer, running, replica, env: options.env ?? {}, as: options.as };
}

interface CheckOptions {
  /** What the case's hostile files make unservable. */
  lost: string[];
  /** Paths inside the root that must stay byte-for-byte as they are (.nfs files, another UID's files). */
  watch?: string[];
  /** Commands run before the usual ones. */
  first?: string[][];
  /** Entries both replicas must come to miss (invalidated by a record the case hides among its hostile files). */
  misses?: Stored[];
}

/**
 * With the case's hostile files in place: a new replica starts, the healthy writer invalidates
 * `ta`, both replicas apply it and serve what the case leaves alone, every replica writes, every
 * command runs; the outside folder (and `watch`) never changes, RSS stays bounded, every process
 * exits. Returns the CLI run for the case's own checks.
 */
async function checkScenario(s: Scenario, options: CheckOptions): Promise<CommandsRun> {
  phase(`${s.root}: planted`);
  const watch = [s.outside, ...(options.watch ?? [])];
  const before = digest(watch);
  const fresh = new Observer(await Replica.start(s.replica, {}, s.as));
  await s.writer.revalidate(s.root, 'default', ['ta']);
  const target = { ...s.target, lost: options.lost };
  for (const observer of [s.running, fresh]) {
    await observer.seesHealthyState(target, s.stored);
    for (const m of options.misses ?? []) expect(await waitFor(async () => (await observer.get(target, m.key, m.kind, m.tags)) === null, 5000), `${m.key} becomes a miss`).toBe(true);
  }
  const replicas = [s.writer, s.running.replica, fresh.replica];
  for (const replica of replicas) await writeThrough(replica, s.target);
  expect(changes(before, digest(watch)), 'the handler changed files it must not touch').toEqual([]);
  phase(`${s.root}: replicas checked`);
  s.running.expectWithinDeadline();
  fresh.expectWithinDeadline();
  const run = await runCommands([...(options.first ?? []), ...everyCommand(s.root, 'default', s.stored.v1!.key)], watch, { env: s.env, as: s.as });
  expectHarmless(run, path.basename(path.dirname(s.root)));
  await expectReplicasDone(replicas);
  return run;
}

/** The first result of a command (by its name and an optional flag) in a run. */
function resultOf(run: CommandsRun, command: string, flag?: string): CommandsRun['results'][number] {
  const found = run.results.find((r) => r.argv[0] === command && (flag === undefined || r.argv.includes(flag)));
  if (!found) throw new Error(`no ${command} ${flag ?? ''} in the run`);
  return found;
}

// ---- what the cases plant ----------------------------------------------------------------------------

const GiB = 1024 ** 3;
const MB = 1000 * 1000;
const YEAR_MS = 365 * DAY_MS;
/** Names that would drive a terminal if printed raw. */
const ESC = '\u001b';
const CONTROL_NAMES = [`${ESC}[31mred${ESC}[0m`, `${ESC}]0;owned\u0007`, 'line\nbreak'];
/** Replicas and commands of the other-UID case run as this pod user; the unreadable files belong to another. */
const POD = { uid: 1000, gid: 1000 };
const OTHER_UID = 65534;
const canSetpriv = isRoot();
if (!canSetpriv) console.log(`SKIP hostile volume, another UID's files: needs root for setpriv${process.env.CI === 'true' ? ' (CI=true: failing instead)' : ''}`);
const SECRET = 'hostile-volume-secret-0123456789';

// ---- the cases, concurrently: each has its own root, children and outside folder -----------------------------

describe.concurrent('a hostile volume (issue 14)', () => {
  it('symlinks at every level are never followed by gets, sets, revalidateTag or any command; replicas keep serving what they do not hide', async () => {
    const { outside, targets, stored } = linkRoots();
    phase('links: start');
    const writer = await Replica.start();
    for (const t of targets) await fill(writer, t, stored);
    await compactAll(targets);
    const running = new Observer(await Replica.start());
    for (const t of targets) expect(await running.get(t, B)).toBe('B');
    const planted = plantLinks(targets, outside, stored);
    const before = digest([outside]);
    phase('links: planted');

    const fresh = new Observer(await Replica.start());
    for (const t of targets) await writer.revalidate(t.root, t.app, ['ta']);
    for (const observer of [running, fresh]) for (const t of targets) await observer.seesHealthyState(t, stored);
    const replicas = [writer, running.replica, fresh.replica];
    for (const replica of replicas) for (const t of targets) await writeThrough(replica, t);
    expect(changes(before, digest([outside])), 'the handler changed files outside the root').toEqual([]);
    running.expectWithinDeadline();
    fresh.expectWithinDeadline();
    phase('links: replicas checked');

    const runs = await runEverywhere(targets, stored.v1!.key, [outside]);
    phase('links: commands run');
    for (const run of runs) expectHarmless(run, 'symlinks');
    expectLinksRepaired(runs, planted);
    await expectReplicasDone(replicas);
  });

  it('FIFOs where the library reads are "not a file": misses or skipped, never a blocked thread; every process exits', async () => {
    const s = await openScenario('fifo');
    const app = (...parts: string[]): string => path.join(appDir(s.root, 'default'), ...parts);
    fifoAt(app('tags', 'head'));
    // A snapshot that is not a file may have held invalidations: entries older than it are expired (it is an hour old).
    fifoAt(app('tags', 'snapshot'), HOUR_MS);
    fifoAt(app('tags', 'members.snapshot'));
    fifoAt(app('tags', 'watermark'));
    // Named like segments, planted now: skipped, not a reason to expire anything.
    fifoAt(app('tags', 'inval', 'fifo-writer.000001.log'));
    fifoAt(app('tags', 'members', 'fifo-writer.000001.log'));
    fifoAt(app('writers', 'fifo-writer'));
    fifoAt(app('builds', 'build-new'));
    fifoAt(entryPath(s.root, 'default', s.stored.v1!.key));
    fifoAt(path.join(shardOf(s.root, 'default', 'entries', s.stored.v2!.key), `.tmp.${hashes.hashKey(s.stored.v2!.key)}.entry.w.0a0b0c`), 2 * HOUR_MS);
    fifoAt(sidecarPath(s.root, 'default', s.stored.i1!.key));
    fifoAt(rawPathOf(sidecarPath(s.root, 'default', s.stored.i2!.key)));
    // A root whose marker is a FIFO: refused by the CLI and by new replicas, without blocking.
    const fifoRoot = path.join(path.dirname(s.root), 'cache-fifo-marker');
    mkdirSync(fifoRoot);
    fifoAt(path.join(fifoRoot, 'next-volume-cache.json'));

    const run = await checkScenario(s, { lost: ['v1', 'i1', 'i2'] });
    expect(resultOf(run, 'stats').code).toBe(0);
    expect(resultOf(run, 'compact').code).toBe(0);
    const markerRun = await runCommands(
      [
        ['stats', '--dir', fifoRoot],
        ['check', '--dir', fifoRoot],
        ['gc', '--dir', fifoRoot],
      ],
      [fifoRoot],
    );
    expectHarmless(markerRun, 'fifo marker');
    const probe = await Replica.start();
    expect((await probe.get(fifoRoot, 'default', 'k')).ms).toBeLessThan(GET_DEADLINE_MS);
    await expectReplicasDone([probe]);
  });

  it('sparse files declaring huge sizes are refused before any memory is reserved for them: bounded RSS in every process, the rest of the tag log applied', async () => {
    const s = await openScenario('sparse');
    const app = (...parts: string[]): string => path.join(appDir(s.root, 'default'), ...parts);
    const now = Date.now();
    // An entry whose prefix declares 4 GiB, on a 1.5 GiB sparse file.
    const declared = handMadeEntry({ key: s.stored.v1!.key, kind: 'APP_PAGE', writtenAt: now, tags: [], value: null, parts: [] }).subarray(0, 16);
    declared.writeBigUInt64LE(BigInt(4 * GiB), 8);
    sparseFile(entryPath(s.root, 'default', s.stored.v1!.key), 1.5 * GiB, declared);
    // A sidecar declaring 4e9 bytes, its raw file a sparse 4e9-byte file.
    const i1 = s.stored.i1!;
    const hash = hashes.hashKey(i1.key);
    const raw = `${hash}.00000000deadbeef.png`;
    writeFileIn(
      sidecarPath(s.root, 'default', i1.key),
      JSON.stringify({ v: 1, key: i1.key, etag: 'e', upstreamEtag: 'u', extension: 'png', revalidate: 1, lastModified: now, size: 4e9, contentType: 'image/png', file: raw, checksum: '00000000deadbeef' }),
    );
    sparseFile(path.join(shardOf(s.root, 'default', 'images', i1.key), raw), 4e9);
    // A 10 MB header listing 5 million empty parts, checksum and all.
    const parts = handMadeEntry({ key: s.stored.v2!.key, kind: 'FETCH', writtenAt: now, tags: [], value: { kind: 'FETCH', data: { headers: {}, body: 'PARTS', url: 'u', status: 200 }, revalidate: 60 }, parts: new Array(5_000_000).fill(0) });
    writeFileIn(entryPath(s.root, 'default', s.stored.v2!.key), parts);
    // A 600 MB line in a segment, followed by a healthy record (it must still be applied).
    await s.writer.set(s.root, 'default', 'page-h', 'H', ['th']);
    const record = Buffer.from('\n' + logLine({ v: 1, tags: ['th'], s: Date.now() + 1000, e: Date.now() + 1000 }));
    sparseFile(app('tags', 'inval', 'huge-writer.000001.log'), 600 * MB + record.length, Buffer.alloc(0), record);
    // A 600 MB snapshot (an hour old: entries older than it are expired, none written since).
    sparseFile(app('tags', 'snapshot'), 600 * MB, Buffer.from('00000000 {"v":1,'));
    age(app('tags', 'snapshot'), Date.now() - HOUR_MS);
    sparseFile(app('tags', 'members.snapshot'), 600 * MB);

    // The record after the 600 MB line is applied: page-h (written before it took effect) becomes a miss.
    const run = await checkScenario(s, { lost: ['v1', 'v2', 'i1'], misses: [page('page-h', 'H', ['th'])] });
    for (const command of ['stats', 'compact', 'gc']) expect(resultOf(run, command).code, `${command} exits 0`).toBe(0);
  });

  it('.nfs files and odd names are skipped and counted by every command, never touched, and printed escaped', async () => {
    const s = await openScenario('names');
    const app = (...parts: string[]): string => path.join(appDir(s.root, 'default'), ...parts);
    const leaf = shardOf(s.root, 'default', 'entries', B);
    const nfs = [app('writers'), app('tags'), app('tags', 'inval'), app('tags', 'members'), app('builds'), app('entries'), leaf, path.dirname(leaf), shardOf(s.root, 'default', 'images', s.stored.i1!.key)].map((dir, i) => {
      const file = path.join(dir, `.nfs00000000000000${String(i).padStart(2, '0')}0000abcd`);
      writeFileIn(file, `silly-renamed ${i}`);
      age(file, Date.now() - 2 * DAY_MS);
      return file;
    });
    mkdirSync(app('builds', 'build-a b'));
    writeFileIn(app('builds', 'build-a b', 'inside'), 'x');
    writeFileIn(app('entries', 'build-a b', '00', '00', '0000000000000000.entry'), 'x');
    for (const name of CONTROL_NAMES) {
      writeFileIn(app('writers', name), 'x');
      writeFileIn(app('tags', 'inval', `${name}.000001.log`), 'x');
      writeFileIn(path.join(leaf, `${name}.entry`), 'x');
      mkdirSync(app('entries', 'shared', name));
    }

    const run = await checkScenario(s, { lost: [], watch: nfs, first: [['--json', 'stats', '--dir', s.root]] });
    const counted = JSON.parse(run.results[0]!.out) as { debris: { nfsSilly: number; foreign: number }; tagLog: { strangers: number } };
    expect(counted.debris.nfsSilly, '.nfs files in the shard trees, counted').toBeGreaterThanOrEqual(3);
    expect(counted.debris.foreign, 'odd names in the shard trees, counted').toBeGreaterThanOrEqual(CONTROL_NAMES.length * 2);
    expect(counted.tagLog.strangers, 'names in the segment folders that are not segments').toBeGreaterThanOrEqual(CONTROL_NAMES.length + 2);
    for (const command of ['stats', 'compact', 'gc', 'check']) expect(resultOf(run, command).code, `${command} exits 0: ${resultOf(run, command).err}`).toBe(0);
    const verify = resultOf(run, 'verify');
    expect(verify.code).toBe(3);
    expect(verify.out).toContain('\\u001b');
    for (const r of run.results) expect(`${r.out}${r.err}`.includes(ESC), `${r.argv[0]} printed a raw control character`).toBe(false);
    expect(resultOf(run, 'verify', '--repair').code).toBe(0);
  });

  it.skipIf(!canSetpriv && process.env.CI !== 'true')("another UID's 0600 files fail closed alike on new and running replicas, bounded by their mtime; check names them; nothing is touched", async () => {
    if (!canSetpriv) throw new Error("needs root (setpriv) to create another UID's files; CI runs as root");
    const s = await openScenario('uid', { as: POD });
    const staging = path.join(path.dirname(s.root), 'staging');
    mkdirSync(staging);
    chownTree(staging, { uid: OTHER_UID, gid: OTHER_UID });
    const app = (...parts: string[]): string => path.join(appDir(s.root, 'default'), ...parts);
    const now = Date.now();
    // A segment this pod cannot read, holding an invalidation of tb: every entry older than it is expired.
    const segment = app('tags', 'inval', 'other-pod.000001.log');
    fileOfOtherUser(staging, segment, logLine({ v: 1, tags: ['tb'], s: now, e: now }), OTHER_UID);
    fileOfOtherUser(staging, app('tags', 'members', 'other-pod.000001.log'), logLine({ v: 1, h: hashes.hashKey(B), n: 'shared', tags: ['tb'] }), OTHER_UID);
    fileOfOtherUser(staging, app('writers', 'other-pod'), '{}\n', OTHER_UID);
    fileOfOtherUser(staging, app('builds', 'build-other'), '{}\n', OTHER_UID);
    fileOfOtherUser(staging, entryPath(s.root, 'default', s.stored.v1!.key), forgedEntry(s.stored.v1!.key, 'V1'), OTHER_UID);
    fileOfOtherUser(staging, sidecarPath(s.root, 'default', s.stored.i1!.key), '{}', OTHER_UID);
    const planted = [segment, app('tags', 'members', 'other-pod.000001.log'), app('writers', 'other-pod'), app('builds', 'build-other'), entryPath(s.root, 'default', s.stored.v1!.key), sidecarPath(s.root, 'default', s.stored.i1!.key)];
    // Entries written after the unreadable segment are served; those before are not (images carry no tags).
    const mtime = lstatSync(segment).mtimeMs;
    await waitFor(() => Date.now() > mtime + 5, 1000);
    const late = [page('late-a', 'LATE-A', ['ta']), page('late-b', 'LATE-B', ['tb'])];
    for (const l of late) await s.writer.set(s.root, 'default', l.key, l.marker, l.tags);
    s.stored['late-a'] = late[0]!;
    s.stored['late-b'] = late[1]!;

    const run = await checkScenario(s, { lost: ['b', 'fb', 'v1', 'v2', 'v3', 'i1', 'late-a'], watch: planted });
    const check = resultOf(run, 'check');
    expect(check.code).toBe(1);
    expect(check.err).toContain('other-pod.000001.log');
    for (const command of ['stats', 'compact', 'gc']) expect(resultOf(run, command).code, `${command}: ${resultOf(run, command).err}`).toBe(0);
    expect(resultOf(run, 'verify').code).toBe(3);
  });

  it('future-dated entries and locks, and a forged snapshot, without a secret a future entry is a miss that gc deletes, a future lock is taken over, a snapshot cannot hide later invalidations', async () => {
    const s = await openScenario('clock');
    const app = (...parts: string[]): string => path.join(appDir(s.root, 'default'), ...parts);
    const on = ['--dir', s.root, '--app', 'default'];
    // Stamped ten years ahead (a writer's bad clock, or a forgery): it would be immune to every invalidation.
    const v1 = s.stored.v1!;
    writeFileIn(entryPath(s.root, 'default', v1.key), forgedEntry(v1.key, 'FUTURE', { tags: v1.tags, writtenAt: Date.now() + 10 * YEAR_MS }));
    // A maintenance lock dated a year ahead.
    mkdirSync(app('locks', 'maintenance.lock'));
    age(app('locks', 'maintenance.lock'), Date.now() + YEAR_MS);
    // A snapshot in the public line format claiming the writer's segment is folded far past its end.
    const segment = readdirSync(app('tags', 'inval')).find((name) => name.endsWith('.log'))!;
    writeFileIn(app('tags', 'snapshot'), logLine({ v: 1, id: 'forged', createdAt: Date.now(), tags: {}, folded: { [segment]: 1e12 }, records: 0 }));

    const run = await checkScenario(s, {
      lost: ['v1'],
      first: [
        ['compact', ...on],
        ['compact', '--wait', '--lock-stale-ms', '2000', ...on],
      ],
    });
    expect(run.results[0]!.code, 'a lock dated in the future is held at first sight').toBe(4);
    expect(run.results[1]!.code, `--wait takes it over once it has not moved for lockStaleMs: ${run.results[1]!.err}`).toBe(0);
    expect(resultOf(run, 'verify').out).toMatch(/future-dated-entry\s+1/);
    expect(resultOf(run, 'gc').out).toMatch(/stamped in the future\s+1 /);
  });

  it('forged files with a secret configured forged, foreign-sealed and moved entries, images, log lines and snapshots are misses or skipped, and reported', async () => {
    const s = await openScenario('forged', { replica: { secret: SECRET }, env: { NEXT_VOLUME_CACHE_SECRET: SECRET } });
    const app = (...parts: string[]): string => path.join(appDir(s.root, 'default'), ...parts);
    const { v1, v2, v3, i1 } = s.stored as Required<Stores>;
    // Made with the public codec: valid checksum, no seal.
    writeFileIn(entryPath(s.root, 'default', v1!.key), forgedEntry(v1!.key, 'FORGED', { tags: v1!.tags }));
    // Sealed with another secret.
    const other = await Replica.start({ secret: 'another-secret-of-sixteen-chars' });
    await other.set(s.root, 'sealed-elsewhere', v2!.key, 'FORGED', v2!.tags);
    writeFileIn(entryPath(s.root, 'default', v2!.key), readFileSync(entryPath(s.root, 'sealed-elsewhere', v2!.key)));
    // Sealed with the right secret, for another app: moved here.
    await s.writer.set(s.root, 'moved-from', v3!.key, 'FORGED', v3!.tags);
    writeFileIn(entryPath(s.root, 'default', v3!.key), readFileSync(entryPath(s.root, 'moved-from', v3!.key)));
    await expectReplicasDone([other]);
    // An image pair made by hand (valid checksum, no seal).
    rmSync(shardOf(s.root, 'default', 'images', i1!.key), { recursive: true });
    forgeImage(shardOf(s.root, 'default', 'images', i1!.key), i1!.key, Buffer.from('FORGED'));
    // A segment of unsealed lines invalidating tb, and an unsealed snapshot (an hour old) claiming everything folded.
    writeFileIn(app('tags', 'inval', 'forger.000001.log'), logLine({ v: 1, tags: ['tb'], s: Date.now(), e: Date.now() }));
    const segment = readdirSync(app('tags', 'inval')).find((name) => name !== 'forger.000001.log' && name.endsWith('.log'))!;
    writeFileIn(app('tags', 'snapshot'), logLine({ v: 1, id: 'forged', createdAt: Date.now(), tags: {}, folded: { [segment]: 1e12 }, records: 0 }));
    age(app('tags', 'snapshot'), Date.now() - HOUR_MS);

    const run = await checkScenario(s, { lost: ['v1', 'v2', 'v3', 'i1'] });
    const verify = resultOf(run, 'verify');
    expect(verify.code).toBe(3);
    expect(verify.out).toMatch(/forged-entry\s+3/);
    expect(verify.out).toMatch(/forged-image\s+1/);
    expect(verify.out).toMatch(/log-garbage\s+1/);
  });

  it('the CLI on a populated root refuses bulk purges without --yes (nothing deleted), lists them with --dry-run, refuses unsafe modes and loose integers', async () => {
    const base = tempDir('nvc-hostile-cli-');
    const root = path.join(base, 'cache');
    mkdirSync(root);
    const stored = storedKeys();
    const writer = await Replica.start();
    await fill(writer, { root, app: 'default', lost: [] }, stored);
    await expectReplicasDone([writer]);
    const on = ['--dir', root];
    const refused: string[][] = [
      ['purge', '--all', ...on],
      ['purge', '--older-than', '0', ...on],
      ['purge', '--older-than', '0s', ...on],
      ['stats', '--file-mode', '4664', ...on],
      ['stats', '--file-mode', '666', ...on],
      ['stats', '--dir-mode', '0777', ...on],
      ['stats', '--dir-mode', '6775', ...on],
      ['gc', '--keep-builds', '1e3', ...on],
      ['gc', '--keep-builds', '-1', ...on],
      ['stats', '--timeout-ms', '10abc', ...on],
      ['stats', '--concurrency', '2.5', ...on],
    ];
    const listed = [
      ['--json', 'purge', '--all', '--dry-run', ...on],
      ['--json', 'purge', '--older-than', '0', '--dry-run', ...on],
    ];
    // Nothing deleted: the entries and images stay byte for byte (leases and clock probes may be written).
    const store = [path.join(appDir(root, 'default'), 'entries'), path.join(appDir(root, 'default'), 'images')];
    const run = await runCommands([...refused, ...listed], store);
    expectHarmless(run, 'cli guards');
    for (const r of run.results.slice(0, refused.length)) expect(r.code, `${r.argv.join(' ')} is refused: ${r.out}${r.err}`).toBe(2);
    for (const r of run.results.slice(refused.length)) {
      expect(r.code).toBe(0);
      const result = JSON.parse(r.out) as { dryRun: boolean; matched: number; deleted: number };
      expect(result).toMatchObject({ dryRun: true, deleted: 0 });
      expect(result.matched, `${r.argv.join(' ')} lists what it would delete`).toBeGreaterThanOrEqual(Object.keys(stored).length);
    }
    // Modes are octal strings: a number is ambiguous (664 or 0o664?), setuid and world-writable are refused.
    const env = await runCommands([['stats', ...on]], store, { env: { NEXT_VOLUME_CACHE_FILE_MODE: '4644' } });
    expect(env.results[0]!.code).toBe(2);
    const config = createRequire(__filename)(path.join(DIST, 'lib', 'config.js')) as { resolveOptions(options: object, env: object): unknown };
    for (const fileMode of [0o664, '4664', '0666', '2664']) expect(() => config.resolveOptions({ fileMode }, {}), `fileMode ${String(fileMode)}`).toThrow(/fileMode/);
    for (const dirMode of [0o2775, '4775', '0777']) expect(() => config.resolveOptions({ dirMode }, {}), `dirMode ${String(dirMode)}`).toThrow(/dirMode/);
    expect(() => config.resolveOptions({ fileMode: '664', dirMode: '2775' }, {})).not.toThrow();
  });
});
