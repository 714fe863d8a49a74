import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics, trace } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

/**
 * The real OpenTelemetry SDK in this test process, as an app registers it:
 * a NodeTracerProvider (AsyncLocalStorage context) with an in-memory span
 * exporter, and a MeterProvider read by the real Prometheus exporter, whose
 * own request handler serves the text a Prometheus server would scrape.
 */
export interface Sdk {
  spans(): ReadableSpan[];
  /** What Prometheus would scrape from this process now. */
  scrape(): Promise<string>;
  /** Replaces the global meter provider (the library must follow). */
  replaceMeterProvider(): Promise<void>;
  shutdown(): Promise<void>;
}

export function registerSdk(): Sdk {
  const spanExporter = new InMemorySpanExporter();
  const tracerProvider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spanExporter)] });
  tracerProvider.register();
  let meter = newMeterProvider();
  metrics.setGlobalMeterProvider(meter.provider);
  return {
    spans: () => spanExporter.getFinishedSpans(),
    scrape: () => scrape(meter.exporter),
    async replaceMeterProvider() {
      await meter.provider.shutdown();
      metrics.disable();
      meter = newMeterProvider();
      metrics.setGlobalMeterProvider(meter.provider);
    },
    async shutdown() {
      await meter.provider.shutdown();
      await tracerProvider.shutdown();
      metrics.disable();
      trace.disable();
    },
  };
}

function newMeterProvider(): { provider: MeterProvider; exporter: PrometheusExporter } {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  return { provider: new MeterProvider({ readers: [exporter] }), exporter };
}

/** One scrape through the exporter's own HTTP handler, on a server of our own (port 0). */
async function scrape(exporter: PrometheusExporter): Promise<string> {
  const server = http.createServer((req, res) => exporter.getMetricsRequestHandler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
    return await res.text();
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}
