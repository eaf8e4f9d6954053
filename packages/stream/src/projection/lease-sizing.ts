/**
 * How many streams one poll leases. Streams that fill their batches are leased as always: streamsPerTransaction per
 * free slot. While leases come back full of small streams (a backlog of one-event streams, say), each poll asks for
 * twice as many, up to maxStreamsPerLease: such a backlog then costs one lease and one acknowledgement per few
 * hundred streams, not per twenty.
 */

/**
 * The most streams a poll asks for while they come back small (unless streamsPerTransaction times the free slots is
 * more). Past a few hundred, lease_events' plan may turn to reading every lock row of the view.
 */
export const maxStreamsPerLease = 256;

export interface LeaseSizing {
  /** The streams to ask for, with `free` slots. */
  streams(free: number): number;
  /** What the last lease gave: `streams` streams holding `events` events, for `asked` streams asked. */
  observe(asked: number, streams: number, events: number): void;
}

export function leaseSizing({
  streamsPerTransaction,
  batchSize,
}: {
  streamsPerTransaction: number;
  batchSize: number;
}): LeaseSizing {
  let scale = 1;
  return {
    streams(free) {
      const usual = free * streamsPerTransaction;
      return Math.max(usual, Math.min(usual * scale, maxStreamsPerLease));
    },
    observe(asked, streams, events) {
      if (streams === 0) return;
      const perStream = events / streams;
      // Full and small: there is a backlog of small streams. Streams that come back big: lease as always.
      if (streams >= asked && perStream * 4 <= batchSize) scale = Math.min(scale * 2, maxStreamsPerLease);
      else if (perStream * 2 >= batchSize) scale = 1;
    },
  };
}
