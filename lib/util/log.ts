export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export type LogFormat = 'text' | 'json';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** How long a repeated cause stays quiet before it is reported again, with its count. */
const REPEAT_AFTER_MS = 60_000;

/** What a line carries besides its message (in the JSON format; the text format has it in the message). */
export interface LogFields {
  /** The stable id of what happened (default: the cause up to its first ':'). */
  event?: string;
  /** The hash of the key concerned: the entry's file name, what `inspect` shows. */
  keyHash?: string | undefined;
}

/** One line of the JSON format. */
export interface LogRecord {
  time: string;
  level: Exclude<LogLevel, 'silent'>;
  logger: 'next-volume-cache';
  event: string;
  /** The once-per-cause key: the event and what distinguishes repeats (`get:timeout`, `segment-garbage:<segment>`). */
  cause?: string;
  message: string;
  keyHash?: string;
  /** Lines of this cause not written since the previous one (once-per-cause warnings). */
  suppressed?: number;
  data?: unknown;
}

/**
 * Writes to stderr, as text with a fixed prefix (the default) or as one JSON
 * object per line (`logFormat: 'json'`, for Loki, ELK and the like). Every
 * line names its event, a stable id to filter and count on. `onceWarn`
 * reports the first event of a cause and then at most once a minute with a
 * count, so a broken volume produces a handful of lines, not one per request.
 */
export class CacheLog {
  private readonly lastReported = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly level: LogLevel,
    private readonly sink: (line: string) => void = (line) => process.stderr.write(line + '\n'),
    private readonly format: LogFormat = 'text',
  ) {}

  debug(event: string, message: string, fields?: LogFields): void {
    this.write('debug', message, { event, ...fields });
  }
  info(event: string, message: string, fields?: LogFields): void {
    this.write('info', message, { event, ...fields });
  }
  warn(event: string, message: string, fields?: LogFields): void {
    this.write('warn', message, { event, ...fields });
  }
  error(event: string, message: string, fields?: LogFields): void {
    this.write('error', message, { event, ...fields });
  }

  /** Written whatever the level except 'silent': for output the user turned on explicitly (metrics). `data` is the JSON line's payload. */
  always(event: string, message: string, data?: unknown): void {
    if (this.level === 'silent') return;
    if (this.format === 'json') this.sink(JSON.stringify(this.record('info', message, { event }, { data })));
    else this.sink(`[next-volume-cache] ${message}`);
  }

  /** Warns about `cause` once, then once per minute with how many were suppressed. */
  onceWarn(cause: string, message: string, fields: LogFields = {}): void {
    const now = Date.now();
    const seen = this.lastReported.get(cause);
    if (seen && now - seen.at < REPEAT_AFTER_MS) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    this.lastReported.set(cause, { at: now, suppressed: 0 });
    const event = fields.event ?? cause.split(':')[0]!;
    if (this.format === 'json') {
      this.write('warn', message, { ...fields, event }, { cause, ...(suppressed > 0 ? { suppressed } : {}) });
    } else {
      this.write('warn', message + (suppressed > 0 ? ` (${suppressed} more like this since the last report)` : ''), { ...fields, event });
    }
  }

  private write(level: Exclude<LogLevel, 'silent'>, message: string, fields: LogFields & { event: string }, extra: Partial<LogRecord> = {}): void {
    if (RANK[level] < RANK[this.level]) return;
    if (this.format === 'json') this.sink(JSON.stringify(this.record(level, message, fields, extra)));
    else this.sink(`[next-volume-cache] ${level}: ${message}`);
  }

  private record(level: LogRecord['level'], message: string, fields: LogFields & { event: string }, extra: Partial<LogRecord>): LogRecord {
    return {
      time: new Date().toISOString(),
      level,
      logger: 'next-volume-cache',
      event: fields.event,
      ...(extra.cause !== undefined ? { cause: extra.cause } : {}),
      message,
      ...(fields.keyHash ? { keyHash: fields.keyHash } : {}),
      ...(extra.suppressed !== undefined ? { suppressed: extra.suppressed } : {}),
      ...(extra.data !== undefined ? { data: extra.data } : {}),
    };
  }
}
