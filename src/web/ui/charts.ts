// The backups page's three charts (uPlot), drawn from one /api/charts answer into the boxes
// chart-frame.ts put on the page. The page loads this module (and uPlot with it) only after
// its first paint: nothing else needs them.
//
// 10,000 backups make 10,000 points per line: the work per point is one pass here that splits
// the columns by kind and finds each chart's value range (so uPlot needs no scan of its own),
// and uPlot's drawing; the boxes' sizes come from the frame, not from reading the layout.
import uPlot from 'uplot';
import type { ChartSeries as Charts } from './api.ts';
import { CHART_HEIGHT, type ChartFrame, CHARTS } from './chart-frame.ts';
import { h } from './dom.ts';
import { absolute, bytes, count, duration, zone } from './format.ts';

type Values = (number | null)[];

interface Line {
  label: string;
  values: Values;
  /** A CSS custom property of app.css holding the colour. */
  color: string;
  fill?: boolean;
}

interface ChartSpec {
  title: string;
  x: number[];
  lines: Line[];
  /** The y scale's range (uPlot's own padding of the data's least and greatest value), undefined without data. */
  range: uPlot.Range.MinMax | undefined;
  format: (value: number) => string;
  /** Tick steps that give round labels. */
  incrs: number[];
}

/** 1 B, 2 B, 4 B … 1 EiB: ticks at round binary sizes. */
const BYTE_STEPS = Array.from({ length: 61 }, (_, i) => 2 ** i);
const SECOND_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
const COLORS = ['--muted', '--line', '--chart-full', '--chart-incr', '--chart-repo'] as const;

type Colors = Record<(typeof COLORS)[number], string>;

/** The colours of app.css, read once per drawing. */
function colors(): Colors {
  const style = getComputedStyle(document.documentElement);
  return Object.fromEntries(COLORS.map((name) => [name, style.getPropertyValue(name).trim() || '#888'])) as Colors;
}

/** The y range uPlot would pick itself for data from `min` to `max` (its rangeNum with the default padding). */
function range(min: number, max: number): uPlot.Range.MinMax | undefined {
  return min <= max ? (uPlot.rangeNum(min, max, 0.1, true) as uPlot.Range.MinMax) : undefined;
}

/**
 * One pass over the backups: stored bytes and durations split into one line per kind (null
 * where the backup is of the other kind: fulls and incrementals differ by orders of
 * magnitude), and each chart's least and greatest value.
 */
function specs(data: Charts): ChartSpec[] {
  const b = data.backups;
  const n = b.finished_at.length;
  const storedFull: Values = [];
  const storedIncr: Values = [];
  const durationFull: Values = [];
  const durationIncr: Values = [];
  let storedMin = Infinity;
  let storedMax = -Infinity;
  let durationMin = Infinity;
  let durationMax = -Infinity;
  for (let i = 0; i < n; i++) {
    const kind = b.kind[i];
    const full = kind === 'full';
    const incr = kind === 'incremental';
    const stored = b.bytes_stored[i] ?? null;
    const seconds = b.duration_s[i] ?? null;
    storedFull.push(full ? stored : null);
    storedIncr.push(incr ? stored : null);
    durationFull.push(full ? seconds : null);
    durationIncr.push(incr ? seconds : null);
    if (full || incr) {
      if (stored !== null) {
        if (stored < storedMin) storedMin = stored;
        if (stored > storedMax) storedMax = stored;
      }
      if (seconds !== null) {
        if (seconds < durationMin) durationMin = seconds;
        if (seconds > durationMax) durationMax = seconds;
      }
    }
  }
  let repositoryMin = Infinity;
  let repositoryMax = -Infinity;
  for (const value of data.repository.bytes) {
    if (value < repositoryMin) repositoryMin = value;
    if (value > repositoryMax) repositoryMax = value;
  }
  const byKind = (full: Values, incremental: Values): Line[] => [
    { label: 'full', values: full, color: '--chart-full' },
    { label: 'incremental', values: incremental, color: '--chart-incr' },
  ];
  const [[, stored], [, took], [, repository]] = CHARTS;
  return [
    { title: stored, x: b.finished_at, lines: byKind(storedFull, storedIncr), range: range(storedMin, storedMax), format: bytes, incrs: BYTE_STEPS },
    { title: took, x: b.finished_at, lines: byKind(durationFull, durationIncr), range: range(durationMin, durationMax), format: duration, incrs: SECOND_STEPS },
    { title: repository, x: data.repository.at, lines: [{ label: 'repository', values: data.repository.bytes, color: '--chart-repo', fill: true }], range: range(repositoryMin, repositoryMax), format: bytes, incrs: BYTE_STEPS },
  ];
}

