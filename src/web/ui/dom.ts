// DOM building blocks. Every string goes in as text (never markup): names, errors and config
// values from the API are untrusted.
import { ApiError } from './api.ts';
import { absolute, relative } from './format.ts';

export type Child = Node | string | number | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | null | undefined | ((event: Event) => void)>;

/** An element with attributes (on* become listeners; false/null/undefined are left out) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: (Child | Child[])[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (attrs)
    for (const name in attrs) {
      const value = attrs[name];
      if (typeof value === 'function') element.addEventListener(name.slice(2), value);
      else if (value === true) element.setAttribute(name, '');
      else if (value !== false && value !== null && value !== undefined) element.setAttribute(name, String(value));
    }
  add(element, children);
  return element;
}

/** Appends the children one by one (a table's rows make thousands of these: no arrays in between). */
function add(element: Element, children: (Child | Child[])[]): void {
  for (const child of children) {
    if (Array.isArray(child)) add(element, child);
    else if (child !== null && child !== undefined && child !== false) element.append(typeof child === 'number' ? String(child) : child);
  }
}

/** Replaces the children of `element`. */
export function fill(element: Element, ...children: (Child | Child[])[]): void {
  element.replaceChildren();
  add(element, children);
}

/**
 * Settles once the page's first contentful paint has happened (or, after it, once the frame
 * after the next has started), or after `fallback` ms where none comes (a hidden tab): for work
 * that must not hold up the first paint, nor compete with it for a busy machine's cores.
 */
export function afterPaint(fallback = 100): Promise<void> {
  return new Promise((resolve) => {
    if (performance.getEntriesByName('first-contentful-paint').length > 0) requestAnimationFrame(() => setTimeout(resolve, 0));
    else {
      const observer = new PerformanceObserver(() => {
        observer.disconnect();
        resolve();
      });
      observer.observe({ type: 'paint' });
    }
    setTimeout(resolve, fallback);
  });
}

/** Tests wait for body[data-ready="1"]: the current page's data is on screen. */
export function setReady(ready: boolean): void {
  document.body.dataset.ready = ready ? '1' : '0';
}

type Tone = 'good' | 'warn' | 'bad' | 'busy' | 'none';
const STATES: Record<string, [icon: string, tone: Tone]> = {
  ok: ['✓', 'good'],
  partial: ['◐', 'warn'],
  failed: ['✗', 'bad'],
  running: ['⟳', 'busy'],
  queued: ['◷', 'busy'],
  interrupted: ['⚠', 'warn'],
  stalled: ['⚠', 'warn'],
  cancelled: ['⊘', 'warn'],
};

/** A state as icon and word, never colour alone. */
export function status(state: string, label = state): HTMLElement {
  const [icon, tone] = STATES[state] ?? ['•', 'none'];
  return h('span', { class: `state ${tone}` }, h('span', { class: 'icon', 'aria-hidden': 'true' }, icon), ` ${label}`);
}

/** A yes/no verdict (healthy, verified, config valid). */
export function verdict(ok: boolean, label: string): HTMLElement {
  return status(ok ? 'ok' : 'failed', label);
}

export function errorBox(error: unknown): HTMLElement {
  const message = error instanceof Error ? error.message : String(error);
  const hint = error instanceof ApiError ? error.hint : undefined;
  return h('div', { class: 'error', role: 'alert' }, h('p', null, message), hint ? h('p', { class: 'hint' }, hint) : null);
}

export interface Column<T> {
  label: string;
  cell: (row: T) => Child | Child[];
  /** The row's header cell (th scope=row). */
  key?: boolean;
  class?: string;
}

/** A table that scrolls sideways on narrow screens, or (class stack) becomes one block per row there. */
export function table<T>(attrs: Attrs, columns: Column<T>[], rows: T[], rowAttrs?: (row: T) => Attrs): HTMLElement {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      attrs,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
      h(
        'tbody',
        null,
        rows.map((row) => h('tr', rowAttrs?.(row), columns.map((c) => h(c.key ? 'th' : 'td', { scope: c.key ? 'row' : null, class: c.class, 'data-label': c.label }, c.cell(row))))),
      ),
    ),
  );
}

/** A definition list of label → value pairs (pairs with an undefined value are left out). */
export function facts(pairs: [string, Child | Child[]][]): HTMLElement {
  return h('dl', { class: 'facts' }, pairs.filter(([, value]) => value !== undefined).map(([label, value]) => [h('dt', null, label), h('dd', null, value)]).flat());
}

export function section(title: string, ...children: (Child | Child[])[]): HTMLElement {
  return h('section', { class: 'card' }, h('h2', null, title), ...children);
}

/** A `<code>` with a Copy button; without clipboard access the text gets selected for Ctrl+C. */
export function copyable(text: string, attrs: Attrs = {}): HTMLElement {
  const code = h('code', attrs, text);
  const button = h('button', { type: 'button', class: 'small' }, 'Copy');
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = 'Copied';
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection()?.removeAllRanges();
      getSelection()?.addRange(range);
      button.textContent = 'Selected: press Ctrl+C';
    }
    setTimeout(() => (button.textContent = 'Copy'), 2000);
  });
  return h('div', { class: 'copyable' }, code, button);
}

export function backupLink(name: string): HTMLElement {
  return h('a', { href: `#/backups/${encodeURIComponent(name)}` }, name);
}

/** A time as "Dec 7, 2026, 10:16 PM (53 min ago)", wrapping only between the two parts. */
export function dateTime(iso: string | null | undefined): HTMLElement | string {
  if (!iso) return '—';
  return h('time', { datetime: iso, class: 'when' }, h('span', null, absolute(iso)), ' ', h('span', { class: 'muted' }, `(${relative(iso)})`));
}
