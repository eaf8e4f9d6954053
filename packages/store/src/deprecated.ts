/**
 * Old names, kept working until 0.3: each is the same function, class or type as its new name (CHANGELOG.md).
 * The helpers moved to @fstore/store/internal: they are there for @fstore/stream, not for hosts.
 */
import * as internal from './internal.js';

/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export const queryRows: typeof internal.queryRows = internal.queryRows;
/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export const rowDecoder: typeof internal.rowDecoder = internal.rowDecoder;
/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export const decodeEventRow: typeof internal.decodeEventRow = internal.decodeEventRow;
/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export const databaseError: typeof internal.databaseError = internal.databaseError;
/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export const Issues: typeof internal.Issues = internal.Issues;
/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export type Issues = internal.Issues;
/** @deprecated import it from '@fstore/store/internal'; removed in 0.3 */
export const limits: typeof internal.limits = internal.limits;
