/** Producers: many streams appended at once, recording what the store acknowledged. */
import { randomUUID } from 'node:crypto';
import { type EventStore, isConnectionError } from '@fstore/store';
import { type counterEvents, sleep } from './scenario-fixtures.js';

export interface ProduceOptions {
  /** The streams (decider ids) to append to, all at once, each from its own loop. */
  streams: readonly string[];
  eventsPerStream: number;
  /** Up to this many events per append (one command), chosen at random. Default 1. */
  maxEventsPerAppend?: number;
  /** A pause between two appends of one stream. Default 0. */
  pauseMs?: number;
  /** Retry an append that failed on a connection error, with the same event and command ids. Default false. */
  retryConnectionErrors?: boolean;
  /** Give up (throw) when an append has not succeeded by then. */
  deadline: number;
  /**
   * Once a stream has its eventsPerStream, keep appending to it while this returns true (for scenarios that need
   * appends to last until something else is done). Default: stop at eventsPerStream.
   */
  keepGoing?: () => boolean;
}

export interface Produced {
  /** Per stream, the ids of the events the store acknowledged, in the order appended. */
  acknowledged: Map<string, string[]>;
  /** Appends retried after a connection error. */
  retries: number;
  /** The messages of the errors that were retried, counted (for the report). */
  retriedErrors: Map<string, number>;
}

/** The code and message of the driver's error under Drizzle's wrapping, for counting retried errors. */
function describeCause(error: unknown): string {
  let current = error;
  while ((current as { cause?: unknown })?.cause) current = (current as { cause?: unknown }).cause;
  const code = (current as { code?: unknown })?.code;
  return `${typeof code === 'string' ? code : '?'}: ${current instanceof Error ? current.message : String(current)}`;
}

/** Appends `eventsPerStream` Counter events to every stream, the streams concurrently, and records what succeeded. */
export async function produce(
  store: EventStore<typeof counterEvents>,
  options: ProduceOptions,
): Promise<Produced> {
  const produced: Produced = { acknowledged: new Map(), retries: 0, retriedErrors: new Map() };
  const maxPerAppend = options.maxEventsPerAppend ?? 1;
  await Promise.all(
    options.streams.map(async (stream) => {
      const acknowledged: string[] = [];
      produced.acknowledged.set(stream, acknowledged);
      while (acknowledged.length < options.eventsPerStream || options.keepGoing?.()) {
        const count = Math.min(
          Math.max(options.eventsPerStream - acknowledged.length, 1),
          1 + Math.floor(Math.random() * maxPerAppend),
        );
        const ids = Array.from({ length: count }, () => randomUUID());
        const batch = ids.map((eventId, index) => ({
          type: 'Incremented' as const,
          data: { n: acknowledged.length + index + 1 },
          eventId,
        }));
        const expectedLastEventId = acknowledged.at(-1) ?? null;
        const commandId = randomUUID();
        for (let attempt = 1; ; attempt++) {
          try {
            const stored = await store.append(stream, batch, { expectedLastEventId, commandId });
            const storedIds = stored.map((stored) => stored.eventId);
            if (storedIds.join() !== ids.join()) {
              throw new Error(
                `stream ${stream}: appended ${ids.join()} but the store answered ${storedIds.join()}`,
              );
            }
            acknowledged.push(...ids);
            break;
          } catch (error) {
            if (!options.retryConnectionErrors || !isConnectionError(error)) throw error;
            if (Date.now() > options.deadline) {
              throw new Error(`stream ${stream}: still failing after ${attempt} attempts`, { cause: error });
            }
            produced.retries++;
            const key = describeCause(error).slice(0, 120);
            produced.retriedErrors.set(key, (produced.retriedErrors.get(key) ?? 0) + 1);
            await sleep(Math.min(500, 25 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2));
          }
        }
        if (options.pauseMs) await sleep(options.pauseMs * (0.5 + Math.random()));
      }
    }),
  );
  return produced;
}
