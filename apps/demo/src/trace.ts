/**
 * `pnpm demo -- --trace`: OpenTelemetry's SDK, registered as an application would (fstore itself only depends on
 * `@opentelemetry/api`), keeping the spans in memory; at the end, the span tree of one order: each command that
 * decided it (its load and its append; a command its rules refused, by its error), and under each append the
 * projection handlers that its events reached, in other traces, through the link that each handler's span keeps to
 * the append.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

export interface DemoTracing {
  /** The span tree of the order whose commands were traced first, as lines to print. */
  orderTree(): string[];
  stop(): Promise<void>;
}

export function startTracing(): DemoTracing {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  return {
    orderTree: () => orderTree(exporter.getFinishedSpans()),
    async stop() {
      await provider.shutdown();
      trace.disable();
      context.disable();
    },
  };
}

const idOf = (span: ReadableSpan) => span.spanContext().spanId;

/** One order's commands, oldest first, each with its children and the handler spans linked to its appends. */
export function orderTree(spans: readonly ReadableSpan[]): string[] {
  const firstOrder = spans.find((span) => span.name === 'handle Order');
  const orderId = firstOrder?.attributes['fstore.decider_id'];
  if (typeof orderId !== 'string') return ['(no order was traced)'];
  const ofOrder = spans.filter((span) => span.attributes['fstore.decider_id'] === orderId);
  const byId = new Map(spans.map((span) => [idOf(span), span]));
  const childrenOf = (parent: ReadableSpan) =>
    ofOrder.filter((span) => span.parentSpanContext?.spanId === idOf(parent)).sort(byStart);
  const handlersOf = (append: ReadableSpan) =>
    ofOrder.filter((span) => span.links.some((link) => link.context.spanId === idOf(append))).sort(byStart);
  const lines = [`trace of ${orderId}`];
  const commands = ofOrder.filter((span) => span.name === 'handle Order').sort(byStart);
  for (const command of commands) {
    const a = command.attributes;
    if (command.status.code === 2) {
      lines.push(`${command.name}  ${ms(command)}  rejected: ${a['error.type']}`);
      continue;
    }
    lines.push(
      `${command.name}  ${ms(command)}  ${plural(Number(a['fstore.event_count']), 'event')}, ${plural(Number(a['fstore.command.attempts']), 'attempt')}, ${plural(Number(a['fstore.command.conflicts']), 'conflict')}`,
    );
    for (const child of childrenOf(command)) {
      const failed = child.status.code === 2 ? `  refused: ${child.attributes['error.type']}` : '';
      lines.push(`  ${child.name}  ${ms(child)}${failed}`);
      if (!child.name.startsWith('append ')) continue;
      for (const handler of handlersOf(child)) {
        const batch = byId.get(handler.parentSpanContext?.spanId ?? '');
        const inBatch = batch
          ? ` (in ${batch.name}, a batch of ${batch.attributes['messaging.batch.message_count']} events)`
          : '';
        lines.push(
          `    -> ${handler.name} for ${handler.attributes['fstore.view']}  ${ms(handler)}${inBatch}`,
        );
      }
    }
  }
  return lines;
}

function byStart(a: ReadableSpan, b: ReadableSpan) {
  return a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1];
}

function ms(span: ReadableSpan) {
  return `${(span.duration[0] * 1000 + span.duration[1] / 1e6).toFixed(1)} ms`;
}

function plural(count: number, noun: string) {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
