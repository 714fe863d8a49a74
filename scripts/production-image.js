// The Kubernetes example (examples/kubernetes) in production shape, without Docker: the example app
// built with `output: 'standalone'` and the package installed from `npm pack`, the image's file tree
// assembled from the Dockerfile's final-stage COPY lines, and processes run from that tree as non-root
// uids with the manifests' environment and commands. Everything is derived from the example's files,
// so a change there changes what the end-to-end test runs. Used by test/e2e/production.test.ts.
'use strict';
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseAllDocuments } = require('yaml');

const REPO = path.resolve(__dirname, '..');
const EXAMPLE = path.join(REPO, 'examples', 'kubernetes');
const FIXTURE_APP = path.join(REPO, 'fixtures', 'next-app');
/** What of the fixture app the example app is made of (its own next config is replaced by the example's). */
const FIXTURE_SOURCES = ['app', 'pages', 'public', 'lib-render.js', 'lib-origin.js'];
/** `USER node` in the official node images (the Dockerfile's base image): uid and primary gid. */
const IMAGE_USERS = { node: { uid: 1000, gid: 1000 } };

// ---------------------------------------------------------------------------------------------
// The Dockerfile

/** Logical lines: comments and blanks dropped, backslash continuations joined. */
function dockerfileLines(text) {
  const lines = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // a comment inside a continuation
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      continue;
    }
    lines.push(pending + line);
    pending = '';
  }
  if (pending) lines.push(pending.trim());
  return lines;
}

/** Shell-like words: whitespace-separated, double or single quotes group. */
function words(text) {
  const out = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (let m = pattern.exec(text); m; m = pattern.exec(text)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[3]));
  return out;
}

/** `ENV A=1 B="x y"` or the legacy `ENV A 1`. */
function parseEnv(args) {
  const parts = words(args);
  if (parts.length > 0 && !parts[0].includes('=')) return { [parts[0]]: parts.slice(1).join(' ') };
  return Object.fromEntries(
    parts.map((part) => {
      const at = part.indexOf('=');
      if (at <= 0) throw new Error(`Dockerfile: cannot read ENV ${args}`);
      return [part.slice(0, at), part.slice(at + 1)];
    }),
  );
}

function parseCopy(args) {
  if (args.startsWith('[')) throw new Error(`Dockerfile: the JSON form of COPY is not supported here: ${args}`);
  const parts = words(args);
  const flags = {};
  while (parts[0]?.startsWith('--')) {
    const [name, value = 'true'] = parts.shift().slice(2).split('=');
    flags[name] = value;
  }
  if (parts.length < 2) throw new Error(`Dockerfile: COPY needs a source and a destination: ${args}`);
  return { from: flags.from, flags, sources: parts.slice(0, -1), dest: parts[parts.length - 1] };
}

/**
 * The stages of a Dockerfile: base image, name, WORKDIR, ENV, COPY, USER and CMD of each. Instructions
 * that change the file tree in a way a COPY cannot describe (RUN, ADD) are kept so the caller can refuse them.
 */
function parseDockerfile(text) {
  const stages = [];
  for (const line of dockerfileLines(text)) {
    const space = line.search(/\s/);
    const instruction = (space < 0 ? line : line.slice(0, space)).toUpperCase();
    const args = space < 0 ? '' : line.slice(space + 1).trim();
    if (instruction === 'FROM') {
      const [image, as, name] = words(args);
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, workdir: '/', env: {}, copies: [], runs: [], user: 'root', cmd: undefined });
      continue;
    }
    const stage = stages[stages.length - 1];
    if (!stage) throw new Error(`Dockerfile: ${instruction} before FROM`);
    if (instruction === 'WORKDIR') stage.workdir = path.posix.resolve(stage.workdir, args);
    else if (instruction === 'ENV') Object.assign(stage.env, parseEnv(args));
    else if (instruction === 'COPY') stage.copies.push({ ...parseCopy(args), workdir: stage.workdir });
    else if (instruction === 'USER') stage.user = args;
    else if (instruction === 'CMD') stage.cmd = args.startsWith('[') ? JSON.parse(args) : ['/bin/sh', '-c', args];
    else if (instruction === 'RUN' || instruction === 'ADD') stage.runs.push(line);
  }
  return stages;
}

/** The final stage, and the stage its COPY --from lines name. */
function imageStages(text = fs.readFileSync(path.join(EXAMPLE, 'Dockerfile'), 'utf8')) {
  const stages = parseDockerfile(text);
  const final = stages[stages.length - 1];
  if (!final) throw new Error('Dockerfile: no stage');
  if (final.runs.length) throw new Error(`the final stage changes its files with more than COPY, which this test cannot reproduce: ${final.runs.join('; ')}`);
  if (!final.cmd) throw new Error('Dockerfile: the final stage has no CMD');
  const sourceStages = new Map(stages.slice(0, -1).map((s, i) => [s.name ?? String(i), s]));
  return { final, sourceStages };
}

