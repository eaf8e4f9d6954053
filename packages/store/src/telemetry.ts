/**
 * OpenTelemetry, when the application has it: `@opentelemetry/api` is an optional peer dependency, loaded here once
 * if it is installed. Without it, or without an SDK registered, every function below does nothing but run its work.
 * No OpenTelemetry type appears in fstore's public types, so a host without the package needs none of its types.
 *
 * Loaded with require (the API ships CommonJS too), not with a top-level await: a module with one could not be
 * require()d by a CommonJS host. Tracers and meters are asked for at each use, as the API advises: one taken
 * before the application registers its SDK would stay a no-op.
 */
import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';

type Api = typeof OtelApi;

function loadApi(): Api | undefined {
  try {
    return createRequire(import.meta.url)('@opentelemetry/api') as Api;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

const api = loadApi();
const scope = '@fstore/store';

export type SpanAttributes = Record<string, string | number | boolean | undefined>;

export interface SpanOptions {
  kind: 'internal' | 'client' | 'consumer';
  attributes?: SpanAttributes;
  /** W3C traceparents of the spans this one follows from (an event's append, for its handler). */
  links?: readonly (string | undefined)[];
  /** Start a trace of its own rather than a child of the active span (a worker's batch). */
  root?: boolean;
}

/** What the work inside a span may do with it. */
export interface SpanScope {
  setAttributes(attributes: SpanAttributes): void;
  /** This span as a W3C traceparent (to store with the events it appends), when it is being traced. */
  traceparent(): string | undefined;
}

const untraced: SpanScope = { setAttributes() {}, traceparent: () => undefined };

/**
 * Runs `work` in a span named `name`, active for everything it awaits, and ends the span with its outcome: an error
 * is recorded on it (status ERROR, `error.type`) and rethrown.
 */
export async function inSpan<T>(
  name: string,
  /** Or a function that gives them, called only when an SDK records spans: a worker's calls per event pay nothing. */
  spanOptions: SpanOptions | (() => SpanOptions),
  work: (span: SpanScope) => Promise<T>,
): Promise<T> {
  const tracer = registeredTracer();
  if (!api || !tracer) return work(untraced);
  const options = typeof spanOptions === 'function' ? spanOptions() : spanOptions;
  const { SpanKind, SpanStatusCode } = api;
  const kind = { internal: SpanKind.INTERNAL, client: SpanKind.CLIENT, consumer: SpanKind.CONSUMER }[
    options.kind
  ];
  const links = (options.links ?? []).flatMap((traceparent) => {
    const context = spanContextOf(traceparent);
    return context ? [{ context }] : [];
  });
  return tracer.startActiveSpan(
    name,
    { kind, attributes: defined(options.attributes), links, root: options.root },
    async (span) => {
      const scope: SpanScope = {
        setAttributes: (attributes) => span.setAttributes(defined(attributes)),
        traceparent: () => (span.isRecording() ? traceparentOf(span.spanContext()) : undefined),
      };
      try {
        return await work(scope);
      } catch (error) {
        span.setStatus({
          code: SpanStatusCode.ERROR,
          message: error instanceof Error ? error.message : String(error),
        });
        span.setAttribute('error.type', error instanceof Error ? error.name : typeof error);
        if (error instanceof Error) span.recordException(error);
        throw error;
      } finally {
        span.end();
      }
    },
  );
}

/**
 * The tracer of the registered SDK, or none: until an SDK registers, the API's provider is a proxy with no delegate,
 * and its spans would record nothing at about 3 µs each, a cost per event that a worker should not pay for nothing.
 */
function registeredTracer(): OtelApi.Tracer | undefined {
  const provider = api?.trace.getTracerProvider();
  if (!provider) return undefined;
  // Duck-typed: the proxy may come from another copy of the API than this one.
  const proxy = provider as Partial<OtelApi.ProxyTracerProvider>;
  return typeof proxy.getDelegateTracer === 'function'
    ? proxy.getDelegateTracer(scope)
    : provider.getTracer(scope);
}

/** Whether spans are being recorded (an SDK registered): hot paths skip their span's set-up when not. */
export function tracing(): boolean {
  return registeredTracer() !== undefined;
}

/** The active trace's id, if one is being traced: a correlation id for a command that came with none. */
export function activeTraceId(): string | undefined {
  const span = api?.trace.getActiveSpan();
  return span?.isRecording() ? span.spanContext().traceId : undefined;
}

const traceparentPattern = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function traceparentOf(context: OtelApi.SpanContext): string | undefined {
  if (!api?.trace.isSpanContextValid(context)) return undefined;
  const flags = (context.traceFlags & 0xff).toString(16).padStart(2, '0');
  return `00-${context.traceId}-${context.spanId}-${flags}`;
}

function spanContextOf(traceparent: string | undefined): OtelApi.SpanContext | undefined {
  const match = traceparentPattern.exec(traceparent?.trim() ?? '');
  if (!api || !match) return undefined;
  const context = {
    traceId: match[1] as string,
    spanId: match[2] as string,
    traceFlags: Number.parseInt(match[3] as string, 16) & api.TraceFlags.SAMPLED,
    isRemote: true,
  };
  return api.trace.isSpanContextValid(context) ? context : undefined;
}

function defined(attributes: SpanAttributes | undefined): OtelApi.Attributes {
  const kept: OtelApi.Attributes = {};
  for (const [key, value] of Object.entries(attributes ?? {})) if (value !== undefined) kept[key] = value;
  return kept;
}

export interface InstrumentOptions {
  description: string;
  unit: string;
}

export type MetricAttributes = Record<string, string>;

/** Instruments are kept per meter: a meter provider registered later (or again, in tests) gets its own. */
const instruments = new WeakMap<object, Map<string, unknown>>();

function instrument<T>(meterScope: string, name: string, create: (meter: OtelApi.Meter) => T): T | undefined {
  const meter = api?.metrics.getMeter(meterScope);
  if (!meter) return undefined;
  const ofMeter = instruments.get(meter) ?? new Map<string, unknown>();
  instruments.set(meter, ofMeter);
  if (!ofMeter.has(name)) ofMeter.set(name, create(meter));
  return ofMeter.get(name) as T;
}

/** Adds to the counter `name` of `meterScope`'s meter (nothing without the API, or without an SDK). */
export function addToCounter(
  meterScope: string,
  name: string,
  options: InstrumentOptions,
  value: number,
  attributes: MetricAttributes,
): void {
  instrument(meterScope, name, (meter) => meter.createCounter(name, options))?.add(value, attributes);
}

/** Records a value in the histogram `name` of `meterScope`'s meter. */
export function recordInHistogram(
  meterScope: string,
  name: string,
  options: InstrumentOptions,
  value: number,
  attributes: MetricAttributes,
): void {
  instrument(meterScope, name, (meter) => meter.createHistogram(name, options))?.record(value, attributes);
}

export interface GaugeReading {
  gauge: string;
  value: number;
  attributes: MetricAttributes;
}

/**
 * Observable gauges of `meterScope`'s meter, read together by `read` whenever the SDK collects (for the figures
 * one query gives at once). Returns what stops observing them.
 */
export function observeGauges(
  meterScope: string,
  gauges: Record<string, InstrumentOptions>,
  read: () => Promise<GaugeReading[]>,
): () => void {
  const meter = api?.metrics.getMeter(meterScope);
  if (!meter) return () => {};
  const observables = new Map(
    Object.entries(gauges).flatMap(([name, options]) => {
      const gauge = instrument(meterScope, name, (m) => m.createObservableGauge(name, options));
      return gauge ? [[name, gauge] as const] : [];
    }),
  );
  const callback: OtelApi.BatchObservableCallback = async (result) => {
    for (const reading of await read()) {
      const observable = observables.get(reading.gauge);
      if (observable) result.observe(observable, reading.value, reading.attributes);
    }
  };
  meter.addBatchObservableCallback(callback, [...observables.values()]);
  return () => meter.removeBatchObservableCallback(callback, [...observables.values()]);
}
