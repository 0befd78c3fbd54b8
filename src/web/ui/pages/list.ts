// A paged, filtered list (backups, runs): select filters, prev/next, only the current page in
// the DOM. Its state lives in the address (#/backups?status=ok&offset=50), so reload keeps it.
import { query } from '../api.ts';
import { errorBox, fill, h, setReady } from '../dom.ts';
import { count } from '../format.ts';

export interface Filter {
  name: string;
  label: string;
  /** [value, label]; an "any" choice comes first by itself. */
  options: [string, string][];
  /** Choices that come later (from another request), added after `options`; a failed one adds none. */
  more?: Promise<[string, string][]>;
}

export interface Loaded<T> {
  total: number;
  offset: number;
  rows: T[];
}

export interface ListSpec<T> {
  /** The route the state is written to, e.g. '#/backups'. */
  route: string;
  /** "backups", "runs": for the pager's label. */
  noun: string;
  filters: Filter[];
  load: (params: Record<string, string | number | undefined>, signal: AbortSignal) => Promise<Loaded<T>>;
  render: (rows: T[]) => HTMLElement;
}

const LIMIT = 50;

/**
 * The list's element; `loaded` settles once the first page is shown and every filter has its
 * choices. The first page is asked for at once, unless the address names a value of a filter
 * whose choices are still to come (then it waits for them, to know whether the value is one).
 */
export function listView<T>(spec: ListSpec<T>, initial: URLSearchParams, signal: AbortSignal): { element: HTMLElement; loaded: Promise<void> } {
  const values: Record<string, string> = {};
  const known = (options: [string, string][], wanted: string) => (options.some(([value]) => value === wanted) ? wanted : '');
  for (const filter of spec.filters) values[filter.name] = known(filter.options, initial.get(filter.name) ?? '');
  let offset = Math.max(0, Math.trunc(Number(initial.get('offset'))) || 0);
  let total = 0;

  const waits: Promise<unknown>[] = [];
  const before: Promise<unknown>[] = [];
  const selects = spec.filters.map((filter) => {
    const id = `filter-${filter.name}`;
    const option = ([value, label]: [string, string]) => h('option', { value, selected: value === values[filter.name] }, label);
    const select = h('select', { id, name: filter.name }, filter.options.map(option));
    select.addEventListener('change', () => {
      values[filter.name] = select.value;
      offset = 0;
      void load();
    });
    if (filter.more) {
      const wanted = initial.get(filter.name) ?? '';
      const added = filter.more.then(
        (more) => {
          if (wanted && values[filter.name] === '') values[filter.name] = known(more, wanted);
          select.append(...more.map(option));
        },
        () => {},
      );
      waits.push(added);
      if (wanted && values[filter.name] === '') before.push(added);
    }
    return h('div', { class: 'field' }, h('label', { for: id }, filter.label), select);
  });
  const prev = h('button', { type: 'button' }, '← Newer');
  const next = h('button', { type: 'button' }, 'Older →');
  const position = h('span', { class: 'position', 'aria-live': 'polite' });
  const body = h('div', { class: 'list-body' });
  prev.addEventListener('click', () => void load(Math.max(0, offset - LIMIT)));
  next.addEventListener('click', () => void load(offset + LIMIT));

  let current: AbortController | undefined;
  /** The first load is the page's (the router marks it ready); later ones mark it themselves. */
  async function load(at = offset, first = false): Promise<void> {
    current?.abort();
    const controller = (current = new AbortController());
    const stop = () => controller.abort();
    signal.addEventListener('abort', stop);
    if (!first) setReady(false);
    try {
      const page = await spec.load({ ...values, offset: at, limit: LIMIT }, controller.signal);
      offset = page.offset;
      total = page.total;
      fill(position, total === 0 ? `no ${spec.noun}` : `${count(offset + 1)}–${count(offset + page.rows.length)} of ${count(total)}`);
      fill(body, page.rows.length > 0 ? spec.render(page.rows) : h('p', { class: 'empty' }, total === 0 ? `No ${spec.noun} match.` : `No ${spec.noun} on this page.`));
      history.replaceState(null, '', `${spec.route}${query({ ...values, offset: offset || undefined })}`);
    } catch (error) {
      if (controller.signal.aborted) return;
      fill(body, errorBox(error));
    } finally {
      signal.removeEventListener('abort', stop);
      if (!controller.signal.aborted) {
        prev.disabled = offset === 0;
        next.disabled = offset + LIMIT >= total;
        if (!first) setReady(true);
      }
    }
  }

  const element = h(
    'div',
    { class: 'list' },
    h('form', { class: 'toolbar', role: 'search', 'aria-label': `Filter ${spec.noun}`, onsubmit: (e) => e.preventDefault() }, selects, h('nav', { class: 'pager', 'aria-label': `${spec.noun} pages` }, prev, position, next)),
    body,
  );
  const first = before.length > 0 ? Promise.all(before).then(() => load(offset, true)) : load(offset, true);
  return { element, loaded: Promise.all([first, ...waits]).then(() => {}) };
}
