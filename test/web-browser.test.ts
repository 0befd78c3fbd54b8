// The web dashboard in a real browser (Debian's chromium driven by playwright-core) against
// the real daemon backing up a real PostgreSQL database: sign-in, the overview, the backups
// list and its charts, "Back up now" with live progress, a failing source, a phone-sized
// screen, and no action where the config allows none. Screenshots go to $SCREENSHOT_DIR
// (`npm run screenshots` refreshes docs/img), else to the test's temp folder.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { followJob } from '../src/daemon/client.ts';
import type { JobView } from '../src/daemon/queue.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { freePort } from './support/free-port.ts';
import { type PgCluster, startPgCluster } from './support/pg-cluster.ts';
import { makeSandbox, postgresSourceYaml, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';
import { signIn, webRequest } from './support/web.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `Debian's chromium is not installed at ${CHROMIUM} (apt-get install chromium; .ci/run does it)`;
/** What the in-page checks read (the test is type-checked without the DOM's types). */
interface PageGlobals {
  document: { body: { dataset: Record<string, string | undefined> }; documentElement: { scrollWidth: number; clientWidth: number } };
  location: { hash: string };
}
/** Serialized into the page: it may use nothing from this module. */
const isReady = () => (globalThis as unknown as PageGlobals).document.body.dataset.ready === '1';
const OFF = 'full: "off", incremental: "off", verify: "off", prune: "off", copy: "off", catch_up: false';

describe('web dashboard in a browser', { skip, timeout: 300_000 }, () => {
  let cluster: PgCluster;
  let sandbox: Sandbox;
  let daemon: DaemonProcess;
  let browser: Browser;
  let base: string;
  let tokenFile: string;
  let screenshots: string;
  /** Content-Security-Policy violations and page errors the browser reported. */
  const problems: string[] = [];

  before(async () => {
    cluster = await startPgCluster();
    await cluster.psql('postgres', 'CREATE DATABASE shop');
    await cluster.psql('shop', "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;");
    sandbox = await makeSandbox(postgresSourceYaml(cluster, { databases: ['shop'], globals: false }));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    tokenFile = join(sandbox.dir, 'web.token');
    const yaml = ['timezone: Europe/Berlin', `schedule: { ${OFF} }`, controlYaml(controlSockets(sandbox.dir)), `web: { listen: "127.0.0.1:${port}", token_file: ${tokenFile}, allow_actions: true }`].join('\n');
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${yaml}\nsources:`));
    daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
    screenshots = resolve(process.env.SCREENSHOT_DIR ?? join(sandbox.dir, 'screenshots'));
    await mkdir(screenshots, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  });

  after(async () => {
    await browser?.close();
    await daemon?.stop();
    await sandbox?.cleanup();
    await cluster?.stop();
  });

  async function backup(type: 'full' | 'incremental'): Promise<string> {
    const submitted = (await daemon.request('POST', '/api/backup/create', { type })).body as { job: JobView };
    const ended = await followJob(daemon.adminSocket, submitted.job.id, () => undefined);
    assert.equal(ended.state, 'ok', JSON.stringify(ended));
    return (ended.result as { backup: string }).backup;
  }

  async function newContext(viewport = { width: 1280, height: 800 }): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport, timezoneId: 'UTC' });
    context.on('console', (message) => {
      // A 401 answer (the sign-in page itself) is logged as a failed load: not a problem of the page.
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(message.text());
    });
    context.on('weberror', (error) => problems.push(error.error().message));
    return context;
  }

  /** Opens `hash` and waits until the page says its data is drawn. */
  async function open(page: Page, hash: string): Promise<void> {
    await page.goto(`${base}/${hash}`);
    await page.waitForFunction(isReady);
  }

  test('sign in through the form; the overview shows the backup made against PostgreSQL and says healthy; the backups page lists it with one chart point per backup', async () => {
    const first = await backup('full');
    // The repository key exported: otherwise status warns that it exists only on this server.
    assert.equal((await sandbox.run(['key', 'export'])).code, 0);
    const context = await newContext();
    const page = await context.newPage();

    await page.goto(base);
    assert.equal(await page.locator('h1').textContent(), 'stackback');
    await page.fill('#token', 'not the token at all, but long enough');
    await page.click('button[type=submit]');
    assert.match((await page.locator('[role=alert]').textContent()) ?? '', /not right/);
    await page.fill('#token', (await readFile(tokenFile, 'utf8')).trim());
    await page.click('button[type=submit]');
    await page.waitForFunction(isReady);

    const health = page.getByTestId('health');
    assert.match((await health.textContent()) ?? '', /^\W*Healthy/);
    assert.match((await page.locator('#app').textContent()) ?? '', new RegExp(first));
    assert.equal(await page.getByTestId('warnings').locator('li').count(), 0);
    await page.screenshot({ path: join(screenshots, 'overview.png'), fullPage: true });

    const second = await backup('incremental');
    await open(page, '#/backups');
    const rows = page.getByTestId('backups-table').locator('tbody tr');
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => (tr as unknown as { dataset: Record<string, string> }).dataset.backup)), [second, first], 'newest first');
    for (const chart of ['chart-stored', 'chart-duration']) assert.equal(await page.getByTestId(chart).getAttribute('data-points'), '2', chart);
    assert.equal(await page.getByTestId('chart-repository').getAttribute('data-points'), '2');
    await page.screenshot({ path: join(screenshots, 'backups.png'), fullPage: true });

    // The detail: the database with its rows, and restore commands instead of a restore button.
    await page.click(`[data-backup="${first}"] a`);
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.body.dataset.ready === '1' && (globalThis as unknown as PageGlobals).location.hash.startsWith('#/backups/'));
    const detail = (await page.locator('#app').textContent()) ?? '';
    assert.match(detail, /shop/);
    assert.match(detail, /5,?000/, 'the row count of items');
    const commands = await page.getByTestId('restore-command').allTextContents();
    assert.ok(commands.includes(`stackback restore ${first} --config ${sandbox.configPath} --source main --database shop --target-db shop_restored`), commands.join('\n'));
    assert.equal(await page.getByRole('button', { name: /^restore/i }).count(), 0, 'no restore button');

    await open(page, '#/history');
    assert.equal(await page.getByTestId('history-table').locator('tbody tr').count(), 2);
    await open(page, '#/config');
    assert.match((await page.getByTestId('config-view').textContent()) ?? '', /shop/);
    await context.close();
    assert.deepEqual(problems, [], 'no CSP violation or script error');
  });

  test('"Back up now" runs a real backup whose progress shows, and which then shows in the list', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const { cookie } = await signIn(base, tokenFile);
    await context.addCookies([{ name: 'stackback_session', value: cookie.split('=')[1]!, url: base }]);
    // A session holding a lock on the table keeps pg_dump waiting, so the running job is there to see.
    const locker = new pg.Client({ host: cluster.socketDir, port: cluster.port, user: 'postgres', database: 'shop' });
    await locker.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE');
      await open(page, '#/');
      const before = (await webRequest(base, 'GET', '/api/backups', { cookie })).json<{ total: number }>().total;
      await page.getByTestId('backup-now').click();
      const progress = page.getByTestId('job-progress');
      await progress.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match((await progress.textContent()) ?? '', /backup/i);
      await locker.query('COMMIT');
      await progress.waitFor({ state: 'detached', timeout: 60_000 });
      await open(page, '#/backups');
      const total = (await webRequest(base, 'GET', '/api/backups', { cookie })).json<{ total: number; backups: { name: string }[] }>();
      assert.equal(total.total, before + 1);
      assert.equal(await page.getByTestId('backups-table').locator('tbody tr').first().getAttribute('data-backup'), total.backups[0]!.name);
    } finally {
      await locker.end();
      await context.close();
    }
  });

  test('on a phone-sized screen nothing runs off the side', async () => {
    const context = await newContext({ width: 390, height: 844 });
    const page = await context.newPage();
    const { cookie } = await signIn(base, tokenFile);
    await context.addCookies([{ name: 'stackback_session', value: cookie.split('=')[1]!, url: base }]);
    for (const hash of ['#/', '#/backups', '#/history', '#/config']) {
      await open(page, hash);
      const overflow = await page.evaluate(() => {
        const { documentElement } = (globalThis as unknown as PageGlobals).document;
        return documentElement.scrollWidth - documentElement.clientWidth;
      });
      assert.ok(overflow <= 0, `${hash} is ${overflow} px wider than the screen`);
    }
    await page.screenshot({ path: join(screenshots, 'overview-phone.png'), fullPage: true });
    await context.close();
  });

  test('a failing source turns the overview unhealthy with the warning; without web.allow_actions the buttons are gone and the API refuses', async () => {
    // The source now names a database the server lacks: the next backup fails.
    const config = await readFile(sandbox.configPath, 'utf8');
    await writeFile(sandbox.configPath, config.replace('databases: ["shop"]', 'databases: ["shop", "gone"]'));
    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);
    const submitted = (await daemon.request('POST', '/api/backup/create', { type: 'incremental' })).body as { job: JobView };
    assert.equal((await followJob(daemon.adminSocket, submitted.job.id, () => undefined)).state, 'failed');

    const context = await newContext();
    const page = await context.newPage();
    const { cookie, csrf } = await signIn(base, tokenFile);
    await context.addCookies([{ name: 'stackback_session', value: cookie.split('=')[1]!, url: base }]);
    await open(page, '#/');
    assert.match((await page.getByTestId('health').textContent()) ?? '', /^\W*Unhealthy/);
    const warnings = await page.getByTestId('warnings').locator('li').allTextContents();
    assert.ok(warnings.some((w) => /last incremental backup failed[\s\S]*"gone"/.test(w)), warnings.join('\n'));
    assert.equal(await page.getByTestId('backup-now').count(), 1);

    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('allow_actions: true', 'allow_actions: false'));
    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);
    // The page learns what it may do when it loads.
    await page.reload();
    await page.waitForFunction(isReady);
    for (const button of ['backup-now', 'full-backup-now', 'verify-now', 'copy-now']) assert.equal(await page.getByTestId(button).count(), 0, button);
    const refused = await webRequest(base, 'POST', '/api/backup/create', { cookie, csrf, body: { type: 'full' } });
    assert.equal(refused.status, 403);
    await context.close();
    await waitFor('the daemon to settle', async () => ((await daemon.request('GET', '/api/jobs')).body as JobView[]).every((j) => j.state !== 'running'));
  });
});
