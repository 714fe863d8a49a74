import type * as Otel from '@opentelemetry/api';
import { hashKey } from '../store/hash';
import { SHARED_NAMESPACE, USE_CACHE_NAMESPACE } from '../store/layout';
import { errorCode } from '../util/errors';
import { GateError } from '../util/gate';

/**
 * OpenTelemetry metrics and spans of the store service.
 *
 * `@opentelemetry/api` is an optional peer dependency. It is required once,
 * at the first runtime, and when it cannot be loaded every method here is a
 * shared no-op (a get costs one extra function call). Only our own types
 * are exported, so the published `.d.ts` never names the package.
 *
 * The API has no proxy meter: instruments made before the app registers its
 * SDK would stay no-ops for good. So they are made lazily and made again
 * whenever the global meter provider changes (one global lookup per call).
 * Attribute objects are built once per combination and reused: the SDK
 * hashes them on every call, and building them per call cost more than a
 * counter does without an SDK.
 *
 * Names (see the README's "Observability"): our own `next_volume_cache.*`
 * namespace (OpenTelemetry has no cache convention yet). Seconds and bytes
 * instruments end with their unit word, so that the Prometheus name is the
 * same through the JS Prometheus exporter (which adds no unit suffix) and
 * through OTLP and a collector (which adds none when the unit is already a
 * word of the name): the dashboard works with either. Attributes are bounded
 * sets only: never a key or a tag (a key's hash goes on spans only).
 */
export const METRIC = {
  gets: 'next_volume_cache.gets',
  getDuration: 'next_volume_cache.get.duration_seconds',
  sets: 'next_volume_cache.sets',
  setFailures: 'next_volume_cache.set.failures',
  setDuration: 'next_volume_cache.set.duration_seconds',
  invalidations: 'next_volume_cache.invalidations',
  invalidationFailures: 'next_volume_cache.invalidation.failures',
  invalidationLag: 'next_volume_cache.invalidation.lag_seconds',
  tagRefreshDuration: 'next_volume_cache.tag_refresh.duration_seconds',
  gateFailures: 'next_volume_cache.gate.failures',
  tagViewAge: 'next_volume_cache.tag_view.age_seconds',
  gateSlotUsage: 'next_volume_cache.gate.slot.usage',
  gateSlotLimit: 'next_volume_cache.gate.slot.limit',
  memoryUsage: 'next_volume_cache.memory.usage_bytes',
  memoryLimit: 'next_volume_cache.memory.limit_bytes',
  memoryEntries: 'next_volume_cache.memory.entries',
} as const;

export const ATTRIBUTE = {
  app: 'next_volume_cache.app',
  namespaceKind: 'next_volume_cache.namespace.kind',
  entryKind: 'next_volume_cache.entry.kind',
  outcome: 'next_volume_cache.get.outcome',
  missCause: 'next_volume_cache.miss.cause',
  phase: 'next_volume_cache.invalidation.phase',
  operation: 'next_volume_cache.operation',
  slotState: 'next_volume_cache.gate.slot.state',
  /** Spans only: a key's hash (what the CLI's `inspect` and the logs show), never on metrics. */
  keyHash: 'next_volume_cache.key.hash',
  tagCount: 'next_volume_cache.tag.count',
  errorType: 'error.type',
} as const;

export const SPAN = {
  get: 'next_volume_cache.get',
  set: 'next_volume_cache.set',
  revalidateTag: 'next_volume_cache.revalidate_tag',
  refreshTags: 'next_volume_cache.refresh_tags',
} as const;

/** The instrumentation scope (tracer and meter name). */
export const SCOPE = 'next-volume-cache';

export type NamespaceKind = 'build' | 'shared' | 'use-cache';

/** Where an entry lives: one build's namespace, shared across builds, or the 'use cache' namespace. */
export function namespaceKindOf(namespace: string): NamespaceKind {
  return namespace === SHARED_NAMESPACE ? 'shared' : namespace === USE_CACHE_NAMESPACE ? 'use-cache' : 'build';
}

const ENTRY_KINDS = new Map([
  ['APP_PAGE', 'app_page'],
  ['APP_ROUTE', 'app_route'],
  ['PAGES', 'pages'],
  ['FETCH', 'fetch'],
  ['REDIRECT', 'redirect'],
  ['IMAGE', 'image'],
  ['USE_CACHE', 'use_cache'],
  ['NULL', 'empty'],
]);

