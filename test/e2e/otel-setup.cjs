// Registers the real OpenTelemetry SDK in a `next start` of the fixture (see fixtures/next-app/instrumentation.js):
//  - spans: a NodeTracerProvider (AsyncLocalStorage context, as an app's instrumentation sets it up) whose
//    processor writes each finished span as one JSON line to FIXTURE_OTEL_SPANS;
//  - metrics: the OpenTelemetry Prometheus exporter on 127.0.0.1:FIXTURE_OTEL_PROMETHEUS_PORT, the
//    per-process path the README documents; the test scrapes it as Prometheus would.
'use strict';
const fs = require('node:fs');
const api = require('@opentelemetry/api');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { MeterProvider } = require('@opentelemetry/sdk-metrics');
const { PrometheusExporter } = require('@opentelemetry/exporter-prometheus');

const spansFile = process.env.FIXTURE_OTEL_SPANS;
const fileExporter = {
  export(spans, done) {
    const lines = spans.map((s) =>
      JSON.stringify({
        name: s.name,
        scope: s.instrumentationScope.name,
        kind: s.kind,
        traceId: s.spanContext().traceId,
        spanId: s.spanContext().spanId,
        parentSpanId: s.parentSpanContext?.spanId,
        attributes: s.attributes,
        status: s.status,
      }),
    );
    fs.appendFileSync(spansFile, lines.map((l) => l + '\n').join(''));
    done({ code: 0 });
  },
  shutdown: () => Promise.resolve(),
  forceFlush: () => Promise.resolve(),
};
new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(fileExporter)] }).register();

const exporter = new PrometheusExporter({ host: '127.0.0.1', port: Number(process.env.FIXTURE_OTEL_PROMETHEUS_PORT) });
api.metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));
