// #/backups — three charts over all backups, then the paged, filtered table.
import { type BackupPage, type ChartSeries, type ConfigView, get, type ListedBackup, query } from '../api.ts';
import type { PageContext } from '../app.ts';
import { chartFrame } from '../chart-frame.ts';
import { afterPaint, backupLink, dateTime, errorBox, h, status, table, verdict } from '../dom.ts';
import { bytes, duration, elapsed, relative } from '../format.ts';
import { listView } from './list.ts';

/** A chain id's random tail: enough to tell chains apart. */
export function shortChain(chain: string): HTMLElement {
  return h('code', { title: chain }, chain.length > 8 ? chain.slice(-8) : chain);
}

function backupTable(rows: ListedBackup[]): HTMLElement {
  return table({ 'data-testid': 'backups-table' }, [
    { label: 'Backup', key: true, cell: (b) => backupLink(b.name) },
    { label: 'Kind', cell: (b) => b.kind },
    { label: 'Chain', cell: (b) => shortChain(b.chain) },
    { label: 'Status', cell: (b) => status(b.status) },
    { label: 'Started', cell: (b) => dateTime(b.started_at) },
    { label: 'Duration', class: 'num', cell: (b) => duration(elapsed(b.started_at, b.finished_at)) },
    { label: 'Read', class: 'num', cell: (b) => bytes(b.bytes_read) },
    { label: 'Stored', class: 'num', cell: (b) => bytes(b.bytes_stored) },
    { label: 'Verified', cell: (b) => (b.verified ? verdict(b.verified.ok, `${b.verified.level}, ${relative(b.verified.at)}`) : 'never') },
    { label: 'Off-site', cell: (b) => (b.remotes.length > 0 ? b.remotes.join(', ') : '—') },
  ], rows, (b) => ({ 'data-backup': b.name }));
}

/** The configured sources' names (the effective config lists them). */
function sourceNames(config: ConfigView | undefined): string[] {
  const sources = (config?.effective as { sources?: unknown } | undefined)?.sources;
  return Array.isArray(sources) ? sources.flatMap((s: unknown) => (typeof (s as { name?: unknown })?.name === 'string' ? [(s as { name: string }).name] : [])) : [];
}

/**
 * The frame (heading, chart boxes, filters) is drawn at once and the three requests go out
 * together, the quick ones first (the daemon answers one at a time): the table is drawn when
 * its page comes, the sources' names join the filter when the config does, the charts are
 * drawn when theirs come. The page is ready when all three are shown.
 */
export async function backupsPage({ view, query: initial, session, signal }: PageContext): Promise<void> {
  const frame = chartFrame(signal);
  // The source filter's names come from the config, whose request goes out after the table's (listView sends that).
  let sources!: (names: Promise<[string, string][]>) => void;
  const more = new Promise<[string, string][]>((resolve) => (sources = resolve));
  const list = listView<ListedBackup>(
    {
      route: '#/backups',
      noun: 'backups',
      filters: [
        { name: 'source', label: 'Source', options: [['', 'any']], more },
        { name: 'status', label: 'Status', options: [['', 'any'], ['ok', 'ok'], ['partial', 'partial']] },
        { name: 'kind', label: 'Kind', options: [['', 'any'], ['full', 'full'], ['incremental', 'incremental']] },
      ],
      load: async (params, listSignal) => {
        const [page] = await Promise.all([get<BackupPage>(`/api/backups${query(params)}`, listSignal), session]);
        return { total: page.total, offset: page.offset, rows: page.backups };
      },
      render: backupTable,
    },
    initial,
    signal,
  );
  view.append(h('h1', { tabindex: -1 }, 'Backups'), frame.element, list.element);
  // The config is quick to answer: before the charts, it is not what the page waits for last.
  sources(get<ConfigView>('/api/config', signal).then((c) => sourceNames(c).map((name): [string, string] => [name, name])));
  const chartData = get<ChartSeries>('/api/charts', signal);
  const charts = Promise.all([
    chartData,
    // uPlot is evaluated after the first paint, while the answers are on their way (or as soon as the charts' is there).
    Promise.race([afterPaint(), chartData.then(() => {}, () => {})]).then(() => import('../charts.ts')),
    session,
  ]).then(
    ([data, { drawCharts }]): void => drawCharts(frame, data, signal),
    (error: unknown) => {
      if (!signal.aborted) frame.element.replaceChildren(errorBox(error));
    },
  );
  await Promise.all([list.loaded, charts]);
}