/** Next's value kind (APP_PAGE, FETCH, ...) as a label value; anything unexpected is "other", so the set stays bounded. */
export function entryKindOf(kind: string | undefined): string {
  return kind === undefined ? 'unknown' : (ENTRY_KINDS.get(kind) ?? 'other');
}

/** Miss causes that are a failure of the operation (span status ERROR), not an answer about the entry. */
const FAILED_MISSES = new Set(['io-error', 'timeout', 'saturated', 'unavailable', 'tags-unavailable']);

/** Past this many distinct attribute combinations of one call site, new ones are folded into "_OTHER" (cardinality guard). */
const MAX_COMBINATIONS = 64;

/** What a get answered, as the service reports it. */
export type GetResult = { status: 'hit'; verdict?: 'fresh' | 'stale'; fromMemory?: boolean } | { status: 'miss'; reason: string };

/** What a set did: undefined when it was stored, else why not (an error, or a word such as "unavailable"). */
export type SetResult = { failed: unknown } | undefined;

/** Labels of one call: where the entry lives and Next's kind for it (undefined when the caller does not know). */
export interface CallLabels {
  namespace: string;
  kind: string | undefined;
}

/** Point-in-time figures the observable gauges report for one runtime. */
export interface GaugeReadings {
  /** ms since the tag view was last brought up to date; undefined before its first load. */
  tagViewAgeMs: number | undefined;
  gate: { active: number; stuck: number; limit: number };
  memory: { bytes: number; entries: number; maxBytes: number };
}

/** The store service's instrumentation for one runtime (one app on one cache root). */
export interface ServiceTelemetry {
  /** Runs a get in a span and counts its outcome and latency. */
  get<T extends GetResult>(labels: CallLabels, key: string | undefined, work: () => Promise<T>): Promise<T>;
  /** Whether gets are recorded (metrics or spans) now: while they are, every get goes through get(). */
  observesGets(): boolean;
  /** Runs a set in a span and counts it, its failure and its latency. */
  set(labels: CallLabels, key: string | undefined, work: () => Promise<SetResult>): Promise<void>;
  /** Runs revalidateTag / updateTags in a span; a rejection is counted and passed on. */
  revalidateTag(tagCount: number, work: () => Promise<void>): Promise<void>;
  /** Runs a 'use cache' refreshTags in a span. */
  refreshTags(work: () => Promise<void>): Promise<void>;
  /** A filesystem sequence missed its deadline or found the gate saturated, during `operation` (get, set, tag-refresh, lease, ...). */
  gateFailed(operation: string, reason: string): void;
  /** The tag view was brought up to date (or failed to be) in this time, gate wait included. */
  tagRefreshed(ms: number, error: unknown): void;
  /** An invalidation was recorded durably by this process. */
  invalidationRecorded(): void;
  /** Invalidations recorded by other processes were read and applied here, each this long (ms, volume clock) after it was made. */
  invalidationsApplied(lagsMs: readonly number[]): void;
  /** Stops reporting this runtime's gauges. */
  close(): void;
}

const NOOP: ServiceTelemetry = {
  get: (_labels, _key, work) => work(),
  observesGets: () => false,
  set: async (_labels, _key, work) => void (await work()),
  revalidateTag: (_count, work) => work(),
  refreshTags: (work) => work(),
  gateFailed: () => {},
  tagRefreshed: () => {},
  invalidationRecorded: () => {},
  invalidationsApplied: () => {},
  close: () => {},
};

type Api = typeof Otel;
let api: Api | null | undefined;

/** `@opentelemetry/api`, required once; undefined when it is not installed. */
function loadApi(): Api | undefined {
  if (api === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      api = require('@opentelemetry/api') as Api;
    } catch {
      api = null;
    }
  }
  return api ?? undefined;
}

/** Whether `@opentelemetry/api` could be loaded in this process. */
export function telemetryAvailable(): boolean {
  return loadApi() !== undefined;
}

/** The instrumentation of one runtime: a no-op when `@opentelemetry/api` is not installed. */
export function createTelemetry(app: string, readings: () => GaugeReadings): ServiceTelemetry {
  const otel = loadApi();
  return otel ? new OtelTelemetry(otel, app, readings) : NOOP;
}

