// The dashboard's entry: the session, the top bar, and hash routing to the pages.
import { act, loadSession, type Session } from './api.ts';
import { errorBox, fill, h, setReady } from './dom.ts';
import { setTimeZone } from './format.ts';
import { backupPage } from './pages/backup.ts';
import { backupsPage } from './pages/backups.ts';
import { configPage } from './pages/config.ts';
import { historyPage } from './pages/history.ts';
import { overviewPage } from './pages/overview.ts';

export interface PageContext {
  /** The page's container (empty when the page starts). */
  view: HTMLElement;
  /** Captured from the route's pattern. */
  params: string[];
  /** The part of the hash after "?": a list's filters and offset. */
  query: URLSearchParams;
  session: Session;
  /** Aborts when the user leaves the page: stop polling, streams, charts. */
  signal: AbortSignal;
}

type Render = (context: PageContext) => Promise<void>;

const NAV: [href: string, label: string][] = [
  ['#/', 'Overview'],
  ['#/backups', 'Backups'],
  ['#/history', 'History'],
  ['#/config', 'Configuration'],
];

const ROUTES: [pattern: RegExp, title: string, render: Render][] = [
  [/^\/$/, 'Overview', overviewPage],
  [/^\/backups$/, 'Backups', backupsPage],
  [/^\/backups\/(.+)$/, 'Backup', backupPage],
  [/^\/history$/, 'History', historyPage],
  [/^\/config$/, 'Configuration', configPage],
];

function header(session: Session): HTMLElement {
  const signOut = h('button', { type: 'button', class: 'secondary', 'data-testid': 'sign-out' }, 'Sign out');
  signOut.addEventListener('click', async () => {
    signOut.disabled = true;
    try {
      await act('POST', '/logout');
    } finally {
      location.reload();
    }
  });
  return h(
    'header',
    { class: 'top' },
    h('a', { class: 'brand', href: '#/' }, 'stackback'),
    h('nav', { 'aria-label': 'Main' }, h('ul', null, NAV.map(([href, label]) => h('li', null, h('a', { href }, label))))),
    h('span', { class: 'version muted' }, `v${session.version}`),
    signOut,
  );
}

function markCurrent(path: string): void {
  for (const link of document.querySelectorAll<HTMLAnchorElement>('header nav a')) {
    const target = link.getAttribute('href')!.slice(1);
    const current = target === '/' ? path === '/' : path === target || path.startsWith(`${target}/`);
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function start(session: Session, main: HTMLElement): void {
  let leave: AbortController | undefined;
  let first = true;
  const route = async () => {
    leave?.abort();
    const controller = (leave = new AbortController());
    setReady(false);
    const [path = '/', search = ''] = (location.hash.slice(1) || '/').split('?', 2);
    const found = ROUTES.map(([pattern, title, render]) => ({ match: pattern.exec(path), title, render })).find((r) => r.match);
    markCurrent(path);
    fill(main);
    document.title = `${found?.title ?? 'Not found'} · stackback`;
    try {
      if (!found) main.append(h('h1', { tabindex: -1 }, 'Not found'), h('p', null, h('a', { href: '#/' }, 'Back to the overview')));
      else await found.render({ view: main, params: found.match!.slice(1).map(decodeURIComponent), query: new URLSearchParams(search), session, signal: controller.signal });
    } catch (error) {
      if (!controller.signal.aborted) main.append(errorBox(error));
    }
    if (controller.signal.aborted) return;
    if (!first) main.querySelector<HTMLElement>('h1')?.focus();
    first = false;
    setReady(true);
  };
  addEventListener('hashchange', route);
  // A click on an in-page link is not ready from the moment it happens (hashchange comes a task later).
  document.addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest<HTMLAnchorElement>('a[href^="#"]') : null;
    if (link && link.hash !== location.hash && event.button === 0 && !event.ctrlKey && !event.metaKey && !event.shiftKey && !event.altKey) setReady(false);
  }, true);
  void route();
}

async function main(): Promise<void> {
  setReady(false);
  const root = document.getElementById('app')!;
  const view = h('main', { id: 'main' });
  try {
    const session = await loadSession();
    setTimeZone(session.timezone);
    fill(root, header(session), view);
    start(session, view);
  } catch (error) {
    fill(root, h('main', { id: 'main' }, h('h1', null, 'stackback'), errorBox(error)));
    setReady(true);
  }
}

void main();
