// The dashboard's entry: the session, the top bar, and hash routing to the pages.
import { act, loadSession, type Session } from './api.ts';
import { afterPaint, errorBox, fill, h, setReady } from './dom.ts';
import { setTimeZone, warmUp } from './format.ts';
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
  /**
   * The session, still on its way when the first page starts: a page starts its own requests
   * at once (GETs need no CSRF token) and awaits this before drawing data (times are shown in
   * its zone) or offering actions.
   */
  session: Promise<Session>;
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

/** The top bar, drawn before the session is known: the version comes with it, sign-out waits for its CSRF token. */
function header(session: Promise<Session>, version: HTMLElement): HTMLElement {
  const signOut = h('button', { type: 'button', class: 'secondary', 'data-testid': 'sign-out' }, 'Sign out');
  signOut.addEventListener('click', async () => {
    signOut.disabled = true;
    try {
      await session;
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
    version,
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

/** Routes the current address and every later one; returns a stop that leaves the current page. */
function start(session: Promise<Session>, main: HTMLElement): () => void {
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
  const stop = () => {
    removeEventListener('hashchange', route);
    leave?.abort();
  };
  // A click on an in-page link is not ready from the moment it happens (hashchange comes a task later).
  document.addEventListener('click', (event) => {
    const link = event.target instanceof Element ? event.target.closest<HTMLAnchorElement>('a[href^="#"]') : null;
    if (link && link.hash !== location.hash && event.button === 0 && !event.ctrlKey && !event.metaKey && !event.shiftKey && !event.altKey) setReady(false);
  }, true);
  void route();
  return stop;
}

/**
 * Everything starts at once: the session request, the top bar and the current page's frame
 * (drawn before any answer, so the first paint does not wait for the network), and the page's
 * own requests. What only the data needs (the formatters' locale data) is made after that paint.
 */
function main(): void {
  setReady(false);
  const root = document.getElementById('app')!;
  const version = h('span', { class: 'version muted' });
  const view = h('main', { id: 'main' });
  const session = loadSession().then((s) => {
    setTimeZone(s.timezone);
    fill(version, `v${s.version}`);
    return s;
  });
  fill(root, header(session, version), view);
  let stop = () => {};
  // Before the page's own handlers of the session: they find the page already left.
  session.catch((error: unknown) => {
    stop();
    fill(root, h('main', { id: 'main' }, h('h1', null, 'stackback'), errorBox(error)));
    setReady(true);
  });
  stop = start(session, view);
  void afterPaint().then(warmUp);
}

main();
