/**
 * Old names, kept working until 0.3: each is the same function as its new name (CHANGELOG.md). The old option
 * names (`lockTimeoutS`, `pollingDelayMs` of registerView, `lockSeconds` of leaseEvents) are still read.
 */
import { ackEvent, nackEvent, scheduleNackEvent } from './functions.js';

/** @deprecated use ackEvent (fstore-sql's `ack_event`); removed in 0.3 */
export const ack: typeof ackEvent = ackEvent;
/** @deprecated use nackEvent (fstore-sql's `nack_event`); removed in 0.3 */
export const nack: typeof nackEvent = nackEvent;
/** @deprecated use scheduleNackEvent (fstore-sql's `schedule_nack_event`); removed in 0.3 */
export const scheduleNack: typeof scheduleNackEvent = scheduleNackEvent;
