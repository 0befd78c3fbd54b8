// The backups page's three charts (uPlot), drawn from one /api/charts answer.
import uPlot from 'uplot';
import type { ChartSeries as Charts } from './api.ts';
import { h } from './dom.ts';
import { absolute, bytes, count, duration, zone } from './format.ts';

interface Line {
  label: string;
  values: (number | null)[];
  /** A CSS custom property of app.css holding the colour. */
  color: string;
  fill?: boolean;
}

interface ChartSpec {
  testid: string;
  title: string;
  x: number[];
  lines: Line[];
  format: (value: number) => string;
  /** Tick steps that give round labels. */
  incrs: number[];
}

const HEIGHT = 180;
/** 1 B, 2 B, 4 B … 1 EiB: ticks at round binary sizes. */
const BYTE_STEPS = Array.from({ length: 61 }, (_, i) => 2 ** i);
const SECOND_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

function cssColor(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

/** Values of the backups of one kind, null for the others (one line per kind: fulls and incrementals differ by orders of magnitude). */
function ofKind(data: Charts['backups'], kind: string, values: number[]): (number | null)[] {
  return values.map((value, i) => (data.kind[i] === kind ? value : null));
}

function specs(data: Charts): ChartSpec[] {
  const b = data.backups;
  const byKind = (values: number[]): Line[] => [
    { label: 'full', values: ofKind(b, 'full', values), color: '--chart-full' },
    { label: 'incremental', values: ofKind(b, 'incremental', values), color: '--chart-incr' },
  ];
  return [
    { testid: 'chart-stored', title: 'Stored per backup', x: b.finished_at, lines: byKind(b.bytes_stored), format: bytes, incrs: BYTE_STEPS },
    { testid: 'chart-duration', title: 'Duration per backup', x: b.finished_at, lines: byKind(b.duration_s), format: duration, incrs: SECOND_STEPS },
    { testid: 'chart-repository', title: 'Repository size', x: data.repository.at, lines: [{ label: 'repository', values: data.repository.bytes, color: '--chart-repo', fill: true }], format: bytes, incrs: BYTE_STEPS },
  ];
}

function options(spec: ChartSpec, width: number): uPlot.Options {
  const muted = cssColor('--muted');
  const grid = cssColor('--line');
  const axis = { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const tz = zone();
  return {
    width,
    height: HEIGHT,
    ...(tz ? { tzDate: (ts: number) => uPlot.tzDate(new Date(ts * 1000), tz) } : {}),
    scales: { x: { time: true } },
    series: [
      { label: 'finished', value: (_u, v) => (v === null ? '—' : absolute(new Date(v * 1000).toISOString())) },
      ...spec.lines.map((line): uPlot.Series => {
        const color = cssColor(line.color);
        return { label: line.label, stroke: color, width: 1.5, spanGaps: true, ...(line.fill ? { fill: `${color}33` } : {}), value: (_u, v) => (v === null ? '—' : spec.format(v)) };
      }),
    ],
    // The y axis as wide as its longest label (about 7 px a character at uPlot's 12 px font).
    axes: [axis, { ...axis, size: (_u, values) => 18 + 7 * Math.max(4, ...(values ?? []).map((v) => v.length)), incrs: spec.incrs, values: (_u, splits) => splits.map(spec.format) }],
  };
}

/** A label for screen readers: what the canvas shows. */
function summary(spec: ChartSpec): string {
  const n = spec.x.length;
  if (n === 0) return `${spec.title}: no data yet`;
  const last = spec.lines.map((l) => l.values.findLast((v) => v !== null)).find((v) => v !== null && v !== undefined);
  return `${spec.title}: ${count(n)} points from ${absolute(new Date(spec.x[0]! * 1000).toISOString())} to ${absolute(new Date(spec.x[n - 1]! * 1000).toISOString())}${last !== undefined && last !== null ? `, latest ${spec.format(last)}` : ''}`;
}

/**
 * Draws the charts into `container` (already in the document: uPlot needs its width). They
 * follow the container's width and are destroyed when `signal` aborts.
 */
export function drawCharts(container: HTMLElement, data: Charts, signal: AbortSignal): void {
  const drawn: { plot: uPlot; box: HTMLElement }[] = [];
  for (const spec of specs(data)) {
    const box = h('div', { class: 'chart', 'data-testid': spec.testid, role: 'img', 'aria-label': summary(spec) });
    container.append(h('figure', null, h('figcaption', null, spec.title), box));
    if (spec.x.length === 0) box.append(h('p', { class: 'empty' }, 'No data yet'));
    else drawn.push({ plot: new uPlot(options(spec, box.clientWidth), [spec.x, ...spec.lines.map((l) => l.values)] as uPlot.AlignedData, box), box });
    box.dataset.points = String(spec.x.length);
  }
  let frame = 0;
  const observer = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      for (const { plot, box } of drawn) if (box.clientWidth > 0 && box.clientWidth !== plot.width) plot.setSize({ width: box.clientWidth, height: HEIGHT });
    });
  });
  observer.observe(container);
  signal.addEventListener('abort', () => {
    observer.disconnect();
    cancelAnimationFrame(frame);
    for (const { plot } of drawn) plot.destroy();
  });
}
