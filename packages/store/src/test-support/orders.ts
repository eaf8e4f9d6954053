/** A small decider for the tests: an order, with payloads validated by zod, valibot, arktype, or only typed. */
import { type } from 'arktype';
import * as v from 'valibot';
import { z } from 'zod';
import { defineEvents, event } from '../events.js';

export const orderEvents = defineEvents('Order', {
  OrderCreated: event({
    description: 'A customer opened an order',
    schema: z.object({
      customer: z.string().min(1),
      items: z.array(z.object({ sku: z.string(), quantity: z.number().int().positive() })),
    }),
  }),
  ItemAdded: event({
    schema: v.object({ sku: v.string(), quantity: v.pipe(v.number(), v.integer(), v.minValue(1)) }),
  }),
  NoteWritten: event({ schema: type({ text: 'string' }) }),
  OrderPlaced: event<{ placedAt: string }>({ description: 'The order went to the kitchen' }),
  OrderCancelled: event<{ reason: string }>({ final: true }),
});
