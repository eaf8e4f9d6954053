/** A small decider and projection for the kit's own tests: tasks that are added, then done once. */
import { type Decider, defineEvents, type EventOf, event } from '@fstore/store';
import { sql } from 'drizzle-orm';

export const taskEvents = defineEvents('KitTask', {
  TaskAdded: event<{ title: string }>(),
  TaskDone: event<{ by: string }>(),
});
export type TaskEvent = EventOf<typeof taskEvents>;
export type TaskCommand = { kind: 'add'; title: string } | { kind: 'finish'; by: string };
export type TaskState = { title: string; done: boolean } | null;

export class TaskRejected extends Error {
  override name = 'TaskRejected';
}

export const taskDecider: Decider<TaskCommand, TaskState, TaskEvent> = {
  initialState: null,
  decide(command, state) {
    if (command.kind === 'add') {
      if (state) throw new TaskRejected('the task exists already');
      return [{ type: 'TaskAdded', data: { title: command.title } }];
    }
    if (!state) throw new TaskRejected('no such task');
    return state.done ? [] : [{ type: 'TaskDone', data: { by: command.by } }];
  },
  evolve(state, e) {
    return e.type === 'TaskAdded' ? { title: e.data.title, done: false } : state && { ...state, done: true };
  },
};

export const createOpenTasks = sql`CREATE TABLE IF NOT EXISTS open_tasks (id text PRIMARY KEY, title text NOT NULL)`;
