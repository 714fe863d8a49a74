#!/usr/bin/env node
/**
 * next-volume-cache: the operator CLI. A thin layer over lib/maintenance:
 * parse flags, call the library, print a table or JSON, map errors to exit
 * codes.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, OPTION_NAMES, flagNameOf, type CacheOptions } from '../lib/config';
import { SingleBar } from 'cli-progress';
import { checkRoot, compact, gc, inspect, listApps, LockHeldError, NotACacheRootError, purge, PurgeUsageError, seed, stats, verify, type WalkProgress } from '../lib/maintenance';
import { formatBytes, parseDuration } from '../lib/util/units';
import { VolumeError } from '../lib/store/volume';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  problemsFound: 3,
  lockHeld: 4,
} as const;

const EXIT_HELP = `
Exit codes:
  0  success
  1  failure (I/O error, lock lost mid-run)
  2  bad usage (unknown flag, bad value, --dir that is not a cache root)
  3  problems found (verify without --repair)
  4  the maintenance lock is held by another run (with --no-wait, the default)

Every option can also be set as NEXT_VOLUME_CACHE_<NAME> (e.g. --dir -> NEXT_VOLUME_CACHE_DIR).`;

interface GlobalFlags {
  options: CacheOptions;
  json: boolean;
}

/** The package's version, from its package.json (found upward: bin/ in the sources, dist/bin/ when built). */
function version(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'next-volume-cache' && pkg.version) return pkg.version;
  }
  return 'unknown';
}

