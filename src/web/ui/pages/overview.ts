// #/ — health, warnings, the running job, schedules, last runs, repository, off-site, channels.
import { act, type BackupPage, get, type JobEvent, type JobView, type StatusDocument, type Submitted } from '../api.ts';
import { backupLink, type Child, dateTime, errorBox, facts, fill, h, section, status, table, verdict } from '../dom.ts';
import { bytes, count, plural, when } from '../format.ts';
import type { PageContext } from '../app.ts';
import { JobWatch, jobLabel } from './job.ts';

const POLL_MS = 5000;

type LastKind = keyof StatusDocument['last'];

function healthLine(doc: StatusDocument): Child[] {
  return doc.healthy ? [verdict(true, 'Healthy')] : [verdict(false, `Unhealthy — ${plural(doc.warnings.length, 'warning')}`)];
}

function lastRuns(doc: StatusDocument): HTMLElement {
  const kinds = Object.keys(doc.last) as LastKind[];
  return section(
    'Last runs',
    table({ class: 'stack' }, [
      { label: 'Kind', key: true, cell: (k) => k },
      { label: 'Result', cell: (k) => (doc.last[k] ? status(doc.last[k].status) : 'never') },
      { label: 'When', cell: (k) => dateTime(doc.last[k]?.finished_at ?? doc.last[k]?.started_at) },
      { label: 'Stored', class: 'num', cell: (k) => (doc.last[k] ? bytes(doc.last[k].bytes_stored) : '—') },
      { label: 'Detail', cell: (k) => { const run = doc.last[k]; return run && (run.level || run.backup || run.error) ? [run.level ? `level ${run.level} ` : null, run.backup ? backupLink(run.backup) : null, run.error ? h('span', { class: 'error-text' }, ` ${run.error}`) : null] : '—'; } },
    ], kinds),
  );
}

function schedules(doc: StatusDocument): HTMLElement {
  const shown = (expression: string | null) => (expression === null ? 'off' : expression === 'after_backup' ? 'after every backup' : expression);
  return section(
    'Schedules',
    table({ class: 'stack' }, [
      { label: 'Job', key: true, cell: (s) => s.name },
      { label: 'Schedule', cell: (s) => h('code', null, shown(s.expression)) },
      { label: 'Next run', cell: (s) => dateTime(s.next) },
    ], doc.schedules),
  );
}

function repository(doc: StatusDocument): HTMLElement {
  const { daemon, repository: repo } = doc;
  return section(
    'Repository',
    facts([
      ['Size', bytes(repo.bytes)],
      ['Backups', count(repo.backups)],
      ['Path', h('code', null, repo.path)],
      ['Encryption key', repo.key_id ? h('code', null, repo.key_id) : 'none (not encrypted)'],
      ['Daemon', daemon ? `running since ${when(daemon.started_at)}, pid ${daemon.pid}, version ${daemon.version}` : verdict(false, 'not running')],
    ]),
  );
}

function offSite(doc: StatusDocument): HTMLElement {
  if (doc.remotes.length === 0) return section('Off-site', h('p', { class: 'muted' }, 'No remotes configured.'));
  return section(
    'Off-site',
    table({ class: 'stack' }, [
      { label: 'Remote', key: true, cell: (r) => [r.name, h('br'), h('code', { class: 'muted' }, r.location)] },
      { label: 'Last copy', cell: (r) => dateTime(r.last_copy_at) },
      { label: 'There', class: 'num', cell: (r) => count(r.backups) },
      { label: 'Missing', class: 'num', cell: (r) => (r.missing > 0 ? status('partial', count(r.missing)) : status('ok', '0')) },
      { label: 'Last error', cell: (r) => (r.last_error ? h('span', { class: 'error-text' }, `${r.last_error} (${when(r.last_attempt_at)})`) : '—') },
    ], doc.remotes),
  );
}

function channels(doc: StatusDocument): HTMLElement {
  if (doc.notifications.length === 0) return section('Notifications', h('p', { class: 'muted' }, 'No notification channels (or the daemon is not running).'));
  return section(
    'Notifications',
    table({ class: 'stack' }, [
      { label: 'Channel', key: true, cell: (c) => c.name },
      { label: 'Kind', cell: (c) => c.kind },
      { label: 'State', cell: (c) => (c.failing_since ? [status('failed', `failing since ${when(c.failing_since)}`), h('br'), c.last_error ?? ''] : status('ok', 'delivering')) },
    ], doc.notifications),
  );
}

