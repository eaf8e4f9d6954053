/**
 * OpenTelemetry's SDK with its in-memory span and metric exporters, registered globally for one test file (vitest
 * runs each file in a process of its own): the spans fstore records, and its metrics exported on demand.
 */
import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

export interface MetricPoint {
  name: string;
  unit: string;
  attributes: Record<string, unknown>;
  /** A counter's or a gauge's value; a histogram's count of records. */
  value: number;
}

export interface TestTelemetry {
  /** The spans ended so far. */
  spans(): ReadableSpan[];
  /** Every metric's data points as of now (gauges are read now). */
  collect(): Promise<MetricPoint[]>;
  uninstall(): Promise<void>;
}

export function installTelemetry(): TestTelemetry {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  // Exported when a test asks (forceFlush), not on the reader's timer: cumulative, so the last export has it all.
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({
    exporter: metricExporter,
    exportIntervalMillis: 3_600_000,
  });
  const meterProvider = new MeterProvider({ readers: [reader] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    spans: () => exporter.getFinishedSpans(),
    async collect() {
      await reader.forceFlush();
      const exported = metricExporter.getMetrics().at(-1);
      metricExporter.reset();
      return (exported?.scopeMetrics ?? []).flatMap((scope) =>
        scope.metrics.flatMap((metric) =>
          metric.dataPoints.map((point) => ({
            name: metric.descriptor.name,
            unit: metric.descriptor.unit,
            attributes: point.attributes,
            value: typeof point.value === 'number' ? point.value : (point.value as { count: number }).count,
          })),
        ),
      );
    },
    async uninstall() {
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
      trace.disable();
      metrics.disable();
      context.disable();
    },
  };
}

/** The span tree as indented lines, `name {attributes picked}`, children in start order. */
export function spanTree(
  spans: readonly ReadableSpan[],
  show: (span: ReadableSpan) => string = () => '',
): string[] {
  const byParent = new Map<string | undefined, ReadableSpan[]>();
  const ids = new Set(spans.map((span) => span.spanContext().spanId));
  for (const span of spans) {
    const parent = span.parentSpanContext?.spanId;
    const key = parent && ids.has(parent) ? parent : undefined;
    byParent.set(key, [...(byParent.get(key) ?? []), span]);
  }
  const lines: string[] = [];
  const walk = (parent: string | undefined, depth: number) => {
    const children = [...(byParent.get(parent) ?? [])].sort(
      (a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1],
    );
    for (const child of children) {
      lines.push(`${'  '.repeat(depth)}${child.name}${show(child)}`);
      walk(child.spanContext().spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}