function buildProgram(out: (text: string) => void, err: (text: string) => void): Command {
  const program = new Command('next-volume-cache')
    .description('Operate a next-volume-cache root on a shared volume')
    .version(version(), '-v, --version')
    .option('--json', 'print one JSON document instead of a table')
    .option('--all-apps', 'run the command for every app on the root (one JSON document keyed by app with --json)')
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  addCacheOptions(program);

  const waitOptions = (command: Command) =>
    command.option('--wait', 'wait for another run to release the maintenance lock').option('--no-wait', 'exit with code 4 if another run holds the lock (default)');

  waitOptions(program.command('compact').description('fold the per-writer tag logs into the snapshot and delete closed segments')).action(
    async (flags: { wait?: boolean }, command: Command) => {
      const { options, json } = globalOptions(command);
      const result = await compact(options, { wait: flags.wait ?? false });
      print(out, json, result, [
        ['segments read', result.segmentsRead],
        ['records folded', result.recordsFolded],
        ['unreadable lines skipped', result.linesSkipped],
        ['segments deleted', result.segmentsDeleted],
        ['tags in snapshot', result.tags],
        ['tags dropped (older than every entry)', result.tagsDropped],
        ['tag index: entries', result.members],
        ['tag index: entries dropped (gone)', result.membersDropped],
        ['leases of gone writers removed', result.leasesRemoved],
      ]);
    },
  );

  program
    .command('stats')
    .description('entries and bytes per kind and namespace, images, shard fan-out, tag log, debris (read-only)')
    .action(async (_flags: object, command: Command) => {
      const { options, json } = globalOptions(command);
      const result = await withProgress(json, 'stats', (progress) => stats(options, { progress }));
      const kinds = Object.entries(result.entries.byKind).map(([kind, t]): [string, string] => [`  ${kind}`, `${t.count} (${formatBytes(t.bytes)})`]);
      const namespaces = Object.entries(result.entries.byNamespace).map(([ns, t]): [string, string] => [`  namespace ${ns}`, `${t.count} (${formatBytes(t.bytes)})`]);
      print(out, json, result, [
        ['entries', `${result.entries.total.count} (${formatBytes(result.entries.total.bytes)})`],
        ...kinds,
        ...namespaces,
        ['entries past expire', result.entries.expired],
        ['unreadable entries', result.entries.unreadable],
        ['oldest entry', result.entries.oldestWrittenAt ?? '-'],
        ['newest entry', result.entries.newestWrittenAt ?? '-'],
        ['images', `${result.images.total.count} (${formatBytes(result.images.total.bytes)})`],
        ['orphan image files', `${result.images.orphans.count} (${formatBytes(result.images.orphans.bytes)})`],
        ['broken image sidecars', result.images.broken],
        ['shard folders', result.shards.folders],
        ['largest folder', `${result.shards.largest.files} files${result.shards.largest.dir ? ` (${result.shards.largest.dir})` : ''}`],
        ['temp files', `${result.debris.temp.count} (${formatBytes(result.debris.temp.bytes)})`],
        ['foreign files', result.debris.foreign],
        ['.nfs files', result.debris.nfsSilly],
        ...result.builds.map((b): [string, string] => [`build ${b.namespace}`, `last served ${b.servedAt ? new Date(b.servedAt).toISOString() : 'never'}${b.live ? ' (live)' : ''}`]),
        ['tag log segments', `${result.tagLog.segments} (${formatBytes(result.tagLog.segmentBytes)})`],
        ['tag index segments', `${result.tagLog.memberSegments} (${formatBytes(result.tagLog.memberSegmentBytes)})`],
        ['tags in snapshot', `${result.tagLog.snapshotTags} (${result.tagLog.snapshotRecords} records folded)`],
        ['last compaction', result.tagLog.lastCompaction ?? 'never'],
        ['writers (alive)', `${result.tagLog.writers} (${result.tagLog.writersAlive})`],
      ]);
    });

  waitOptions(
    program
      .command('verify')
      .description('check every entry, image pair and log segment; exit 3 if problems are found (without --repair)')
      .option('--repair', 'delete what is broken (corrupt entries, old temp files and orphans, broken image pairs), quarantine foreign files, compact')
      .option('--debris-age <duration>', 'temp files and orphans younger than this are left alone', '1h'),
  ).action(async (flags: { repair?: boolean; debrisAge: string; wait?: boolean }, command: Command) => {
    const { options, json } = globalOptions(command);
    const debrisAgeMs = durationFlag('--debris-age', flags.debrisAge);
    const report = await withProgress(json, 'verify', (progress) => verify(options, { repair: flags.repair ?? false, debrisAgeMs }, { wait: flags.wait ?? false, progress }));
    const rows: Array<[string, string | number]> = [
      ['entries checked', report.checked.entries],
      ['images checked', report.checked.images],
      ['in flight (too young to judge)', report.inFlight],
    ];
    for (const [problem, count] of Object.entries(report.problems)) {
      if (count > 0) rows.push([problem, flags.repair ? `${count} (repaired ${report.repaired[problem as keyof typeof report.repaired]})` : count]);
    }
    print(out, json, report, rows);
    const unrepaired = Object.entries(report.problems).some(([p, n]) => n > (flags.repair ? report.repaired[p as keyof typeof report.repaired] : 0));
    if (unrepaired) throw new ExitCode(EXIT.problemsFound);
  });

  waitOptions(
    program
      .command('gc')
      .description('delete expired and invalidated entries, debris, and enforce byte budgets (oldest / least recently used first)')
      .option('--dry-run', 'report what would be deleted, delete nothing')
      .option('--grace <duration>', 'keep entries this long past their expire', '1h')
      .option('--debris-age <duration>', 'temp files and orphans older than this are debris', '1h')
      .option('--keep-builds <n>', 'drop the namespaces of all but the n most recently served builds (never one being served now)'),
  ).action(async (flags: { dryRun?: boolean; grace: string; debrisAge: string; keepBuilds?: string; wait?: boolean }, command: Command) => {
    const { options, json } = globalOptions(command);
    // The byte budgets are library options (--max-bytes, --image-max-bytes, or their env vars).
    const limits = {
      dryRun: flags.dryRun ?? false,
      graceMs: durationFlag('--grace', flags.grace),
      debrisAgeMs: durationFlag('--debris-age', flags.debrisAge),
      keepBuilds: flags.keepBuilds === undefined ? undefined : countFlag('--keep-builds', flags.keepBuilds),
    };
    const result = await withProgress(json, 'gc', (progress) => gc(options, limits, { wait: flags.wait ?? false, progress }));
    const verb = result.dryRun ? 'would delete' : 'deleted';
    print(out, json, result, [
      [`${verb}: past expire`, `${result.expired.count} (${formatBytes(result.expired.bytes)})`],
      [`${verb}: invalidated by a tag`, `${result.invalidated.count} (${formatBytes(result.invalidated.bytes)})`],
      [`${verb}: over the byte budget`, `${result.overBudget.count} (${formatBytes(result.overBudget.bytes)})`],
      [`${verb}: images over budget`, `${result.images.evicted} (${formatBytes(result.images.bytes)})`],
      [`${verb}: orphan / broken images`, `${result.images.orphans} / ${result.images.broken}`],
      [`${verb}: temp files`, `${result.debris.count} (${formatBytes(result.debris.bytes)})`],
      ...result.buildsDropped.map((b): [string, string] => [`${verb}: build ${b.namespace}`, `${b.files} files (${formatBytes(b.bytes)})`]),
      ['kept entries', `${result.kept.entries} (${formatBytes(result.kept.bytes)})`],
      ['kept images', `${result.kept.images} (${formatBytes(result.kept.imageBytes)})`],
    ]);
  });

  waitOptions(
    program
      .command('purge')
      .description('delete entries by tag, path, kind, age or key (a tag or path purge also invalidates it on every replica)')
      .option('--tag <tag>', 'entries carrying this tag (repeatable)', collect, [])
      .option('--path <route>', "entries revalidatePath(route) would hit (repeatable)", collect, [])
      .option('--kind <kind>', 'APP_PAGE, APP_ROUTE, PAGES, REDIRECT, FETCH, IMAGE (repeatable)', collect, [])
      .option('--older-than <duration>', 'only entries written longer ago than this, e.g. 7d')
      .option('--key <key>', 'one cache key (repeatable)', collect, [])
      .option('--build <id>', "only entries of this BUILD_ID's namespace (repeatable)", collect, [])
      .option('--all', 'every entry')
      .option('--scan', 'find tagged entries by walking the volume instead of the tag index')
      .option('--dry-run', 'list what would be deleted, delete nothing'),
  ).action(
    async (
      flags: { tag: string[]; path: string[]; kind: string[]; olderThan?: string; key: string[]; build: string[]; all?: boolean; scan?: boolean; dryRun?: boolean; wait?: boolean },
      command: Command,
    ) => {
      const { options, json } = globalOptions(command);
      const selection = {
        tags: flags.tag,
        paths: flags.path,
        kinds: flags.kind,
        olderThanMs: flags.olderThan === undefined ? undefined : durationFlag('--older-than', flags.olderThan),
        keys: flags.key,
        builds: flags.build,
        all: flags.all ?? false,
        scan: flags.scan ?? false,
      };
      const result = await withProgress(json, 'purge', (progress) => purge(options, selection, flags.dryRun ?? false, { wait: flags.wait ?? false, progress }));
      print(out, json, result, [
        ['found through', result.method],
        ['matched', result.matched],
        [result.dryRun ? 'would delete' : 'deleted', result.dryRun ? result.matched : `${result.deleted} (${formatBytes(result.bytes)})`],
        ['invalidated tags', result.invalidated.join(', ') || '-'],
        ...result.sample.map((file): [string, string] => ['  ', file]),
      ]);
    },
  );

  program
    .command('seed')
    .description("store a build's prerendered pages in its namespace (never overwrites an entry rendered at runtime)")
    .requiredOption('--next-dir <path>', "the app's .next folder (with BUILD_ID, prerender-manifest.json and server/)")
    .action(async (flags: { nextDir: string }, command: Command) => {
      const { options, json } = globalOptions(command);
      const result = await seed(options, path.resolve(flags.nextDir));
      print(out, json, result, [
        ['build', `${result.buildId} (namespace ${result.namespace})`],
        ['prerendered entries found', result.found],
        ['written', result.written],
        ['already present (kept)', result.skipped],
        ['failed', result.failed.length],
        ...result.failed.slice(0, 20).map((f): [string, string] => ['  ', `${f.file}: ${f.reason}`]),
      ]);
      if (result.failed.length > 0) throw new ExitCode(EXIT.failure);
    });

  program
    .command('check')
    .description('start-up check: the root is mounted, a compatible cache root (or empty), writable and fast enough; exit 1 if not. Use as a startupProbe, never as a liveness or readiness probe')
    .option('--max-latency <duration>', 'fail when a small write, read and delete takes longer', '1s')
    .action(async (flags: { maxLatency: string }, command: Command) => {
      const { options, json } = globalOptions(command);
      const result = await checkRoot(options, durationFlag('--max-latency', flags.maxLatency));
      if (json) out(JSON.stringify(result, null, 2));
      else (result.ok ? out : err)(`${result.ok ? 'ok' : `not ok (${result.failure})`}: ${result.message}`);
      if (!result.ok) throw new ExitCode(EXIT.failure);
    });

  program
    .command('inspect <key>')
    .description('where a key lives, its metadata and tags, and whether an invalidation applies')
    .option('--raw', 'include the decoded value (Buffers as base64)')
    .action(async (key: string, flags: { raw?: boolean }, command: Command) => {
      const { options } = globalOptions(command);
      const result = await inspect(options, key, flags.raw ?? false);
      out(JSON.stringify(result, null, 2));
      if (!result.entry.exists && !result.image.exists) throw new ExitCode(EXIT.failure);
    });
  return program;
}