function queued(jobs: JobView[]): HTMLElement | null {
  return jobs.length === 0 ? null : h('p', { class: 'queued' }, status('queued', `Queued: ${jobs.map((j) => `${jobLabel(j)} #${j.id}`).join(', ')}`));
}

function recentBackups(page: BackupPage): HTMLElement {
  return section(
    'Recent backups',
    page.backups.length === 0
      ? h('p', { class: 'muted' }, 'No backups yet.')
      : table({ class: 'stack' }, [
          { label: 'Backup', key: true, cell: (b) => backupLink(b.name) },
          { label: 'Status', cell: (b) => status(b.status) },
          { label: 'Finished', cell: (b) => dateTime(b.finished_at) },
          { label: 'Stored', class: 'num', cell: (b) => bytes(b.bytes_stored) },
        ], page.backups),
    h('p', null, h('a', { href: '#/backups' }, `All ${plural(page.total, 'backup')} →`)),
  );
}

interface Action {
  testid: string;
  label: string;
  start: () => Promise<Submitted>;
}

function actionList(doc: StatusDocument): Action[] {
  return [
    { testid: 'backup-now', label: 'Back up now', start: () => act<Submitted>('POST', '/api/backup/create', { type: 'incremental' }) },
    { testid: 'full-backup-now', label: 'Full backup now', start: () => act<Submitted>('POST', '/api/backup/create', { type: 'full' }) },
    { testid: 'verify-now', label: 'Verify all', start: () => act<Submitted>('GET', '/api/backup/verify/all?level=quick') },
    ...(doc.remotes.length > 0 ? [{ testid: 'copy-now', label: 'Copy off-site now', start: () => act<Submitted>('POST', '/api/copy', {}) }] : []),
  ];
}

function endNotice(job: JobView, last: JobEvent | undefined): Child[] {
  const state = last?.state ?? job.state;
  const finished = state !== 'queued' && state !== 'running';
  const error = last?.error ?? job.error;
  return [
    finished ? status(state, `${jobLabel(job)} #${job.id} ended: ${state}`) : `${jobLabel(job)} #${job.id}: lost its progress stream`,
    error ? h('span', { class: 'error-text' }, ` — ${error.message}${error.hint ? ` (${error.hint})` : ''}`) : null,
  ];
}

export async function overviewPage({ view, session, signal }: PageContext): Promise<void> {
  const health = h('p', { class: 'health', 'data-testid': 'health' }, 'Loading…');
  const actions = h('div', { class: 'actions' });
  const notice = h('div', { class: 'notice', role: 'status' });
  const warnings = h('ul', { class: 'warnings', 'data-testid': 'warnings', 'aria-label': 'Warnings' });
  const jobSlot = h('div', { class: 'job-slot' });
  const queue = h('div');
  const problem = h('div');
  const cards = h('div', { class: 'cards' });
  let recent = section('Recent backups', h('p', { class: 'muted' }, 'Loading…'));
  view.append(h('h1', { tabindex: -1 }, 'Overview'), h('div', { class: 'headline' }, health, actions), notice, problem, warnings, jobSlot, queue, cards);

  let doc: StatusDocument | undefined;
  let inFlight: Promise<void> | undefined;
  const watch = new JobWatch(jobSlot, (job, last) => {
    fill(notice, endNotice(job, last));
    void refresh(true);
  }, signal);

  async function load(withList: boolean): Promise<void> {
    try {
      // The first time, the session is still on its way: these two go out beside it.
      const [next, page, { allow_actions }] = await Promise.all([get<StatusDocument>('/api/backup/status', signal), withList ? get<BackupPage>('/api/backups?limit=5', signal) : undefined, session]);
      if (signal.aborted) return;
      const first = !doc;
      doc = next;
      if (page) recent = recentBackups(page);
      render(next);
      if (first && allow_actions) fill(actions, actionList(next).map(button));
      fill(problem);
    } catch (error) {
      if (!signal.aborted) fill(problem, errorBox(error));
      if (!doc) fill(health, verdict(false, 'Unhealthy — status unavailable'));
    }
  }
  function refresh(withList = false): Promise<void> {
    if (inFlight) return withList ? inFlight.then(() => refresh(true)) : inFlight;
    inFlight = load(withList).finally(() => (inFlight = undefined));
    return inFlight;
  }

  function render(next: StatusDocument): void {
    fill(health, healthLine(next));
    fill(warnings, next.warnings.map((w) => h('li', null, h('span', { class: 'icon', 'aria-hidden': 'true' }, '⚠'), ' ', w)));
    warnings.hidden = next.warnings.length === 0;
    watch.update(next.running);
    fill(queue, queued(next.queued));
    fill(cards, lastRuns(next), schedules(next), repository(next), offSite(next), channels(next), recent);
  }

  function button(action: Action): HTMLButtonElement {
    const element = h('button', { type: 'button', 'data-testid': action.testid }, action.label);
    element.addEventListener('click', async () => {
      element.disabled = true;
      try {
        const { job, collapsed } = await action.start();
        fill(notice, status('queued', `${jobLabel(job)} ${collapsed ? 'was already waiting as' : 'started as'} job #${job.id}`));
        watch.follow(job);
        await refresh();
      } catch (error) {
        fill(notice, errorBox(error));
      } finally {
        element.disabled = false;
      }
    });
    return element;
  }

  const timer = setInterval(() => {
    if (document.visibilityState === 'visible') void refresh();
  }, POLL_MS);
  const onVisible = () => {
    if (document.visibilityState === 'visible') void refresh();
  };
  document.addEventListener('visibilitychange', onVisible);
  signal.addEventListener('abort', () => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisible);
  });
  await refresh(true);
}
