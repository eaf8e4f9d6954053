/** deciderSpec: given-when-then over a decider's three functions, with no database. */
import { AssertionError } from 'node:assert';
import { describe, expect, test } from 'vitest';
import { deciderSpec } from './decider-spec.js';
import { TaskRejected, taskDecider } from './test-support/tasks.js';

const spec = deciderSpec(taskDecider);
const added = { type: 'TaskAdded' as const, data: { title: 'write docs' } };

describe('passing specifications', () => {
  test('a new stream decides its first event', async () => {
    await spec.given([]).when({ kind: 'add', title: 'write docs' }).thenEvents([added]);
  });

  test('a command against the rules throws, and the error is handed back', async () => {
    const error = await spec.given([added]).when({ kind: 'add', title: 'again' }).thenThrows(TaskRejected);
    expect((error as Error).message).toBe('the task exists already');
    await spec
      .given([])
      .when({ kind: 'finish', by: 'Ada' })
      .thenThrows(/no such task/);
  });

  test('a command that changes nothing decides nothing; the state after the command', async () => {
    const done = { type: 'TaskDone' as const, data: { by: 'Ada' } };
    await spec.given([added, done]).when({ kind: 'finish', by: 'Grace' }).thenNothing();
    await spec
      .given([added])
      .when({ kind: 'finish', by: 'Ada' })
      .thenState({ title: 'write docs', done: true });
  });
});

describe('failing specifications say what was expected and what came', () => {
  test('other events', async () => {
    const failure = await spec
      .given([])
      .when({ kind: 'add', title: 'write docs' })
      .thenEvents([{ type: 'TaskAdded', data: { title: 'something else' } }])
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(AssertionError);
    expect((failure as AssertionError).message).toContain('something else');
  });

  test('events where an error was expected, another error, events where none were expected, another state', async () => {
    const failures = await Promise.all(
      [
        spec.given([]).when({ kind: 'add', title: 'x' }).thenThrows(TaskRejected),
        spec.given([added]).when({ kind: 'add', title: 'x' }).thenThrows(RangeError),
        spec.given([]).when({ kind: 'add', title: 'x' }).thenNothing(),
        spec.given([added]).when({ kind: 'finish', by: 'Ada' }).thenState(null),
      ].map((check) =>
        check.then(
          () => 'passed',
          (e: unknown) => (e instanceof AssertionError ? 'failed' : e),
        ),
      ),
    );
    expect(failures).toEqual(['failed', 'failed', 'failed', 'failed']);
  });
});