/** Latency buckets in seconds: a memory hit is tens of µs, a volume read ms, a hung mount the full timeout. */
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Lag buckets in seconds: the tag refresh interval (1 s by default) up to the 30 s full scan and beyond. */
const LAG_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300];

interface Instruments {
  provider: Otel.MeterProvider;
  /** False while no SDK is registered (the API's no-op provider): a call then skips its timing and attributes. */
  recording: boolean;
  gets: Otel.Counter;
  getDuration: Otel.Histogram;
  sets: Otel.Counter;
  setFailures: Otel.Counter;
  setDuration: Otel.Histogram;
  invalidations: Otel.Counter;
  invalidationFailures: Otel.Counter;
  invalidationLag: Otel.Histogram;
  tagRefreshDuration: Otel.Histogram;
  gateFailures: Otel.Counter;
}

let instruments: Instruments | undefined;

/** The instruments of the current global meter provider, made at the first call after it changed. */
function currentInstruments(otel: Api): Instruments {
  const provider = otel.metrics.getMeterProvider();
  if (instruments?.provider !== provider) instruments = createInstruments(provider);
  return instruments;
}

function createInstruments(provider: Otel.MeterProvider): Instruments {
  const meter = provider.getMeter(SCOPE);
  const seconds = (description: string, buckets: number[]): Otel.MetricOptions => ({ unit: 's', description, advice: { explicitBucketBoundaries: buckets } });
  createGauges(meter);
  return {
    provider,
    recording: !isNoop(provider),
    gets: meter.createCounter(METRIC.gets, { unit: '{get}', description: 'Cache gets, by outcome (hit, stale, memory_hit, miss) and miss cause' }),
    getDuration: meter.createHistogram(METRIC.getDuration, seconds('Duration of cache gets, volume wait included', LATENCY_BUCKETS)),
    sets: meter.createCounter(METRIC.sets, { unit: '{set}', description: 'Cache sets attempted' }),
    setFailures: meter.createCounter(METRIC.setFailures, { unit: '{failure}', description: 'Cache sets that did not store the entry, by error.type' }),
    setDuration: meter.createHistogram(METRIC.setDuration, seconds('Duration of cache sets', LATENCY_BUCKETS)),
    invalidations: meter.createCounter(METRIC.invalidations, { unit: '{invalidation}', description: 'Tag invalidations recorded by this process, and applied here from other processes' }),
    invalidationFailures: meter.createCounter(METRIC.invalidationFailures, { unit: '{failure}', description: 'revalidateTag calls whose invalidation could not be recorded, by error.type' }),
    invalidationLag: meter.createHistogram(METRIC.invalidationLag, seconds("Time from another process's invalidation (volume clock) to its application here", LAG_BUCKETS)),
    tagRefreshDuration: meter.createHistogram(METRIC.tagRefreshDuration, seconds('Duration of tag view refreshes, gate wait included', LATENCY_BUCKETS)),
    gateFailures: meter.createCounter(METRIC.gateFailures, { unit: '{failure}', description: 'Filesystem sequences that timed out or found every slot held by a hung call, by operation and error.type' }),
  };
}

/** The API's own no-op providers (what it hands out until an SDK registers); their classes are not exported. */
function isNoop(provider: object | undefined): boolean {
  return provider?.constructor.name.startsWith('Noop') === true;
}

/** Whether a tracer provider is registered: the API's global is a proxy whose delegate is its no-op until then. */
function tracing(otel: Api): boolean {
  const provider = otel.trace.getTracerProvider() as Otel.TracerProvider & { getDelegate?: () => Otel.TracerProvider };
  return !isNoop(provider.getDelegate ? provider.getDelegate() : provider);
}

/** A runtime whose gauges are reported: its app's attributes and how to read it. */
interface GaugeSource {
  app: string;
  read(): GaugeReadings;
}

const gaugeSources = new Set<GaugeSource>();

