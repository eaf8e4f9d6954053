import { mkdirSync, writeFileSync } from 'node:fs';
import type { Figure } from './context.js';

export interface Machine {
  cpus: number;
  cpuModel: string;
  node: string;
  postgres: string;
  /** The headline server and its durability settings. */
  server: string;
  /** The server of the fsync-off column, when there is one. */
  fsyncOffServer?: string;
}

const format = (n: number) =>
  !Number.isFinite(n) ? 'n/a' : n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 10 ? 1 : 2);
const targetCell = (target: Figure['target']) =>
  target ? `${target.description}: ${target.met ? 'met' : 'MISSED'}` : '';

export function table(figures: readonly Figure[]): string {
  const second = figures.some((f) => f.fsyncOff);
  const rows = figures.map((f) => [
    f.scenario,
    f.case,
    f.skipped ? `skipped: ${f.skipped}` : `${format(f.value)} ${f.unit}`,
    f.baseline ? `${format(f.baseline.value)} (${f.baseline.label})` : '',
    f.ratio === undefined ? '' : `${f.ratio.toFixed(2)}x`,
    f.target ? targetCell(f.target) : (f.note ?? ''),
    ...(second
      ? [
          f.fsyncOff ? `${format(f.fsyncOff.value)} ${f.unit}` : '',
          f.fsyncOff?.baseline ? format(f.fsyncOff.baseline.value) : '',
          f.fsyncOff?.ratio === undefined ? '' : `${f.fsyncOff.ratio.toFixed(2)}x`,
          targetCell(f.fsyncOff?.target),
        ]
      : []),
  ]);
  const header = [
    '#',
    'case',
    'measured',
    'baseline (same run)',
    'ratio',
    'target',
    ...(second
      ? ['fsync off: measured', 'fsync off: baseline', 'fsync off: ratio', 'fsync off: target']
      : []),
  ];
  return markdownTable(header, rows);
}

/** A markdown table with its columns padded to one width, so that it reads as well in a terminal as rendered. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((cell, column) =>
    Math.max(3, cell.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    `| ${widths.map((width, column) => (cells[column] ?? '').padEnd(width)).join(' | ')} |`;
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

export function writeResults(
  directory: string,
  machine: Machine,
  command: string,
  figures: readonly Figure[],
  charts: string[],
) {
  mkdirSync(directory, { recursive: true });
  const date = new Date().toISOString();
  writeFileSync(
    `${directory}/latest.json`,
    `${JSON.stringify({ date, command, machine, figures }, null, 2)}\n`,
  );
  const markdown = [
    `# fstore benchmark, ${date.slice(0, 10)}`,
    '',
    `Command: \`${command}\`. Machine: ${machine.cpus} CPUs (${machine.cpuModel}), Node.js ${machine.node}, ${machine.postgres}.`,
    `Headline figures: ${machine.server}.`,
    ...(machine.fsyncOffServer
      ? [`The fsync off columns: a second server in the same run, ${machine.fsyncOffServer}.`]
      : []),
    'Every ratio compares with a baseline measured in the same run, on the same server; each figure is the median of',
    'several rounds.',
    '',
    table(figures),
    '',
    ...charts.map((chart) => `![${chart}](${chart})`),
    '',
  ].join('\n');
  writeFileSync(`${directory}/latest.md`, markdown);
}

/** A small line chart as SVG: one or more series of (x, y) points, x on a log scale when it spans decades. */
export function lineChart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: { name: string; points: [number, number][] }[],
): string {
  const width = 640;
  const height = 360;
  const margin = { left: 70, right: 150, top: 40, bottom: 50 };
  const xs = series.flatMap((s) => s.points.map(([x]) => x));
  const ys = series.flatMap((s) => s.points.map(([, y]) => y));
  const log = Math.max(...xs) / Math.max(1, Math.min(...xs)) >= 100;
  const fx = (x: number) => (log ? Math.log10(x) : x);
  const [x0, x1] = [Math.min(...xs.map(fx)), Math.max(...xs.map(fx))];
  const y1 = Math.max(...ys) * 1.1 || 1;
  const px = (x: number) =>
    margin.left + ((fx(x) - x0) / (x1 - x0 || 1)) * (width - margin.left - margin.right);
  const py = (y: number) => height - margin.bottom - (y / y1) * (height - margin.top - margin.bottom);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd'];
  const lines = series.map((s, i) => {
    const color = colors[i % colors.length];
    const path = s.points
      .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${px(x).toFixed(1)},${py(y).toFixed(1)}`)
      .join(' ');
    const dots = s.points
      .map(([x, y]) => `<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`)
      .join('');
    const legend = `<text x="${width - margin.right + 10}" y="${margin.top + 18 * i}" fill="${color}" font-size="12">${s.name}</text>`;
    return `<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>${dots}${legend}`;
  });
  const xTicks = [...new Set(xs)]
    .sort((a, b) => a - b)
    .map(
      (x) =>
        `<text x="${px(x).toFixed(1)}" y="${height - margin.bottom + 16}" font-size="11" text-anchor="middle">${x.toLocaleString('en-US')}</text>`,
    );
  const yTicks = [0, 0.25, 0.5, 0.75, 1].map(
    (t) =>
      `<text x="${margin.left - 8}" y="${py(t * y1).toFixed(1)}" font-size="11" text-anchor="end">${Math.round(t * y1).toLocaleString('en-US')}</text><line x1="${margin.left}" x2="${width - margin.right}" y1="${py(t * y1).toFixed(1)}" y2="${py(t * y1).toFixed(1)}" stroke="#eee"/>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<title>${title}</title>
<rect width="100%" height="100%" fill="white"/>
<text x="${width / 2}" y="22" font-size="15" text-anchor="middle">${title}</text>
${yTicks.join('\n')}
<line x1="${margin.left}" x2="${width - margin.right}" y1="${height - margin.bottom}" y2="${height - margin.bottom}" stroke="#333"/>
<line x1="${margin.left}" x2="${margin.left}" y1="${margin.top}" y2="${height - margin.bottom}" stroke="#333"/>
${xTicks.join('\n')}
<text x="${(margin.left + width - margin.right) / 2}" y="${height - 12}" font-size="12" text-anchor="middle">${xLabel}</text>
<text x="16" y="${height / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${height / 2})">${yLabel}</text>
${lines.join('\n')}
</svg>
`;
}
