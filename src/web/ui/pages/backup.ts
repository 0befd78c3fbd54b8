// #/backups/<name> — one backup: sources, artifacts, verification, off-site, restore commands.
import { type ArtifactVerdict, type BackupDetail, get } from '../api.ts';
import type { PageContext } from '../app.ts';
import { type Child, copyable, dateTime, facts, h, section, status, table, verdict } from '../dom.ts';
import { bytes, count, duration, elapsed, plural, when } from '../format.ts';

type Artifact = BackupDetail['artifacts'][number];
type Source = BackupDetail['sources'][number];

const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/** Row total of a dump's table counts ("~" when some are the planner's estimates). */
function rows(tables: unknown[]): string | undefined {
  const counted = tables.filter((t): t is { rows: number; exact?: boolean } => isNumber((t as { rows?: unknown })?.rows));
  if (counted.length === 0) return undefined;
  const approximate = counted.length < tables.length || counted.some((t) => t.exact === false);
  const total = counted.reduce((sum, t) => sum + t.rows, 0);
  return `${approximate ? '~' : ''}${plural(total, 'row')}`;
}

/** Files in a tar: its file_count, else the entries of type File in its list. */
function files(meta: Record<string, unknown>): string | undefined {
  if (isNumber(meta.file_count)) return plural(meta.file_count, 'file');
  const value = meta.files;
  if (!Array.isArray(value)) return undefined;
  const regular = value.filter((f) => String((f as { type?: unknown })?.type ?? 'file').toLowerCase() === 'file').length;
  return plural(regular, 'file');
}

const PROMINENT = new Set(['tables', 'rows', 'points_count', 'files', 'file_count', 'database_size']);

/** What an artifact holds: tables/rows, points, files first, then any other short plain facts. */
function contents(meta: Record<string, unknown>): Child[] {
  const main = [
    Array.isArray(meta.tables) ? plural(meta.tables.length, 'table') : isNumber(meta.tables) ? plural(meta.tables, 'table') : undefined,
    isNumber(meta.rows) ? plural(meta.rows, 'row') : Array.isArray(meta.tables) ? rows(meta.tables) : undefined,
    isNumber(meta.points_count) ? plural(meta.points_count, 'point') : undefined,
    files(meta),
    isNumber(meta.database_size) ? `database ${bytes(meta.database_size)}` : undefined,
  ].filter((s): s is string => s !== undefined);
  const other = Object.entries(meta).filter(([key, value]) => !PROMINENT.has(key) && (isNumber(value) || typeof value === 'boolean' || (typeof value === 'string' && value.length <= 80)));
  if (main.length === 0 && other.length === 0) return ['—'];
  return [
    main.length > 0 ? h('strong', null, main.join(', ')) : null,
    other.length > 0 ? h('span', { class: 'meta' }, other.map(([key, value]) => `${key}: ${isNumber(value) ? count(value) : String(value)}`).join(' · ')) : null,
  ];
}

function sourceNotes(s: Source): Child[] {
  const notes = [
    ...(s.error ? [s.error] : []),
    ...(s.failed_artifacts ?? []).map((f) => `${f.id} failed: ${f.error}`),
    ...(s.incomplete_artifacts ?? []).map((i) => `${i.id} incomplete: ${i.errors.join('; ')}`),
    ...(s.warnings ?? []).map((w) => `warning: ${w}`),
    ...(s.coverage ?? []).map((c) => `coverage: ${c}`),
  ];
  return notes.length === 0 ? ['—'] : [h('ul', { class: 'notes' }, notes.map((n) => h('li', null, n)))];
}

function sources(b: BackupDetail): HTMLElement {
  const state = (s: Source) => (s.status !== 'ok' ? 'failed' : s.failed_artifacts?.length || s.incomplete_artifacts?.length ? 'partial' : 'ok');
  return section('Sources', table({ class: 'stack' }, [
    { label: 'Source', key: true, cell: (s) => s.name },
    { label: 'Kind', cell: (s) => s.kind },
    { label: 'Status', cell: (s) => status(state(s)) },
    { label: 'Errors and notes', cell: sourceNotes },
  ], b.sources));
}

