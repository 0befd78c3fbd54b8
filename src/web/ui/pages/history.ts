// #/history — every run (backups, verifies, prunes, restores, copies, deletes), paged.
import { get, query, type RunPage, type RunRow } from '../api.ts';
import type { PageContext } from '../app.ts';
import { backupLink, dateTime, h, status, table } from '../dom.ts';
import { bytes, duration, elapsed } from '../format.ts';
import { listView } from './list.ts';

const choices = (values: string[]): [string, string][] => [['', 'any'], ...values.map((v): [string, string] => [v, v])];

/** "backup (full)", "verify (deep)": the run's kind with what its detail says of it. */
function kindOf(run: RunRow): string {
  const detail = run.detail?.kind ?? run.detail?.level;
  return typeof detail === 'string' ? `${run.kind} (${detail})` : run.kind;
}

function runTable(rows: RunRow[]): HTMLElement {
  return table({ 'data-testid': 'history-table' }, [
    { label: 'Run', key: true, class: 'num', cell: (r) => `#${r.id}` },
    { label: 'Kind', cell: kindOf },
    { label: 'Status', cell: (r) => status(r.status) },
    { label: 'Started', cell: (r) => dateTime(r.started_at) },
    { label: 'Duration', class: 'num', cell: (r) => duration(elapsed(r.started_at, r.finished_at)) },
    { label: 'Read', class: 'num', cell: (r) => bytes(r.bytes_read) },
    { label: 'Stored', class: 'num', cell: (r) => bytes(r.bytes_stored) },
    { label: 'Backup', cell: (r) => (r.backup ? backupLink(r.backup) : '—') },
    { label: 'Error', class: 'error-text', cell: (r) => r.error ?? '' },
  ], rows, (r) => ({ 'data-run': r.id }));
}

export async function historyPage({ view, query: initial, session, signal }: PageContext): Promise<void> {
  const list = listView<RunRow>(
    {
      route: '#/history',
      noun: 'runs',
      filters: [
        { name: 'kind', label: 'Kind', options: choices(['backup', 'verify', 'prune', 'restore', 'copy', 'delete']) },
        { name: 'status', label: 'Status', options: choices(['ok', 'partial', 'failed', 'interrupted', 'stalled', 'running']) },
      ],
      load: async (params, listSignal) => {
        const [page] = await Promise.all([get<RunPage>(`/api/runs${query(params)}`, listSignal), session]);
        return { total: page.total, offset: page.offset, rows: page.runs };
      },
      render: runTable,
    },
    initial,
    signal,
  );
  view.append(h('h1', { tabindex: -1 }, 'History'), list.element);
  await list.loaded;
}
