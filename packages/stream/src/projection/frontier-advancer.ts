/**
 * Moves the view's frontier ahead of the leases while a backlog lasts. lease_events advances the view itself, a
 * chunk of the log per call, and a worker alone on a view would wait for each chunk before leasing anything. Here
 * the next chunks are read into lock rows on another connection meanwhile. advance_view takes the frontier with
 * SKIP LOCKED: it and the leases (of this worker or any other) never wait on each other.
 */
import { advanceView } from '../functions.js';
import { describeError, type ProjectionContext } from './context.js';

/** Events per advance_view call: the function's own default. */
const chunk = 10_000;

export interface FrontierAdvancer {
  /** A lease came back full: advance until the frontier reaches the log's head (unless already advancing). */
  nudge(): void;
  /** Stops after the call in flight. */
  stop(): Promise<void>;
}

export function frontierAdvancer({ db, view, logger }: ProjectionContext): FrontierAdvancer {
  let running: Promise<void> | undefined;
  let stopped = false;
  async function advance() {
    try {
      // A full chunk means more may follow; less means the head is reached (or another consumer advances).
      while (!stopped && (await advanceView(db, view, chunk)) >= chunk);
    } catch (error) {
      logger.warn('advancing the view failed; leases advance it', { view, error: describeError(error) });
    } finally {
      running = undefined;
    }
  }
  return {
    nudge() {
      if (!running && !stopped) running = advance();
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}