// ---------------------------------------------------------------------------------------------
// The manifests

function readManifests(file) {
  return parseAllDocuments(fs.readFileSync(path.join(EXAMPLE, file), 'utf8')).map((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJSON();
  });
}

function podSpecOf(doc) {
  return doc.kind === 'CronJob' ? doc.spec.jobTemplate.spec.template.spec : doc.spec.template.spec;
}

/**
 * @typedef {{ origin: 'startupProbe' | 'command', argv: string[] }} ManifestCommand
 * @typedef {{ name: string, env: Record<string, string>, commands: ManifestCommand[], readinessPath: string | undefined }} ManifestContainer
 * @typedef {{ kind: string, name: string, fsGroup: number | undefined, runAsUser: number | undefined, runAsGroup: number | undefined, containers: ManifestContainer[] }} Workload
 */

/**
 * The example's workloads: kind, the pod's identity (fsGroup, runAsUser), each container's env and commands.
 * @returns {Workload[]}
 */
function exampleWorkloads() {
  return [...readManifests('deployment.yaml'), ...readManifests('cronjob.yaml')].map((doc) => {
    const pod = podSpecOf(doc);
    const containers = pod.containers.map((c) => ({
      name: c.name,
      env: Object.fromEntries((c.env ?? []).map((e) => [e.name, String(e.value ?? '')])),
      commands: containerCommands(c),
      readinessPath: c.readinessProbe?.httpGet?.path,
    }));
    const security = pod.securityContext ?? {};
    return { kind: doc.kind, name: doc.metadata.name, fsGroup: security.fsGroup, runAsUser: security.runAsUser, runAsGroup: security.runAsGroup, containers };
  });
}

/**
 * Every command a container runs besides the image's CMD: its startupProbe and its `command`.
 * `sh -c` scripts are split into their `&&`-joined commands so each is run and reported alone.
 * @returns {ManifestCommand[]}
 */
function containerCommands(container) {
  const out = [];
  if (container.startupProbe?.exec?.command) out.push({ origin: 'startupProbe', argv: container.startupProbe.exec.command.map(String) });
  const command = container.command?.map(String);
  if (command && command[0] === 'sh' && command[1] === '-c') {
    for (const argv of splitShellScript(command[2] ?? '')) out.push({ origin: 'command', argv });
  } else if (command) out.push({ origin: 'command', argv: command });
  return out;
}

/**
 * `a && b`: the commands, in order. Anything more shell than that is refused, not guessed at.
 * @param {string} script
 * @returns {string[][]}
 */
function splitShellScript(script) {
  if (/[|;<>$`'"\\()]/.test(script.replace(/&&/g, ''))) throw new Error(`the manifest's shell script uses more than \`&&\`; teach splitShellScript: ${script}`);
  if (/&(?!&)/.test(script.replace(/&&/g, ''))) throw new Error(`the manifest's shell script has a background job: ${script}`);
  return script
    .split('&&')
    .map((part) => part.trim().split(/\s+/))
    .filter((argv) => argv[0]);
}

// ---------------------------------------------------------------------------------------------
// Building the example app

function run(command, args, options) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** `npm pack` of the repository (its built dist/) into `dest`; returns the tarball's path. */
function packRepository(dest) {
  if (!fs.existsSync(path.join(REPO, 'dist', 'bin', 'cli.js'))) throw new Error('dist/ is not built: run `npm run build` first');
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], { cwd: REPO }));
  return path.join(dest, packed.filename);
}

/** The installed version of a dependency of the repository (what its lockfile resolved). */
function repoVersion(name) {
  return JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8')).version;
}

/** The app files a user copies from an example folder: its next.config.js, and instrumentation.js where it has one. */
const EXAMPLE_APP_FILES = ['next.config.js', 'instrumentation.js'];

/**
 * The example app as a user has it: the fixture's pages, the example's next.config.js (and
 * instrumentation.js, from `exampleDir`, by default the Kubernetes example), next, react and react-dom
 * at the repository's versions and next-volume-cache from its tarball, installed by npm (from npm's
 * cache when it has them), then `next build`. Returns the project folder. `nextVersion` replaces the
 * repository's Next (the test run's NVC_NEXT_VERSION), for an example whose config that version accepts.
 * @param {string} workDir
 * @param {(message: string) => void} [log]
 * @param {string} [exampleDir]
 * @param {string} [nextVersion]
 * @returns {string}
 */
