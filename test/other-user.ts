import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, runChild, tempDir, type ChildResult } from './helpers';

/**
 * Runs child processes as other users (nobody, a pod's uid) without depending on where the
 * checkout lives. The checkout may sit in a folder only root can enter (`mktemp -d` makes 0700, as
 * do many CI workspaces), so those children run from a world-readable copy of everything they
 * load, under os.tmpdir(): test/children, dist/ and the library's runtime dependencies, laid out as
 * in the checkout (a script in test/children requires ../../dist/lib). One copy per test file,
 * removed with the file's temp folders.
 */

const AS_NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];

let staged: string | undefined;

/** The world-readable copy of the checkout's runnable parts (made on first use in a test file). */
export function stagedCheckout(): string {
  if (staged !== undefined && existsSync(staged)) return staged;
  const root = tempDir('nvc-staged-');
  const copy = (relative: string) => cpSync(path.join(REPO, relative), path.join(root, relative), { recursive: true });
  copy('test/children');
  copy('dist');
  for (const dir of runtimePackageDirs()) copy(path.relative(REPO, dir));
  openToEveryone(root);
  staged = root;
  return root;
}

/** Where a process run as another user finds a file of the checkout (its staged copy); any other path as it is. */
export function forOtherUsers(file: string): string {
  const relative = path.relative(REPO, file);
  if (relative.startsWith('..') || path.isAbsolute(relative)) return file;
  return path.join(stagedCheckout(), relative);
}

/** Runs test/children/`script` as nobody (setpriv) from the staged copy. */
export async function runChildAsNobody(script: string, args: string[]): Promise<ChildResult> {
  const stagedScript = forOtherUsers(path.join(REPO, 'test/children', script));
  assertNobodyCanRead([stagedScript, forOtherUsers(path.join(REPO, 'dist/lib/index.js'))]);
  return runChild(stagedScript, args, {}, 'setpriv', [...AS_NOBODY, process.execPath]);
}

/**
 * The installed folders of the library's runtime dependencies and of theirs, found as Node finds
 * them (nearest node_modules first). Only top-level ones are returned: a nested one is copied
 * along with the package it sits in.
 */
function runtimePackageDirs(): string[] {
  const found = new Set<string>();
  const visit = (from: string, name: string): void => {
    const dir = installedDir(from, name);
    if (dir === undefined || found.has(dir)) return; // an optional dependency may be absent
    found.add(dir);
    for (const dependency of dependencyNames(dir)) visit(dir, dependency);
  };
  for (const dependency of dependencyNames(REPO)) visit(REPO, dependency);
  return [...found].filter(
    (dir) =>
      path
        .relative(REPO, dir)
        .split(path.sep)
        .filter((part) => part === 'node_modules').length === 1,
  );
}

function installedDir(from: string, name: string): string | undefined {
  for (let dir = from; dir.startsWith(REPO); dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
  }
  return undefined;
}

function dependencyNames(packageDir: string): string[] {
  const manifest = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
  return Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies });
}

/** Folders 0755 and files readable by all, whatever umask the checkout was made with. */
function openToEveryone(dir: string): void {
  chmodSync(dir, 0o755);
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    const stats = lstatSync(full);
    if (stats.isDirectory()) openToEveryone(full);
    else if (stats.isFile()) chmodSync(full, (stats.mode & 0o777) | 0o444);
  }
}

/**
 * Fails with the cause when this machine cannot run a process as nobody that reads the staged
 * files, so that an environment problem is never reported as a failure of the library.
 */
function assertNobodyCanRead(files: string[]): void {
  const probe = "for (const f of process.argv.slice(1)) require('node:fs').accessSync(f, require('node:fs').constants.R_OK)";
  const result = spawnSync('setpriv', [...AS_NOBODY, process.execPath, '-e', probe, ...files], { encoding: 'utf8' });
  if (result.error === undefined && result.status === 0) return;
  // The probe's stack trace says nothing useful: its error line does.
  const errorLine = result.stderr.split('\n').find((line) => line.startsWith('Error')) ?? result.stderr.trim();
  const cause = result.error?.message ?? `exit ${result.status ?? result.signal}: ${errorLine}`;
  throw new Error(
    `this environment cannot run a child as nobody (${cause}). It needs setpriv, the user nobody and group nogroup, ` + `a node binary nobody may run (${process.execPath}) and a temp folder nobody may enter (${os.tmpdir()}; set TMPDIR).`,
  );
}