function artifacts(b: BackupDetail): HTMLElement {
  if (b.artifacts.length === 0) return section('Artifacts', h('p', { class: 'muted' }, 'No artifacts.'));
  return section('Artifacts', table({ class: 'stack' }, [
    { label: 'Artifact', key: true, cell: (a: Artifact) => a.id },
    { label: 'Kind', cell: (a) => a.kind },
    { label: 'Target', cell: (a) => a.target },
    { label: 'Size', class: 'num', cell: (a) => bytes(a.size) },
    { label: 'Chunks', class: 'num', cell: (a) => count(a.chunk_count) },
    { label: 'Contents', cell: (a) => contents(a.meta) },
    { label: 'SHA-256', cell: (a) => h('code', { title: a.sha256 }, `${a.sha256.slice(0, 12)}…`) },
  ], b.artifacts));
}

function verdicts(detail: unknown): ArtifactVerdict[] {
  const list = (detail as { artifacts?: unknown } | null)?.artifacts;
  return Array.isArray(list) ? (list as ArtifactVerdict[]) : [];
}

function verification(b: BackupDetail): HTMLElement {
  const v = b.verified;
  if (!v) return section('Verification', h('p', null, status('never', 'Never verified')));
  return section(
    'Verification',
    h('p', null, verdict(v.ok, `${v.ok ? 'Passed' : 'Failed'}: ${v.level} verification`), ` ${when(v.at)}`),
    h('ul', { class: 'verdicts' }, verdicts(v.detail).map((a) => h('li', null,
      verdict(a.ok, a.artifact), a.seconds !== undefined ? ` (${duration(a.seconds)})` : null, `: ${a.detail}`,
      a.differences?.length ? h('ul', { class: 'differences', 'aria-label': 'Differences' }, a.differences.map((d) => h('li', null, d))) : null,
    ))),
  );
}

function offSite(b: BackupDetail): HTMLElement {
  return section('Off-site', b.remotes.length === 0
    ? h('p', { class: 'muted' }, 'Not on any remote.')
    : h('ul', null, b.remotes.map((r) => h('li', null, status('ok', r.name), ` since ${when(r.seen_at)}`))));
}

function restore(b: BackupDetail): HTMLElement {
  const commands = b.restore_commands;
  return section(
    'Restore',
    h('p', { class: 'muted' }, 'Restores run from the command line on the host, never from the dashboard: copy a command and run it there.'),
    commands.length === 0 ? h('p', null, 'No restore commands for this backup.') : commands.map((c) => h('div', { class: 'restore' }, h('h3', null, `${c.artifact}: ${c.effect}`), copyable(c.command, { 'data-testid': 'restore-command' }))),
  );
}

export async function backupPage({ view, params, session, signal }: PageContext): Promise<void> {
  const name = params[0] ?? '';
  view.append(h('h1', { tabindex: -1, class: 'name' }, name));
  const [b] = await Promise.all([get<BackupDetail>(`/api/backup/${encodeURIComponent(name)}`, signal), session]);
  view.append(
    h('p', null, h('a', { href: '#/backups' }, '← All backups')),
    facts([
      ['Kind', b.kind],
      ['Status', status(b.status)],
      ['Chain', h('code', null, b.chain)],
      ['Started', dateTime(b.started_at)],
      ['Finished', dateTime(b.finished_at)],
      ['Duration', duration(elapsed(b.started_at, b.finished_at))],
      ['Read', bytes(b.bytes_read)],
      ['Stored', `${bytes(b.bytes_stored)} new in ${count(b.chunks_new)} of ${plural(b.chunks, 'chunk')}`],
    ]),
    h('div', { class: 'cards' }, sources(b), verification(b), offSite(b)),
    artifacts(b),
    restore(b),
  );
}