function buildExampleApp(workDir, log = () => {}, exampleDir = EXAMPLE, nextVersion = repoVersion('next')) {
  const project = path.join(workDir, 'app');
  fs.mkdirSync(project);
  for (const name of FIXTURE_SOURCES) fs.cpSync(path.join(FIXTURE_APP, name), path.join(project, name), { recursive: true });
  for (const name of EXAMPLE_APP_FILES) {
    if (fs.existsSync(path.join(exampleDir, name))) fs.copyFileSync(path.join(exampleDir, name), path.join(project, name));
  }
  if (!fs.existsSync(path.join(project, 'next.config.js'))) throw new Error(`${exampleDir} has no next.config.js`);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'example-app', private: true }, null, 2) + '\n');
  const tarball = packRepository(workDir);
  log(`installing next ${nextVersion} and ${path.basename(tarball)} into ${project} ...`);
  const dependencies = [`next@${nextVersion}`, ...['react', 'react-dom'].map((name) => `${name}@${repoVersion(name)}`)];
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...dependencies, tarball], { cwd: project, env: npmEnv() });
  log('next build (output: standalone) ...');
  run(process.execPath, [path.join(project, 'node_modules', 'next', 'dist', 'bin', 'next'), 'build'], { cwd: project, env: buildEnv() });
  return project;
}

/** npm as a user would run it: none of the `npm test` run's own npm_* settings leak into the install. */
function npmEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_(package|lifecycle|config_(save|global|prefix|workspace))/i.test(name)));
}

/** The Dockerfile's build stage sets no NEXT_VOLUME_CACHE_ variable and no NODE_ENV (vitest sets one). */
function buildEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('NEXT_VOLUME_CACHE_') && name !== 'NODE_ENV'));
  return { ...env, NEXT_TELEMETRY_DISABLED: '1' };
}

// ---------------------------------------------------------------------------------------------
// The image's file tree

/**
 * Copies what the final stage's COPY lines copy, from the built project, into `imageRoot` (which
 * stands for the image's `/`). A build stage's WORKDIR is the project folder (its `COPY . .`).
 * Returns where the image's WORKDIR is, its ENV, USER and CMD.
 */
function assembleImage(project, imageRoot, dockerfile) {
  const { final, sourceStages } = imageStages(dockerfile);
  for (const copy of final.copies) {
    const sourceRoot = copySourceRoot(copy, sourceStages);
    const dest = path.join(imageRoot, path.posix.resolve(copy.workdir, copy.dest));
    const intoFolder = copy.dest.endsWith('/') || copy.sources.length > 1;
    for (const source of copy.sources) {
      const from = path.join(project, path.posix.relative(sourceRoot, path.posix.resolve(sourceRoot, source)));
      if (!fs.existsSync(from)) throw new Error(`COPY ${copy.from ? `--from=${copy.from} ` : ''}${source}: ${from} does not exist in the build`);
      copyLikeDocker(from, dest, intoFolder);
    }
  }
  return { workdir: path.join(imageRoot, final.workdir), env: final.env, user: final.user, cmd: final.cmd };
}

/** The folder a COPY's sources are relative to or under: a named stage's WORKDIR, or the build context. */
function copySourceRoot(copy, sourceStages) {
  if (copy.from === undefined) return '/';
  const stage = sourceStages.get(copy.from);
  if (!stage) throw new Error(`COPY --from=${copy.from}: no such stage (only build stages of this Dockerfile are supported)`);
  for (const source of copy.sources) {
    const resolved = path.posix.resolve(stage.workdir, source);
    if (resolved !== stage.workdir && !resolved.startsWith(stage.workdir + '/')) throw new Error(`COPY --from=${copy.from} ${source}: outside the stage's WORKDIR ${stage.workdir}, not part of the app build`);
  }
  return stage.workdir;
}

/** Docker's COPY: a folder's contents merge into the destination folder; a file lands at the destination, or inside it. */
function copyLikeDocker(from, dest, intoFolder) {
  if (fs.statSync(from).isDirectory()) {
    fs.mkdirSync(dest, { recursive: true });
    fs.cpSync(from, dest, { recursive: true, force: true, verbatimSymlinks: true });
  } else {
    const target = intoFolder ? path.join(dest, path.basename(from)) : dest;
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(from, target);
  }
}

/** The `node_modules` folders in `dir`'s ancestors: Node would resolve missing packages from them. */
function nodeModulesAbove(dir) {
  const found = [];
  for (let parent = path.dirname(dir); ; parent = path.dirname(parent)) {
    if (fs.existsSync(path.join(parent, 'node_modules'))) found.push(path.join(parent, 'node_modules'));
    if (parent === path.dirname(parent)) return found;
  }
}

