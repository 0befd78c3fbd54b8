// The backups page's three chart boxes, drawn before their data (and uPlot, which charts.ts
// brings) are there. Their widths are learnt from a ResizeObserver as the browser lays them
// out, so drawing the charts reads no size (no forced layout) and they follow later resizes.
import { h } from './dom.ts';

export const CHART_HEIGHT = 180;

/** In the order they are drawn: testid (tests find them by it) and caption. */
export const CHARTS = [
  ['chart-stored', 'Stored per backup'],
  ['chart-duration', 'Duration per backup'],
  ['chart-repository', 'Repository size'],
] as const;

export interface ChartFrame {
  element: HTMLElement;
  /** The chart boxes, in the order of CHARTS. */
  boxes: HTMLElement[];
  /** Each box's width as last laid out (0: not laid out yet). */
  widths: number[];
  /** Called (at most once a frame) when a box's width changed; replaces the one before. */
  onResize: (() => void) | undefined;
}

/** The charts' frame: captions and empty boxes of a chart's height; observing stops when `signal` aborts. */
export function chartFrame(signal: AbortSignal): ChartFrame {
  const boxes = CHARTS.map(([testid, title]) => h('div', { class: 'chart', 'data-testid': testid, role: 'img', 'aria-label': `${title}: loading`, 'aria-busy': 'true' }));
  const frame: ChartFrame = {
    element: h('div', { class: 'charts' }, CHARTS.map(([, title], i) => h('figure', null, h('figcaption', null, title), boxes[i]))),
    boxes,
    widths: boxes.map(() => 0),
    onResize: undefined,
  };
  let pending = 0;
  const observer = new ResizeObserver((entries) => {
    let changed = false;
    for (const entry of entries) {
      const i = boxes.indexOf(entry.target as HTMLDivElement);
      const width = Math.round(entry.contentBoxSize[0]?.inlineSize ?? entry.contentRect.width);
      if (i >= 0 && width !== frame.widths[i]) {
        frame.widths[i] = width;
        changed = true;
      }
    }
    // Not in this callback: resizing a chart here would change what is being observed.
    if (changed && frame.onResize && !pending) pending = requestAnimationFrame(() => {
      pending = 0;
      frame.onResize?.();
    });
  });
  for (const box of boxes) observer.observe(box);
  signal.addEventListener('abort', () => {
    observer.disconnect();
    cancelAnimationFrame(pending);
  });
  return frame;
}
