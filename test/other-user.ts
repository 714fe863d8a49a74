import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, runChild, type ChildResult } from './helpers';

/**
 * Runs a child process as another user (nobody) without depending on where the checkout lives.
 * The checkout may sit in a folder only root can enter (`mktemp -d` makes 0700, as do many CI
 * workspaces), so the child gets its own world-readable copy of everything it loads, under
 * os.tmpdir(): the script, dist/lib and the library's runtime dependencies, laid out as in the
 * checkout (a script in test/children requires ../../dist/lib).
 */

const AS_NOBODY = ['--reuid=nobody', '--regid=nogroup', '--clear-groups'];

/** Runs test/children/`script` as nobody (setpriv) from a staged copy, removed afterwards. */
export async function runChildAsNobody(script: string, args: string[]): Promise<ChildResult> {
  const staged = mkdtempSync(path.join(os.tmpdir(), 'nvc-as-nobody-'));
  try {
    const stagedScript = stageChild(staged, script);
    assertNobodyCanRead([stagedScript, path.join(staged, 'dist/lib/index.js')]);
    return await runChild(stagedScript, args, {}, 'setpriv', [...AS_NOBODY, process.execPath]);
  } finally {
    rmSync(staged, { recursive: true, force: true });
  }
}

function stageChild(staged: string, script: string): string {
  const copy = (relative: string) => cpSync(path.join(REPO, relative), path.join(staged, relative), { recursive: true });
  copy(path.join('test/children', script));
  copy('dist/lib');
  for (const dir of runtimePackageDirs()) copy(path.relative(REPO, dir));
  openToEveryone(staged);
  return path.join(staged, 'test/children', script);
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
