/**
 * M1: peak resident memory of one worker process streaming a long backlog, and of a process iterating one very long
 * stream, at two sizes: flat means the larger size does not cost more. Both run as deployed: plain Node.js on the
 * built packages (deployed-worker.mjs), not under the TypeScript loader, which alone holds about 30 MB more. For
 * reference, postgres.js alone reads the same events in pages (no fstore loaded): the floor the library adds to.
 */
import type { BenchContext, Figure } from '../context.js';
import { drained, writeBacklog } from '../dataset.js';
import { runConsumers } from '../load.js';

export async function memoryScenarios(ctx: BenchContext): Promise<Figure[]> {
  const figures: Figure[] = [];
  const sizes = ctx.quick ? [5_000, 20_000] : [100_000, 1_000_000];
  const limitMs = ctx.quick ? 30_000 : 300_000;
  const measured: Record<'worker' | 'iterate' | 'scan', number[]> = { worker: [], iterate: [], scan: [] };
  for (const size of sizes) {
    const url = await ctx.freshDatabase(`m1-${size}`);
    ctx.log(`M1: one stream of ${size.toLocaleString('en-US')} events`);
    const backlog = await writeBacklog(url, { pendingStreams: 1, eventsPerStream: size, view: 'memory' });
    const iterate = await runConsumers(
      {
        url,
        mode: 'iterate',
        view: '',
        stream: 'memory-1',
        durationMs: limitMs,
        concurrency: 1,
        batchSize: 1000,
      },
      1,
      undefined,
      { deployed: true },
    );
    const worker = await runConsumers(
      {
        url,
        mode: 'project',
        view: backlog.view,
        durationMs: limitMs,
        concurrency: 4,
        batchSize: 100,
        pollIntervalMs: 100,
      },
      1,
      () => drained(url, backlog.view, Date.now() + limitMs),
      { deployed: true },
    );
    const scan = await runConsumers(
      { url, mode: 'scan', view: '', durationMs: limitMs, concurrency: 1, batchSize: 1000 },
      1,
      undefined,
      { deployed: true },
    );
    measured.scan.push(scan.maxRssMb);
    measured.iterate.push(iterate.maxRssMb);
    measured.worker.push(worker.maxRssMb);
    ctx.log(
      `M1: ${size}: worker ${worker.events} events, ${worker.maxRssMb.toFixed(0)} MB; iterate ${iterate.events} events, ${iterate.maxRssMb.toFixed(0)} MB; postgres.js alone ${scan.events} events, ${scan.maxRssMb.toFixed(0)} MB`,
    );
  }
  const [small, large] = sizes as [number, number];
  for (const kind of ['worker', 'iterate'] as const) {
    const [atSmall, atLarge] = measured[kind] as [number, number];
    figures.push({
      scenario: 'M1',
      case: `${kind === 'worker' ? 'peak RSS of a worker process streaming' : 'peak RSS iterating a stream of'} ${large.toLocaleString('en-US')} events (plain Node.js, built packages)`,
      unit: 'MB',
      value: atLarge,
      baseline: { label: `the same at ${small.toLocaleString('en-US')} events`, value: atSmall },
      ratio: atLarge / atSmall,
      target: {
        description: '<= 100 MB, flat in the event count',
        met: atLarge <= 100 && atLarge / atSmall <= 1.25,
      },
    });
  }
  const [scanAtSmall, scanAtLarge] = measured.scan as [number, number];
  figures.push({
    scenario: 'M1',
    case: `peak RSS of postgres.js alone reading the same ${large.toLocaleString('en-US')} events in pages of 1,000 (plain Node.js, no fstore loaded)`,
    unit: 'MB',
    value: scanAtLarge,
    baseline: { label: `the same at ${small.toLocaleString('en-US')} events`, value: scanAtSmall },
    ratio: scanAtLarge / scanAtSmall,
    note: 'report only: the floor under the two figures above',
  });
  return figures;
}