/** Runtimes of one app (on several roots) are reported as one: sums, and the oldest tag view. */
function readingsByApp(): Map<string, GaugeReadings> {
  const byApp = new Map<string, GaugeReadings>();
  for (const source of gaugeSources) {
    const r = source.read();
    const seen = byApp.get(source.app);
    if (!seen) {
      byApp.set(source.app, { tagViewAgeMs: r.tagViewAgeMs, gate: { ...r.gate }, memory: { ...r.memory } });
      continue;
    }
    if (r.tagViewAgeMs !== undefined) seen.tagViewAgeMs = Math.max(seen.tagViewAgeMs ?? 0, r.tagViewAgeMs);
    for (const k of ['active', 'stuck', 'limit'] as const) seen.gate[k] += r.gate[k];
    for (const k of ['bytes', 'entries', 'maxBytes'] as const) seen.memory[k] += r.memory[k];
  }
  return byApp;
}

function createGauges(meter: Otel.Meter): void {
  const gauge = (name: string, unit: string, description: string, observe: (r: GaugeReadings, app: string, result: Otel.ObservableResult) => void): void => {
    meter.createObservableGauge(name, { unit, description }).addCallback((result) => {
      for (const [app, r] of readingsByApp()) observe(r, app, result);
    });
  };
  const appAttrs = (app: string): Otel.Attributes => ({ [ATTRIBUTE.app]: app });
  gauge(METRIC.tagViewAge, 's', 'Time since the tag view was last brought up to date (refreshed on demand: an idle process grows old)', (r, app, result) => {
    if (r.tagViewAgeMs !== undefined) result.observe(r.tagViewAgeMs / 1000, appAttrs(app));
  });
  gauge(METRIC.gateSlotUsage, '{slot}', 'Filesystem slots in use: active, and stuck (held by a call that missed its deadline)', (r, app, result) => {
    result.observe(r.gate.active, { ...appAttrs(app), [ATTRIBUTE.slotState]: 'active' });
    result.observe(r.gate.stuck, { ...appAttrs(app), [ATTRIBUTE.slotState]: 'stuck' });
  });
  gauge(METRIC.gateSlotLimit, '{slot}', 'Filesystem slots in all (the concurrency setting)', (r, app, result) => result.observe(r.gate.limit, appAttrs(app)));
  gauge(METRIC.memoryUsage, 'By', 'Bytes of decoded entries held by the memory tier', (r, app, result) => result.observe(r.memory.bytes, appAttrs(app)));
  gauge(METRIC.memoryLimit, 'By', "The memory tier's byte bound (0: off)", (r, app, result) => result.observe(r.memory.maxBytes, appAttrs(app)));
  gauge(METRIC.memoryEntries, '{entry}', 'Entries held by the memory tier', (r, app, result) => result.observe(r.memory.entries, appAttrs(app)));
}

/** Attribute objects of one (namespace kind, entry kind), and of its outcomes and failures, each built once. */
class CallAttributes {
  private readonly byOutcome = new Map<string, { counter: Otel.Attributes; histogram: Otel.Attributes }>();
  private readonly byError = new Map<string, Otel.Attributes>();

  constructor(readonly base: Otel.Attributes) {}

  outcome(outcome: string, cause: string | undefined): { counter: Otel.Attributes; histogram: Otel.Attributes } {
    const id = cause === undefined ? outcome : `${outcome}\u0000${cause}`;
    let found = this.byOutcome.get(id);
    if (!found) {
      if (this.byOutcome.size >= MAX_COMBINATIONS) return this.outcome(outcome, cause === undefined ? undefined : '_OTHER');
      const histogram = Object.freeze({ ...this.base, [ATTRIBUTE.outcome]: outcome });
      found = { counter: cause === undefined ? histogram : Object.freeze({ ...histogram, [ATTRIBUTE.missCause]: cause }), histogram };
      this.byOutcome.set(id, found);
    }
    return found;
  }

  failure(errorType: string): Otel.Attributes {
    let found = this.byError.get(errorType);
    if (!found) {
      if (this.byError.size >= MAX_COMBINATIONS) return this.failure('_OTHER');
      found = Object.freeze({ ...this.base, [ATTRIBUTE.errorType]: errorType });
      this.byError.set(errorType, found);
    }
    return found;
  }
}

/** `error.type` of a failure: the gate's reason, an errno-style code, or the error's class; `_OTHER` for anything else (semantic conventions). */
export function errorTypeOf(error: unknown): string {
  if (error instanceof GateError) return error.reason;
  if (typeof error === 'string' && /^[a-z][a-z-]{0,31}$/.test(error)) return error;
  const code = errorCode(error);
  if (code && /^E[A-Z0-9_]{1,31}$/.test(code)) return code;
  if (error instanceof Error && /^([A-Z][A-Za-z]{0,58})?Error$/.test(error.name)) return error.name;
  return '_OTHER';
}

