#!/usr/bin/env node
/**
 * next-volume-cache: the operator CLI. A thin layer over lib/maintenance:
 * parse flags, call the library, print a table or JSON, map errors to exit
 * codes.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import ms from 'ms';
import { ConfigError, OPTION_NAMES, flagNameOf, type CacheOptions } from '../lib/config';
import { checkRoot, compact, gc, inspect, listApps, LockHeldError, NotACacheRootError, purge, PurgeUsageError, seed, stats, verify, type WalkProgress } from '../lib/maintenance';
import { renderPrometheus, statsFamilies, type Family } from '../lib/maintenance/prometheus';
import { VolumeError } from '../lib/store/volume';
import { formatBytes } from '../lib/util/units';

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
  1  failure (I/O error, lock lost mid-run, a check that failed)
  2  bad usage (unknown flag, bad value, --dir that is not a cache root)
  3  problems found (verify without --repair)
  4  the maintenance lock is held by another run (with --no-wait, the default)

Every option can also be set as NEXT_VOLUME_CACHE_<NAME> (e.g. --dir -> NEXT_VOLUME_CACHE_DIR).`;

type Rows = Array<[string, number | string]>;

/** What a command's run produces for one app: its result (printed as JSON), its table, and an exit code. */
interface Outcome {
  result: object;
  rows: Rows;
  exit?: number;
  /** The table goes to stderr when the run failed (a failed check is an error message). */
  failureToStderr?: boolean;
  /** The result as Prometheus metric families (`--format prometheus`; only commands that declare it). */
  families?: Family[];
}

type Format = 'table' | 'json' | 'prometheus';

/** What a command can print besides its table. */
interface Formats {
  /** Prints JSON whatever the flags say (inspect). */
  alwaysJson?: boolean;
  /** Its outcome carries Prometheus families (stats). */
  prometheus?: boolean;
}

