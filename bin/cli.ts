#!/usr/bin/env node
/**
 * next-volume-cache: the operator CLI. A thin layer over lib/maintenance:
 * parse flags, call the library, print a table or JSON, map errors to exit
 * codes.
 */
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, OPTION_NAMES, flagNameOf, type CacheOptions } from '../lib/config';
import { compact, LockHeldError, NotACacheRootError } from '../lib/maintenance';
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

function version(): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('../../package.json') as { version: string }).version;
}

function buildProgram(out: (text: string) => void): Command {
  const program = new Command('next-volume-cache')
    .description('Operate a next-volume-cache root on a shared volume')
    .version(version(), '-v, --version')
    .option('--json', 'print one JSON document instead of a table')
    .addHelpText('after', EXIT_HELP)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  addCacheOptions(program);

  program
    .command('compact')
    .description('fold the per-writer tag logs into the snapshot and delete closed segments (takes the maintenance lock)')
    .option('--wait', 'wait for another run to release the maintenance lock')
    .option('--no-wait', 'exit with code 4 if another run holds the lock (default)')
    .action(async (flags: { wait?: boolean }, command: Command) => {
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
    });
  return program;
}

/** Every library option as a global flag, with the one naming rule. */
function addCacheOptions(program: Command): void {
  const descriptions: Record<string, string> = {
    dir: 'cache root (default: NEXT_VOLUME_CACHE_DIR)',
    app: 'app namespace on the volume (default: "default")',
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
  const program = buildProgram(out);
  program.configureOutput({ writeOut: (s) => out(s.trimEnd()), writeErr: (s) => err(s.trimEnd()) });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    return exitCodeFor(error, err);
  }
}

function exitCodeFor(error: unknown, err: (text: string) => void): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return EXIT.ok;
    return EXIT.usage;
  }
  if (error instanceof ConfigError) {
    err(error.message);
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
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