class OtelTelemetry implements ServiceTelemetry {
  private readonly tracer: Otel.Tracer;
  private readonly appAttributes: Otel.Attributes;
  private readonly calls = new Map<NamespaceKind, Map<string, CallAttributes>>();
  /** Attribute sets of a few fixed words (phase, operation and error type). */
  private readonly small = new Map<string, Otel.Attributes>();
  private readonly source: GaugeSource;

  constructor(
    private readonly otel: Api,
    app: string,
    readings: () => GaugeReadings,
  ) {
    // A ProxyTracer: it follows a tracer provider registered later.
    this.tracer = otel.trace.getTracer(SCOPE);
    this.appAttributes = Object.freeze({ [ATTRIBUTE.app]: app });
    this.source = { app, read: readings };
    gaugeSources.add(this.source);
  }

  observesGets(): boolean {
    return currentInstruments(this.otel).recording || this.tracing();
  }

  async get<T extends GetResult>(labels: CallLabels, key: string | undefined, work: () => Promise<T>): Promise<T> {
    const meters = currentInstruments(this.otel);
    const tracing = this.tracing();
    if (!meters.recording && !tracing) return work();
    const attrs = this.callAttributes(labels);
    const started = performance.now();
    const span = tracing ? this.startSpan(SPAN.get, attrs.base) : undefined;
    const result = await this.run(span, work);
    const seconds = (performance.now() - started) / 1000;
    const { outcome, cause } = classify(result);
    const { counter, histogram } = attrs.outcome(outcome, cause);
    meters.gets.add(1, counter);
    meters.getDuration.record(seconds, histogram);
    if (span) {
      span.setAttribute(ATTRIBUTE.outcome, outcome);
      if (cause !== undefined) span.setAttribute(ATTRIBUTE.missCause, cause);
      if (cause !== undefined && FAILED_MISSES.has(cause)) this.markFailed(span, cause, undefined);
      this.endSpan(span, key);
    }
    return result;
  }

  async set(labels: CallLabels, key: string | undefined, work: () => Promise<SetResult>): Promise<void> {
    const meters = currentInstruments(this.otel);
    const tracing = this.tracing();
    if (!meters.recording && !tracing) return void (await work());
    const attrs = this.callAttributes(labels);
    const started = performance.now();
    const span = tracing ? this.startSpan(SPAN.set, attrs.base) : undefined;
    const result = await this.run(span, work);
    meters.sets.add(1, attrs.base);
    meters.setDuration.record((performance.now() - started) / 1000, attrs.base);
    if (result) {
      const type = errorTypeOf(result.failed);
      meters.setFailures.add(1, attrs.failure(type));
      if (span) this.markFailed(span, type, result.failed);
    }
    if (span) this.endSpan(span, key);
  }

  async revalidateTag(tagCount: number, work: () => Promise<void>): Promise<void> {
    const span = this.startSpan(SPAN.revalidateTag, this.appAttributes);
    try {
      await (span ? this.inSpan(span, work) : work());
    } catch (error) {
      const type = errorTypeOf(error);
      currentInstruments(this.otel).invalidationFailures.add(1, { ...this.appAttributes, [ATTRIBUTE.errorType]: type });
      if (span) this.markFailed(span, type, error);
      throw error;
    } finally {
      span?.setAttribute(ATTRIBUTE.tagCount, tagCount);
      span?.end();
    }
  }

  async refreshTags(work: () => Promise<void>): Promise<void> {
    const span = this.startSpan(SPAN.refreshTags, this.appAttributes);
    try {
      await (span ? this.inSpan(span, work) : work());
    } finally {
      span?.end();
    }
  }

  gateFailed(operation: string, reason: string): void {
    currentInstruments(this.otel).gateFailures.add(1, this.operationAttributes(operation, reason));
  }

  tagRefreshed(ms: number, error: unknown): void {
    const attrs = error === undefined ? this.appAttributes : this.operationAttributes('tag-refresh', errorTypeOf(error));
    currentInstruments(this.otel).tagRefreshDuration.record(ms / 1000, attrs);
  }

  invalidationRecorded(): void {
    currentInstruments(this.otel).invalidations.add(1, this.phaseAttributes('recorded'));
  }