interface Output {
  out: (text: string) => void;
  err: (text: string) => void;
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

const OPTION_HELP: Record<string, string> = {
  dir: 'cache root (NEXT_VOLUME_CACHE_DIR)',
  app: 'app namespace on the volume (default "default")',
  timeoutMs: 'deadline of one filesystem sequence on the request path (default 2000)',
  concurrency: 'filesystem sequences in flight at once (default UV_THREADPOOL_SIZE - 1)',
  fsync: 'fsync entry files before publishing them (true/false)',
  tagRefreshMs: "how often a process looks for other processes' invalidations (default 1000)",
  leaseTimeoutMs: 'a writer whose lease is older is gone, for compact (default 300000)',
  logLevel: 'debug, info, warn (default), error, silent',
  logFormat: 'text (default) or json: one JSON object per line',
  lockStaleMs: 'a maintenance lock not refreshed for this long is taken over (default 120000)',
  metricsLogMs: 'log in-process counters every this many ms (handlers only)',
  maxBytes: 'gc: byte budget for page and fetch entries, e.g. 20GiB',
  imageMaxBytes: 'gc: byte budget for optimized images, e.g. 5GiB',
  fetchScope: 'fetch entries "shared" (default) or per "build"',
  imageScope: 'optimized images per "build" (default) or "shared"',
  fileMode: 'mode of files written, an octal string like 664',
  dirMode: 'mode of folders created, an octal string like 2775',
  seed: 'seed prerendered pages on first start (handlers only)',
  maxEntryBytes: 'largest entry read or written (default 64MiB)',
  maxClockSkewMs: 'times further ahead than this on the volume are not trusted (default 300000)',
  secret: 'seal everything with this secret (prefer NEXT_VOLUME_CACHE_SECRET: flags show in process lists)',
  previousSecret: 'the secret being rotated out, still accepted when reading',
};

function buildProgram(io: Output): Command {
  const program = new Command('next-volume-cache')
    .description('Operate a next-volume-cache root on a shared volume')
    .version(version(), '-v, --version')
    .option('--json', 'print one JSON document instead of a table (the same as --format json)')
    .addOption(new Option('--format <format>', "table, json, or prometheus (stats only: the text format of node-exporter's textfile collector)").choices(['table', 'json', 'prometheus']))
    .addOption(new Option('--all-apps', 'run the command for every app on the root (one JSON document keyed by app with --json)').conflicts('app'))
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(run with --help for usage)')
    // Every command's help lists the cache options too (gc --help shows the budgets gc enforces); set before
    // the commands are added, which inherit it.
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .exitOverride();
  for (const name of OPTION_NAMES) program.addOption(new Option(`${flagNameOf(name)} <value>`, OPTION_HELP[name] ?? name));

  const withWait = (command: Command): Command => command.option('--wait', 'wait for another run to release the maintenance lock').option('--no-wait', 'exit with code 4 if another run holds the lock (default)');
  const perApp = (run: (options: CacheOptions, flags: Record<string, unknown>, progress: WalkProgress) => Promise<Outcome>, formats: Formats = {}) =>
    async function (this: Command): Promise<void> {
      await runForApps(this, io, run, formats);
    };

  withWait(program.command('compact').description('fold the per-writer tag logs into the snapshot and delete closed segments')).action(
    perApp(async (options, flags) => {
      const result = await compact({ ...options, wait: flags.wait === true });
      return {
        result,
        rows: [
          ['segments read', result.segmentsRead],
          ['records folded', result.recordsFolded],
          ['unreadable lines skipped', result.linesSkipped],
          ['segments deleted', result.segmentsDeleted],
          ['segments that could not be read (kept)', result.segmentsUnreadable],
          ['names that are not segments (left alone)', result.strangers],
          ['tags in snapshot', result.tags],
          ['tags dropped (older than every entry)', result.tagsDropped],
          ['damaged snapshot replaced', result.snapshotReplaced ? 'yes (entries older than it are expired)' : 'no'],
          ['tag index: entries', result.members],
          ['tag index: entries dropped (gone)', result.membersDropped],
          ['leases of gone writers removed', result.leasesRemoved],
        ],
      };
    }),
  );

  program
    .command('stats')
    .description('entries and bytes per kind and namespace, images, shard fan-out, tag log, debris (writes nothing)')
    .action(
      perApp(
        async (options, _flags, progress) => {
          const result = await stats({ ...options, progress });
          const tallies = (label: string, byName: Record<string, { count: number; bytes: number }>): Rows => Object.entries(byName).map(([name, t]) => [`  ${label}${name}`, `${t.count} (${formatBytes(t.bytes)})`]);
          return {
            result,
            families: statsFamilies(result),
            rows: [
              ['entries', `${result.entries.total.count} (${formatBytes(result.entries.total.bytes)})`],
              ...tallies('', result.entries.byKind),
              ...tallies('namespace ', result.entries.byNamespace),
              ['entries past expire', result.entries.expired],
              ['unreadable entries', result.entries.unreadable],
              ['oldest entry', result.entries.oldestWrittenAt ?? '-'],
              ['newest entry', result.entries.newestWrittenAt ?? '-'],
              ['images', `${result.images.total.count} (${formatBytes(result.images.total.bytes)})`],
              ['orphan image files', `${result.images.orphans.count} (${formatBytes(result.images.orphans.bytes)})`],
              ['broken / unreadable image sidecars', `${result.images.broken} / ${result.images.unreadable}`],
              ['shard folders', result.shards.folders],
              ['largest folder', `${result.shards.largest.files} files${result.shards.largest.dir ? ` (${result.shards.largest.dir})` : ''}`],
              ['temp files', `${result.debris.temp.count} (${formatBytes(result.debris.temp.bytes)})`],
              ['foreign files', result.debris.foreign],
              ['.nfs files', result.debris.nfsSilly],
              ['regeneration leases (older than an hour)', `${result.leases.total} (${result.leases.stale})`],
              ...result.builds.map((b): [string, string] => [
                `build ${b.namespace}`,
                `last served ${b.servedAt ? new Date(b.servedAt).toISOString() : b.servedAt === null ? 'never' : 'unknown (marker unreadable)'}${b.live ? ' (kept)' : ''}`,
              ]),
              ['tag log segments', `${result.tagLog.segments} (${formatBytes(result.tagLog.segmentBytes)})`],
              ['tag index segments', `${result.tagLog.memberSegments} (${formatBytes(result.tagLog.memberSegmentBytes)})`],
              ['names in the tag folders that are not segments', result.tagLog.strangers],
              ['snapshot', result.tagLog.snapshot],
              ['tags in snapshot', `${result.tagLog.snapshotTags} (${result.tagLog.snapshotRecords} records folded)`],
              ['last compaction', result.tagLog.lastCompaction ?? 'never'],
              ['writers (alive)', `${result.tagLog.writers} (${result.tagLog.writersAlive})`],
            ],
          };
        },
        { prometheus: true },
      ),
    );

  withWait(
    program
      .command('verify')
      .description('check every entry, image pair and log file; exit 3 if problems are found (without --repair, writes nothing)')
      .option('--repair', 'delete what is broken, quarantine what the library did not write or cannot vouch for, compact')
      .addOption(durationOption('--debris-age <duration>', 'temp files and orphans younger than this are left alone', '1h')),
  ).action(
    perApp(async (options, flags, progress) => {
      const repair = flags.repair === true;
      const report = await verify({ ...options, repair, debrisAgeMs: flags.debrisAge as number, wait: flags.wait === true, progress });
      const rows: Rows = [
        ['entries checked', report.checked.entries],
        ['images checked', report.checked.images],
        ['in flight (too young to judge)', report.inFlight],
        ['entries of another format version (left alone)', report.foreignVersion],
        ['larger than --max-entry-bytes (left alone)', report.oversize],
        ['.nfs files (left alone)', report.nfsSilly],
      ];
      for (const [problem, count] of Object.entries(report.problems)) {
        if (count > 0) rows.push([problem, repair ? `${count} (repaired ${report.repaired[problem as keyof typeof report.repaired]})` : count]);
        for (const sample of report.samples[problem as keyof typeof report.samples] ?? []) rows.push(['  ', sample]);
      }
      const unrepaired = Object.entries(report.problems).some(([p, n]) => n > (repair ? report.repaired[p as keyof typeof report.repaired] : 0));
      return { result: report, rows, exit: unrepaired ? EXIT.problemsFound : EXIT.ok };
    }),
  );

  withWait(
    program
      .command('gc')
      .description('delete expired and invalidated entries, debris, and enforce byte budgets (oldest / least recently used first)')
      .option('--dry-run', 'report what would be deleted, delete nothing')
      .addOption(durationOption('--grace <duration>', 'keep entries this long past their expire', '1h'))
      .addOption(durationOption('--debris-age <duration>', 'temp files and orphans older than this are debris', '1h'))
      .option('--keep-builds <n>', 'drop the namespaces of all but the n most recently served builds (never one being served now)', countArg),
  ).action(
    perApp(async (options, flags, progress) => {
      // The byte budgets are library options (--max-bytes, --image-max-bytes, or their env vars).
      const result = await gc({
        ...options,
        dryRun: flags.dryRun === true,
        graceMs: flags.grace as number,
        debrisAgeMs: flags.debrisAge as number,
        keepBuilds: flags.keepBuilds as number | undefined,
        wait: flags.wait === true,
        progress,
      });
      const verb = result.dryRun ? 'would delete' : 'deleted';
      const tally = (t: { count: number; bytes: number }): string => `${t.count} (${formatBytes(t.bytes)})`;
      return {
        result,
        rows: [
          [`${verb}: past expire`, tally(result.expired)],
          [`${verb}: invalidated by a tag`, result.tagStateComplete ? tally(result.invalidated) : 'none: part of the tag state cannot be read (see `check`)'],
          [`${verb}: stamped in the future`, tally(result.futureDated)],
          [`${verb}: over the byte budget`, tally(result.overBudget)],
          [`${verb}: images over budget`, `${result.images.evicted} (${formatBytes(result.images.bytes)})`],
          [`${verb}: orphan / broken images`, `${result.images.orphans} / ${result.images.broken}`],
          [`${verb}: temp files`, tally(result.debris)],
          [`${verb}: leases of processes that died mid-render`, result.leasesRemoved],
          ...result.buildsDropped.map((b): [string, string] => [`${verb}: build ${b.namespace}`, `${b.files} files (${formatBytes(b.bytes)})${b.skipped.length ? `, ${b.skipped.length} left in place` : ''}`]),
          ...result.buildsKept.map((b): [string, string] => [
            `kept: build ${b.namespace}`,
            b.reason === 'marker-unreadable' ? 'its marker cannot be read, so it may be served now (check its permissions)' : 'served within the lease timeout',
          ]),
          ['unreadable (left alone)', result.unreadable],
          ['kept entries', `${result.kept.entries} (${formatBytes(result.kept.bytes)})`],
          ['kept images', `${result.kept.images} (${formatBytes(result.kept.imageBytes)})`],
        ],
      };
    }),
  );

  withWait(
    program
      .command('purge')
      .description('delete entries by tag, path, kind, age, key or build (a tag or path purge also invalidates it on every replica)')
      .option('--tag <tag>', 'entries carrying this tag (repeatable)', collect, [])
      .option('--path <route>', 'entries revalidatePath(route) would hit (repeatable)', collect, [])
      .option('--kind <kind>', 'APP_PAGE, APP_ROUTE, PAGES, REDIRECT, FETCH, USE_CACHE, IMAGE (repeatable)', collect, [])
      .option('--older-than <duration>', 'only entries written longer ago than this, e.g. 7d', durationArg)
      .option('--key <key>', "one cache key, in every namespace: pages of every build, fetches, 'use cache' entries, images (repeatable)", collect, [])
      .option('--build <id>', "only entries of this BUILD_ID's namespace (repeatable)", collect, [])
      .option('--all', 'every entry (needs --yes)')
      .option('--yes', 'confirm a purge of everything (--all, or --older-than 0)')
      .option('--scan', 'find tagged entries by walking the volume instead of the tag index')
      .option('--dry-run', 'list what would be deleted, delete nothing'),
  ).action(
    perApp(async (options, flags, progress) => {
      const selection = {
        tags: flags.tag as string[],
        paths: flags.path as string[],
        kinds: flags.kind as string[],
        olderThanMs: flags.olderThan as number | undefined,
        keys: flags.key as string[],
        builds: flags.build as string[],
        all: flags.all === true,
        yes: flags.yes === true,
        scan: flags.scan === true,
      };
      const result = await purge({ ...options, selection, dryRun: flags.dryRun === true, wait: flags.wait === true, progress });
      return {
        result,
        rows: [
          ['found through', result.method],
          ['matched', result.matched],
          [result.dryRun ? 'would delete' : 'deleted', result.dryRun ? result.matched : `${result.deleted} (${formatBytes(result.bytes)})`],
          ['invalidated tags', result.invalidated.join(', ') || '-'],
          ...(result.indexUnreadable.length ? [['tag index files unreadable (run with --scan to be sure)', result.indexUnreadable.join(', ')] as [string, string]] : []),
          ['unreadable (left alone)', result.unreadable],
          ...result.sample.map((file): [string, string] => ['  ', file]),
        ],
      };
    }),
  );

  program
    .command('seed')
    .description("store a build's prerendered pages in its namespace (never overwrites an entry rendered at runtime)")
    .requiredOption('--next-dir <path>', "the app's .next folder (with BUILD_ID, prerender-manifest.json and server/)")
    .action(
      perApp(async (options, flags) => {
        const result = await seed({ ...options, nextDir: path.resolve(flags.nextDir as string) });
        return {
          result,
          exit: result.failed.length > 0 ? EXIT.failure : EXIT.ok,
          rows: [
            ['build', `${result.buildId} (namespace ${result.namespace})`],
            ['prerendered entries found', result.found],
            ['written', result.written],
            ['already present (kept)', result.skipped],
            ['failed', result.failed.length],
            ['without a runtime key (Next before 16.3.8: not seeded)', result.unkeyed],
            ...result.failed.slice(0, 20).map((f): [string, string] => ['  ', `${f.file}: ${f.reason}`]),
          ],
        };
      }),
    );

  program
    .command('check')
    .description('start-up check: the root is mounted, a compatible cache root (or empty), its tag files readable, writable and fast enough; exit 1 if not. A startupProbe, never a liveness or readiness probe')
    .addOption(durationOption('--max-latency <duration>', 'fail when a small write, read and delete takes longer', '1s'))
    .option('--read-only', 'check without writing anything (a read-only mount, a debug pod)')
    .action(
      perApp(async (options, flags) => {
        const result = await checkRoot({ ...options, maxLatencyMs: flags.maxLatency as number, readOnly: flags.readOnly === true });
        return { result, rows: [[result.ok ? 'ok:' : `not ok (${result.failure}):`, result.message]], exit: result.ok ? EXIT.ok : EXIT.failure, failureToStderr: true };
      }),
    );

  program
    .command('inspect <key>')
    .description('where a key lives, its metadata and tags, and whether an invalidation applies (writes nothing; always JSON)')
    .option('--raw', 'include the decoded value (Buffers as base64)')
    .action(async function (this: Command, key: string) {
      await runForApps(
        this,
        io,
        async (options, flags) => {
          const result = await inspect({ ...options, key, raw: flags.raw === true });
          return { result, rows: [], exit: result.entry.exists || result.image.exists ? EXIT.ok : EXIT.failure };
        },
        { alwaysJson: true },
      );
    });
  return program;
}

/**
 * Runs a command for the app given (or the default), or with `--all-apps`
 * for every app on the root: a heading per app in tables, one JSON document
 * keyed by app with --json, one Prometheus document with every app's series
 * with --format prometheus. The exit code is the highest of the runs.
 */
async function runForApps(command: Command, io: Output, run: (options: CacheOptions, flags: Record<string, unknown>, progress: WalkProgress) => Promise<Outcome>, formats: Formats = {}): Promise<void> {
  const flags = command.optsWithGlobals<Record<string, unknown>>();
  const format = outputFormat(command, flags, formats);
  const options: Record<string, unknown> = {};
  for (const name of OPTION_NAMES) if (flags[name] !== undefined) options[name] = flags[name];
  const json = format === 'json';
  const apps = flags.allApps === true ? await listApps(options) : [undefined];
  const documents: Record<string, object> = {};
  const families: Family[] = [];
  let exit: number = EXIT.ok;
  for (const app of apps) {
    const outcome = await withProgress(format !== 'table', command.name(), (progress) => run({ ...(options as CacheOptions), ...(app ? { app } : {}) }, flags, progress));
    exit = Math.max(exit, outcome.exit ?? EXIT.ok);
    if (format === 'prometheus') {
      families.push(...(outcome.families ?? []));
    } else if (app === undefined) {
      const failed = outcome.failureToStderr && (outcome.exit ?? EXIT.ok) !== EXIT.ok;
      (failed && !json ? io.err : io.out)(json ? JSON.stringify(outcome.result, null, 2) : table(outcome.rows));
    } else if (json) {
      documents[app] = outcome.result;
    } else {
      io.out(`== app ${printable(app)} ==`);
      io.out(table(outcome.rows));
    }
  }
  if (format === 'prometheus') io.out(renderPrometheus(families));
  if (flags.allApps === true && json) io.out(JSON.stringify(documents, null, 2));
  if (exit !== EXIT.ok) throw new ExitCode(exit);
}

/** --format, with --json as its alias; prometheus only where the command has it (checked before anything runs). */
function outputFormat(command: Command, flags: Record<string, unknown>, formats: Formats): Format {
  const asked = flags.format as Format | undefined;
  if (flags.json === true && asked !== undefined && asked !== 'json') command.error(`--json and --format ${asked} contradict each other`, { exitCode: EXIT.usage });
  if (asked === 'prometheus' && !formats.prometheus) command.error(`--format prometheus is only for stats, not ${command.name()}`, { exitCode: EXIT.usage });
  if (formats.alwaysJson) return 'json';
  return asked ?? (flags.json === true ? 'json' : 'table');
}

/** Thrown by an action to end with a specific exit code after printing its result. */
class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A whole number of 0 or more, digits only (no "1e3", no "2.5", no "-1"). */
function countArg(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError(`expected a whole number, got "${value}"`);
  return Number(value);
}

/** A duration like 90s, 15m, 12h, 7d, 2w (vercel/ms), or plain milliseconds; never negative. */
function durationArg(value: string): number {
  const parsed = /^\s*\d+(\.\d+)?\s*[a-z]*\s*$/i.test(value) ? (ms(value as ms.StringValue) as number | undefined) : undefined;
  if (parsed === undefined || !Number.isFinite(parsed) || parsed < 0) throw new InvalidArgumentError(`expected a duration like 90s, 15m, 12h, 7d, got "${value}"`);
  return Math.round(parsed);
}

/** A duration option whose help shows its default as written ("1h"), not in milliseconds. */
function durationOption(flags: string, description: string, defaultText: string): Option {
  return new Option(flags, description).argParser(durationArg).default(durationArg(defaultText), defaultText);
}

/** A progress bar with rate and ETA on a TTY (stderr), nothing otherwise or with --json / --format. */
async function withProgress<T>(quiet: boolean, label: string, work: (progress: WalkProgress) => Promise<T>): Promise<T> {
  if (quiet || !process.stderr.isTTY) return work({});
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

function table(rows: Rows): string {
  const width = Math.max(0, ...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${printable(String(value))}`).join('\n');
}

/**
 * Names found on a volume are printed as escapes, never raw: a file named
 * with terminal control sequences must not drive the operator's terminal.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Runs the CLI; returns the exit code instead of exiting, so tests can call it in-process. */
export async function main(argv: string[], out: (text: string) => void = (t) => process.stdout.write(t + '\n'), err: (text: string) => void = (t) => process.stderr.write(t + '\n')): Promise<number> {
  const program = buildProgram({ out, err });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    return exitCodeFor(error, err);
  }
}

function exitCodeFor(error: unknown, err: (text: string) => void): number {
  if (error instanceof ExitCode) return error.code;
  const say = (message: string): void => err(`next-volume-cache: ${printable(message)}`);
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return EXIT.ok;
    return EXIT.usage;
  }
  if (error instanceof PurgeUsageError) {
    say(error.message);
    return EXIT.usage;
  }
  if (error instanceof ConfigError) {
    // Name the flag the user typed (or the env var, which already carries its own name).
    const setting = error.setting.startsWith('NEXT_VOLUME_CACHE_') ? error.setting : flagNameOf(error.setting);
    say(`invalid ${setting}: ${error.detail}`);
    return EXIT.usage;
  }
  if (error instanceof NotACacheRootError || error instanceof VolumeError) {
    say(error.message);
    return EXIT.usage;
  }
  if (error instanceof LockHeldError) {
    say(error.message);
    return EXIT.lockHeld;
  }
  say(error instanceof Error ? error.message : String(error));
  return EXIT.failure;
}

if (require.main === module) {
  // `next-volume-cache stats | head` closes the pipe early: that is not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(EXIT.ok);
    throw error;
  });
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