/** Every library option as a global flag, with the one naming rule. */
function addCacheOptions(program: Command): void {
  const descriptions: Record<string, string> = {
    dir: 'cache root (default: NEXT_VOLUME_CACHE_DIR)',
    app: 'app namespace on the volume (default: "default")',
    maxBytes: 'gc: byte budget for page and fetch entries, e.g. 20GiB',
    imageMaxBytes: 'gc: byte budget for optimized images, e.g. 5GiB',
    leaseTimeoutMs: 'compact: a writer whose lease is older is gone (default 300000)',
    lockStaleMs: 'a maintenance lock not refreshed for this long is taken over (default 120000)',
  };
  for (const name of OPTION_NAMES) {
    program.addOption(new Option(`${flagNameOf(name)} <value>`, descriptions[name] ?? `see the README's configuration table`).hideHelp(!descriptions[name]));
  }
}

function globalOptions(command: Command): GlobalFlags {
  const flags = command.optsWithGlobals() as Record<string, unknown>;
  const options: Record<string, unknown> = {};
  for (const name of OPTION_NAMES) if (flags[name] !== undefined) options[name] = flags[name];
  return { options: options as CacheOptions, json: flags.json === true };
}

/** Thrown by an action to end with a specific exit code after printing its result. */
class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

class UsageError extends Error {}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function countFlag(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag}: expected a whole number, got "${value}"`);
  return n;
}

function durationFlag(flag: string, value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new UsageError(`${flag}: expected a duration like 90s, 15m, 12h, 7d, got "${value}"`);
  return ms;
}

/** A progress bar with rate and ETA on a TTY (stderr), nothing otherwise or with --json. */
async function withProgress<T>(json: boolean, label: string, work: (progress: WalkProgress) => Promise<T>): Promise<T> {
  if (json || !process.stderr.isTTY) return work({});
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | {value}/{total} shard folders | {speed}/s | ETA {eta_formatted}`,
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: true,
    barCompleteChar: '#',
    barIncompleteChar: process.env.NO_COLOR ? '.' : '-',
  });
  const started = Date.now();
  let begun = false;
  try {
    return await work({
      onShard(done, total) {
        if (!begun) {
          bar.start(total, 0, { speed: '0' });
          begun = true;
        }
        bar.update(done, { speed: (done / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1) });
      },
    });
  } finally {
    if (begun) bar.stop();
  }
}