// ---------------------------------------------------------------------------------------------
// Processes as a pod runs them

/** The image's USER as uid and primary gid (the pods' identity when the manifest sets no runAsUser). */
function imageUser(user) {
  const numeric = /^(\d+)(?::(\d+))?$/.exec(user);
  if (numeric) return { uid: Number(numeric[1]), gid: Number(numeric[2] ?? 0) };
  const known = IMAGE_USERS[user];
  if (known === undefined) throw new Error(`the image's USER ${user} has no known uid; add it to IMAGE_USERS`);
  return known;
}

/** Why a pod cannot be imitated here, or undefined: setpriv needs root. */
function podsUnavailable() {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return "needs root (setpriv to switch to the pods' uids)";
  if (spawnSync('setpriv', ['--version']).status !== 0) return 'setpriv (util-linux) is not installed';
  return undefined;
}

/**
 * The argv that runs `argv` as a pod's process does: `uid`, primary group `gid`, the pod's fsGroup as
 * supplementary group, and a container runtime's default umask 022. No user: as this process's user.
 */
function asPodUser(user, argv) {
  if (!user) return argv;
  const { uid, gid, fsGroup } = user;
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, `--groups=${fsGroup}`, '--', 'sh', '-c', 'umask 022 && exec "$@"', 'sh', ...argv];
}

/**
 * The environment a container sees: the image's ENV, then the manifest's env over it, then the
 * test's adaptations (paths and ports that differ outside a cluster). PATH finds this machine's node.
 */
function podEnv(imageEnv, manifestEnv, adaptations) {
  return { PATH: `${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`, ...imageEnv, ...manifestEnv, ...adaptations };
}

/** Runs one command in the image's WORKDIR as a pod user; resolves with its exit and output. */
function runAsPod(image, user, argv, env, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const [command, ...args] = asPodUser(user, argv);
    const child = spawn(command, args, { cwd: image.workdir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Starts the image's CMD (`node server.js`) as a pod user; resolves once `readinessPath` answers 200. */
async function startPodServer(image, user, env, readinessPath, timeoutMs = 60_000) {
  const [command, ...args] = asPodUser(user, image.cmd);
  const child = spawn(command, args, { cwd: image.workdir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const url = `http://${env.HOSTNAME}:${env.PORT}`;
  const stop = () => stopChild(child);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${image.cmd.join(' ')} exited (${child.exitCode ?? child.signalCode}):\n${output}`);
    const status = await fetch(url + readinessPath).then(
      (res) => res.status,
      () => 0,
    );
    if (status === 200) return { url, output: () => output, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${image.cmd.join(' ')} not ready on ${url}${readinessPath} within ${timeoutMs} ms (last status ${status}):\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The cache key Next uses at run time for a prerendered App Router page (`/route-cache/APP_PAGE/<hash>/$/...`):
 * `next build` records it in the page's `.meta` file, which the image carries in `.next/server`.
 */
function prerenderedPageKey(image, route) {
  const meta = JSON.parse(fs.readFileSync(path.join(image.workdir, '.next', 'server', 'app', `${route === '/' ? '/index' : route}.meta`), 'utf8'));
  const key = meta.routeCache?.key;
  if (typeof key !== 'string') throw new Error(`no routeCache.key in the .meta of ${route}`);
  return key;
}

/** SIGTERM (a pod's graceful stop), SIGKILL if it has not exited within 10 s. */
function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Extracts a tarball from `npm pack` into `dest` (npm's layout: `dest/package/`); returns that folder. */
function extractTarball(tarball, dest) {
  execFileSync('tar', ['-xzf', tarball, '-C', dest]);
  return path.join(dest, 'package');
}

/** A fresh folder under the system temp dir that other uids can traverse (mkdtemp makes 0700). */
function openTempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** The shared volume as a pod with `fsGroup` gets it: owned by root:<fsGroup>, mode 2775. */
function makeGroupVolume(dir, fsGroup) {
  fs.mkdirSync(dir);
  fs.chownSync(dir, 0, fsGroup);
  fs.chmodSync(dir, 0o2775);
  return dir;
}

module.exports = {
  EXAMPLE,
  assembleImage,
  buildExampleApp,
  exampleWorkloads,
  imageStages,
  imageUser,
  makeGroupVolume,
  nodeModulesAbove,
  openTempDir,
  packRepository,
  parseDockerfile,
  podEnv,
  podsUnavailable,
  prerenderedPageKey,
  runAsPod,
  splitShellScript,
  startPodServer,
  extractTarball,
};
