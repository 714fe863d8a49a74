import type { LogLevel } from '../config';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** How long a repeated cause stays quiet before it is reported again, with its count. */
const REPEAT_AFTER_MS = 60_000;

/**
 * Writes to stderr with a fixed prefix. `onceWarn` reports the first event of
 * a cause and then at most once a minute with a count, so a broken volume
 * produces a handful of lines, not one per request.
 */
export class CacheLog {
  private readonly lastReported = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly level: LogLevel,
    private readonly sink: (line: string) => void = (line) => process.stderr.write(line + '\n'),
  ) {}

  debug(message: string): void {
    this.write('debug', message);
  }
  info(message: string): void {
    this.write('info', message);
  }
  warn(message: string): void {
    this.write('warn', message);
  }
  error(message: string): void {
    this.write('error', message);
  }

  /** Written whatever the level except 'silent': for output the user turned on explicitly (metrics). */
  always(message: string): void {
    if (this.level !== 'silent') this.sink(`[next-volume-cache] ${message}`);
  }

  /** Warns about `cause` once, then once per minute with how many were suppressed. */
  onceWarn(cause: string, message: string): void {
    const now = Date.now();
    const seen = this.lastReported.get(cause);
    if (seen && now - seen.at < REPEAT_AFTER_MS) {
      seen.suppressed++;
      return;
    }
    const repeats = seen && seen.suppressed > 0 ? ` (${seen.suppressed} more like this since the last report)` : '';
    this.lastReported.set(cause, { at: now, suppressed: 0 });
    this.warn(message + repeats);
  }

  private write(level: LogLevel, message: string): void {
    if (RANK[level] < RANK[this.level]) return;
    this.sink(`[next-volume-cache] ${level}: ${message}`);
  }
}
