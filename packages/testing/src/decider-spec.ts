/**
 * Decider specifications with no database: given these events, when this command, then these events (or this
 * error, or this state). A decider is three functions, so its rules are tested by calling them; what this adds is the
 * fold of the given events and failures that say what was expected and what came, whatever the test runner.
 */

import { AssertionError } from 'node:assert';
import { deepStrictEqual } from 'node:assert/strict';
import type { Decider } from '@fstore/store';

export interface DeciderOutcome<TState, TEvent> {
  /** Passes when the command decides exactly these events, in this order (deep equality). */
  thenEvents(expected: readonly TEvent[]): Promise<void>;
  /** Passes when the command decides nothing. */
  thenNothing(): Promise<void>;
  /** Passes when the state after the given and the decided events equals `expected`. */
  thenState(expected: TState): Promise<void>;
  /**
   * Passes when deciding throws: an instance of the class, an error whose message matches the pattern, or one the
   * predicate accepts (any error, without an argument). Resolves to the error.
   */
  thenThrows(
    expected?: (abstract new (...args: never[]) => Error) | RegExp | ((error: unknown) => boolean),
  ): Promise<unknown>;
}

export interface DeciderSpecification<TCommand, TState, TEvent> {
  /** The stream so far (none: a new stream). */
  given(events: readonly TEvent[]): { when(command: TCommand): DeciderOutcome<TState, TEvent> };
}

/** Specifies `decider`: `await deciderSpec(decider).given([...]).when(command).thenEvents([...])`. */
export function deciderSpec<TCommand, TState, TEvent>(
  decider: Decider<TCommand, TState, TEvent>,
): DeciderSpecification<TCommand, TState, TEvent> {
  return {
    given(events) {
      return {
        when(command) {
          const state = events.reduce((folded, event) => decider.evolve(folded, event), decider.initialState);
          const decide = async () => decider.decide(command, state);
          return {
            async thenEvents(expected) {
              deepStrictEqual([...(await decide())], [...expected], 'the command decided other events');
            },
            async thenNothing() {
              deepStrictEqual(
                [...(await decide())],
                [],
                'the command decided events, where none were expected',
              );
            },
            async thenState(expected) {
              const decided = await decide();
              const after = decided.reduce((folded, event) => decider.evolve(folded, event), state);
              deepStrictEqual(after, expected, 'the state after the command is another');
            },
            async thenThrows(expected) {
              let decided: readonly TEvent[];
              try {
                decided = await decide();
              } catch (error) {
                const matches =
                  expected === undefined ||
                  (expected instanceof RegExp
                    ? error instanceof Error && expected.test(error.message)
                    : isClass(expected)
                      ? error instanceof expected
                      : expected(error));
                if (!matches)
                  throw new AssertionError({
                    message: `the command threw another error: ${describe(error)}`,
                    actual: error,
                    expected,
                  });
                return error;
              }
              throw new AssertionError({
                message: 'the command decided events, where an error was expected',
                actual: decided,
                expected,
              });
            },
          };
        },
      };
    },
  };
}

function isClass(value: unknown): value is abstract new (...args: never[]) => Error {
  return typeof value === 'function' && (value === Error || value.prototype instanceof Error);
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
