// #/backups — three charts over all backups, then the paged, filtered table.
import { type BackupPage, type ChartSeries, type ConfigView, get, type ListedBackup, query } from '../api.ts';
import type { PageContext } from '../app.ts';
import { drawCharts } from '../charts.ts';
import { backupLink, dateTime, errorBox, h, status, table, verdict } from '../dom.ts';
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

export async function backupsPage({ view, query: initial, signal }: PageContext): Promise<void> {
  const charts = h('div', { class: 'charts' });
  view.append(h('h1', { tabindex: -1 }, 'Backups'), charts);
  const [chartData, config] = await Promise.all([
    get<ChartSeries>('/api/charts', signal).catch((error: unknown) => error as Error),
    get<ConfigView>('/api/config', signal).catch(() => undefined),
  ]);
  const list = listView<ListedBackup>(
    {
      route: '#/backups',
      noun: 'backups',
      filters: [
        { name: 'source', label: 'Source', options: [['', 'any'], ...sourceNames(config).map((n): [string, string] => [n, n])] },
        { name: 'status', label: 'Status', options: [['', 'any'], ['ok', 'ok'], ['partial', 'partial']] },
        { name: 'kind', label: 'Kind', options: [['', 'any'], ['full', 'full'], ['incremental', 'incremental']] },
      ],
      load: async (params, listSignal) => {
        const page = await get<BackupPage>(`/api/backups${query(params)}`, listSignal);
        return { total: page.total, offset: page.offset, rows: page.backups };
      },
      render: backupTable,
    },
    initial,
    signal,
  );
  view.append(list.element);
  if (chartData instanceof Error) charts.append(errorBox(chartData));
  else drawCharts(charts, chartData, signal);
  await list.loaded;
}