  invalidationsApplied(lagsMs: readonly number[]): void {
    if (lagsMs.length === 0) return;
    const meters = currentInstruments(this.otel);
    meters.invalidations.add(lagsMs.length, this.phaseAttributes('applied'));
    for (const lag of lagsMs) meters.invalidationLag.record(Math.max(0, lag) / 1000, this.appAttributes);
  }

  close(): void {
    gaugeSources.delete(this.source);
  }

  /** Attribute sets of a few fixed words (phase, operation and error type), built once each. */
  private cachedAttributes(id: string, build: () => Otel.Attributes): Otel.Attributes {
    let found = this.small.get(id);
    if (!found) {
      if (this.small.size >= MAX_COMBINATIONS) return this.appAttributes;
      found = Object.freeze(build());
      this.small.set(id, found);
    }
    return found;
  }

  private phaseAttributes(phase: 'recorded' | 'applied'): Otel.Attributes {
    return this.cachedAttributes(`phase\u0000${phase}`, () => ({ ...this.appAttributes, [ATTRIBUTE.phase]: phase }));
  }

  private operationAttributes(operation: string, errorType: string): Otel.Attributes {
    return this.cachedAttributes(`op\u0000${operation}\u0000${errorType}`, () => ({ ...this.appAttributes, [ATTRIBUTE.operation]: operation, [ATTRIBUTE.errorType]: errorType }));
  }

  private callAttributes(labels: CallLabels): CallAttributes {
    const namespaceKind = namespaceKindOf(labels.namespace);
    const entryKind = entryKindOf(labels.kind);
    let byKind = this.calls.get(namespaceKind);
    if (!byKind) this.calls.set(namespaceKind, (byKind = new Map<string, CallAttributes>()));
    let found = byKind.get(entryKind);
    if (!found) {
      found = new CallAttributes(Object.freeze({ ...this.appAttributes, [ATTRIBUTE.namespaceKind]: namespaceKind, [ATTRIBUTE.entryKind]: entryKind }));
      byKind.set(entryKind, found);
    }
    return found;
  }

  private tracing(): boolean {
    return tracing(this.otel);
  }

  /**
   * A span, child of the active one (Next's request span, or its render
   * span), or undefined when nothing would record it (no SDK, or not
   * sampled): then the work runs without entering a new context.
   */
  private startSpan(name: string, attributes: Otel.Attributes): Otel.Span | undefined {
    if (!this.tracing()) return undefined;
    const span = this.tracer.startSpan(name, { kind: this.otel.SpanKind.INTERNAL, attributes });
    if (span.isRecording()) return span;
    span.end();
    return undefined;
  }

  private inSpan<T>(span: Otel.Span, work: () => Promise<T>): Promise<T> {
    const { context, trace } = this.otel;
    return context.with(trace.setSpan(context.active(), span), work);
  }

  /** Runs work that should never throw (gets and sets answer with a result): if it does, the span still ends, as failed. */
  private async run<T>(span: Otel.Span | undefined, work: () => Promise<T>): Promise<T> {
    if (!span) return work();
    try {
      return await this.inSpan(span, work);
    } catch (error) {
      this.markFailed(span, errorTypeOf(error), error);
      span.end();
      throw error;
    }
  }

  private markFailed(span: Otel.Span, errorType: string, error: unknown): void {
    span.setAttribute(ATTRIBUTE.errorType, errorType);
    span.setStatus({ code: this.otel.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : errorType });
    if (error instanceof Error) span.recordException(error);
  }

  private endSpan(span: Otel.Span, key: string | undefined): void {
    const hash = key === undefined ? undefined : keyHashOf(key);
    if (hash) span.setAttribute(ATTRIBUTE.keyHash, hash);
    span.end();
  }
}

function classify(result: GetResult): { outcome: string; cause: string | undefined } {
  if (result.status === 'miss') return { outcome: 'miss', cause: result.reason };
  if (result.fromMemory) return { outcome: 'memory_hit', cause: undefined };
  return { outcome: result.verdict === 'stale' ? 'stale' : 'hit', cause: undefined };
}

/** The key's hash as the store names its file; undefined before the hasher is loaded (a get on a volume that never opened). */
function keyHashOf(key: string): string | undefined {
  try {
    return hashKey(key);
  } catch {
    return undefined;
  }
}