function print(out: (text: string) => void, json: boolean, result: object, rows: Array<[string, number | string]>): void {
  if (json) {
    out(JSON.stringify(result, null, 2));
    return;
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  out(rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n'));
}

/** Runs the CLI; returns the exit code instead of exiting, so tests can call it in-process. */
export async function main(argv: string[], out: (text: string) => void = (t) => process.stdout.write(t + '\n'), err: (text: string) => void = (t) => process.stderr.write(t + '\n')): Promise<number> {
  if (argv.includes('--all-apps')) return forEachApp(argv.filter((a) => a !== '--all-apps'), out, err);
  return runOnce(argv, out, err);
}

/**
 * `--all-apps`: runs the command once per app found on the root. Human output
 * gets a heading per app; --json prints one document keyed by app. The exit
 * code is the highest of the runs.
 */
async function forEachApp(argv: string[], out: (text: string) => void, err: (text: string) => void): Promise<number> {
  if (argv.includes('--app')) {
    err('next-volume-cache: --all-apps and --app exclude each other');
    return EXIT.usage;
  }
  const dirAt = argv.indexOf('--dir');
  const dir = dirAt >= 0 ? argv[dirAt + 1] : undefined;
  let apps: string[];
  try {
    apps = await listApps(dir ? { dir } : {});
  } catch (error) {
    return exitCodeFor(error, err);
  }
  const json = argv.includes('--json');
  const documents: Record<string, unknown> = {};
  let code: number = EXIT.ok;
  for (const app of apps) {
    let captured = '';
    if (!json) out(`== app ${app} ==`);
    const result = await runOnce([...argv, '--app', app], json ? (t) => (captured += t + '\n') : out, err);
    if (json) documents[app] = captured.trim() ? (JSON.parse(captured) as unknown) : null;
    code = Math.max(code, result);
  }
  if (json) out(JSON.stringify(documents, null, 2));
  return code;
}

async function runOnce(argv: string[], out: (text: string) => void, err: (text: string) => void): Promise<number> {
  const program = buildProgram(out, err);
  program.configureOutput({ writeOut: (s) => out(s.trimEnd()), writeErr: (s) => err(s.trimEnd()) });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    return exitCodeFor(error, err);
  }
}

function exitCodeFor(error: unknown, err: (text: string) => void): number {
  if (error instanceof ExitCode) return error.code;
  if (error instanceof UsageError || error instanceof PurgeUsageError) {
    err(`next-volume-cache: ${error.message}`);
    return EXIT.usage;
  }
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return EXIT.ok;
    return EXIT.usage;
  }
  if (error instanceof ConfigError) {
    // Name the flag the user typed (or the env var, which already carries its own name).
    const setting = error.setting.startsWith('NEXT_VOLUME_CACHE_') ? error.setting : flagNameOf(error.setting);
    err(`next-volume-cache: invalid ${setting}: ${error.detail}`);
    return EXIT.usage;
  }
  if (error instanceof NotACacheRootError || error instanceof VolumeError) {
    err(`next-volume-cache: ${error.message}`);
    return EXIT.usage;
  }
  if (error instanceof LockHeldError) {
    err(`next-volume-cache: ${error.message}`);
    return EXIT.lockHeld;
  }
  err(`next-volume-cache: ${error instanceof Error ? error.message : String(error)}`);
  return EXIT.failure;
}

if (require.main === module) {
  // `next-volume-cache stats | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT.ok);
    throw error;
  });
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