const HOUR_QUARTER_MS = 900_000;

/**
 * uPlot's tzDate for `tz` (a Date whose local fields show the time in `tz`), with the zone's
 * offset looked up once per quarter hour rather than a new formatter per call as
 * uPlot.tzDate does (zones change their offset only at quarter hours).
 */
function tzDate(tz: string): (seconds: number) => Date {
  const format = new Intl.DateTimeFormat('en-US', { timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' });
  const offsets = new Map<number, number>();
  const offset = (ms: number): number => {
    const quarter = Math.floor(ms / HOUR_QUARTER_MS);
    let known = offsets.get(quarter);
    if (known === undefined) {
      const at = quarter * HOUR_QUARTER_MS;
      const part: Record<string, number> = {};
      for (const { type, value } of format.formatToParts(at)) part[type] = Number(value);
      known = Date.UTC(part.year!, part.month! - 1, part.day!, part.hour!, part.minute!, part.second!) - at;
      offsets.set(quarter, known);
    }
    return known;
  };
  return (seconds) => {
    const ms = seconds * 1000;
    const wall = new Date(ms + offset(ms));
    return new Date(wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate(), wall.getUTCHours(), wall.getUTCMinutes(), wall.getUTCSeconds(), wall.getUTCMilliseconds());
  };
}

/**
 * The axes' font: uPlot's size, the page's families (base.css). uPlot's own list names a dozen
 * families, emoji fonts among them, and setting a canvas font looks each one up (~15 ms for
 * three charts); the page's are known by the time the charts are drawn.
 */
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif';

function options(spec: ChartSpec, width: number, color: Colors, shift: ((seconds: number) => Date) | undefined): uPlot.Options {
  const axis = { stroke: color['--muted'], font: AXIS_FONT, labelFont: AXIS_FONT, grid: { stroke: color['--line'], width: 1 }, ticks: { stroke: color['--line'], width: 1 } };
  return {
    width,
    height: CHART_HEIGHT,
    ...(shift ? { tzDate: shift } : {}),
    scales: { x: { time: true }, ...(spec.range ? { y: { range: spec.range } } : {}) },
    series: [
      { label: 'finished', value: (_u, v) => (v === null ? '—' : absolute(new Date(v * 1000).toISOString())) },
      ...spec.lines.map((line): uPlot.Series => {
        const stroke = color[line.color as keyof Colors];
        return { label: line.label, stroke, width: 1.5, spanGaps: true, ...(line.fill ? { fill: `${stroke}33` } : {}), value: (_u, v) => (v === null ? '—' : spec.format(v)) };
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
 * Draws the charts into the frame's boxes, all in this task (one frame), at the widths the
 * frame has seen laid out. They follow the boxes' widths and are destroyed when `signal` aborts.
 */
export function drawCharts(frame: ChartFrame, data: Charts, signal: AbortSignal): void {
  if (signal.aborted) return;
  const color = colors();
  const tz = zone();
  const shift = tz ? tzDate(tz) : undefined;
  const drawn: { plot: uPlot; i: number }[] = [];
  specs(data).forEach((spec, i) => {
    const box = frame.boxes[i]!;
    box.setAttribute('aria-label', summary(spec));
    box.removeAttribute('aria-busy');
    box.dataset.points = String(spec.x.length);
    if (spec.x.length === 0) {
      box.append(h('p', { class: 'empty' }, 'No data yet'));
      return;
    }
    // Not laid out yet (the answer came before the first frame): the one read of the layout.
    const width = frame.widths[i] || box.clientWidth;
    drawn.push({ plot: new uPlot(options(spec, width, color, shift), [spec.x, ...spec.lines.map((l) => l.values)] as uPlot.AlignedData, box), i });
  });
  frame.onResize = () => {
    for (const { plot, i } of drawn) {
      const width = frame.widths[i]!;
      if (width > 0 && width !== plot.width) plot.setSize({ width, height: CHART_HEIGHT });
    }
  };
  signal.addEventListener('abort', () => {
    frame.onResize = undefined;
    for (const { plot } of drawn) plot.destroy();
  });
}
