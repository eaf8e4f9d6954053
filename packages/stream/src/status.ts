import type { ViewStatus } from './functions.js';

/** Formats view_status() as a plain-text table (what `fstore status` prints). */
export function formatStatusTable(rows: readonly ViewStatus[], now = new Date()): string {
  const header = [
    'view',
    'streams',
    'pending',
    'leased',
    'stopped',
    'events behind',
    'oldest unacked',
    'parked',
    'archived',
  ];
  const body = rows.map((row) => [
    row.view,
    String(row.streams),
    String(row.pendingStreams),
    String(row.leasedStreams),
    String(row.stoppedStreams),
    String(row.eventsBehind),
    row.oldestUnackedAt ? formatAge(now.getTime() - row.oldestUnackedAt.getTime()) : '-',
    String(row.parkedEvents),
    row.archivedStreams > 0 ? `${row.archivedStreams} (${row.archivedEvents} events)` : '-',
  ]);
  const table = [header, ...body];
  const widths = header.map((_, column) => Math.max(...table.map((line) => (line[column] ?? '').length)));
  const render = (line: string[]) =>
    line
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      .join('  ');
  const lines = [render(header), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(render)];
  if (rows.length === 0) lines.push('(no views registered)');
  return lines.join('\n');
}

function formatAge(ms: number): string {
  const seconds = Math.max(0, ms) / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s ago`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)}m ago`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)}h ago`;
  return `${(seconds / 86400).toFixed(1)}d ago`;
}
