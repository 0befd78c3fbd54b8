// The web dashboard's HTTP side against the real daemon: sign-in, sessions, the CSRF rule,
// the rate limit, security headers, what the page may do, and that no secret reaches it.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { followJob } from '../src/daemon/client.ts';
import type { StatusDocument } from '../src/daemon/status.ts';
import type { BackupDetail, ChartSeries, ListedBackup } from '../src/catalog/views.ts';
import type { RunRow } from '../src/catalog/catalog.ts';
import { controlSockets, controlYaml, type DaemonProcess, startDaemon } from './support/daemon.ts';
import { freePort } from './support/free-port.ts';
import { filesSourceYaml, makeSandbox, type Sandbox } from './support/stackback.ts';
import { waitFor } from './support/wait.ts';
import { signIn, webRequest } from './support/web.ts';

const OFF = 'full: "off", incremental: "off", verify: "off", prune: "off", copy: "off", catch_up: false';

/** Every GET route of the page and the API: each must refuse a request without the token. */
const READ_ROUTES = ['/', '/assets/app.js', '/assets/app.css', '/api/session', '/api/backup/status', '/api/backup/list', '/api/backups', '/api/runs', '/api/history', '/api/charts', '/api/config', '/api/jobs', '/api/jobs/1', '/api/backup/some-backup', '/metrics', '/nowhere'];
const ACTION_ROUTES: [string, string][] = [['POST', '/api/backup/create'], ['GET', '/api/backup/verify/all'], ['POST', '/api/copy'], ['POST', '/api/backup/restore/x'], ['DELETE', '/api/backup/x'], ['POST', '/api/retention/apply'], ['POST', '/api/config/reload'], ['POST', '/logout']];

describe('web dashboard over HTTP', { timeout: 240_000 }, () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  interface Dashboard {
    sandbox: Sandbox;
    daemon: DaemonProcess;
    base: string;
    tokenFile: string;
    data: string;
  }

  /** A daemon backing up one folder (two sources over it), with the dashboard on a free port; `web` adds keys to web:. */
  async function dashboard(web = '', extraYaml = ''): Promise<Dashboard> {
    const sandbox = await makeSandbox('', { filesYaml: [filesSourceYaml(['/DATA'], { name: 'docs' }), filesSourceYaml(['/DATA'], { name: 'media' })].join('\n') });
    cleanups.push(() => sandbox.cleanup());
    const data = join(sandbox.dir, 'data');
    await mkdir(data);
    await writeFile(join(data, 'a.txt'), 'an application file\n'.repeat(1000));
    const port = await freePort();
    const tokenFile = join(sandbox.dir, 'secrets', 'web.token');
    const yaml = ['timezone: Europe/Berlin', `schedule: { ${OFF} }`, controlYaml(controlSockets(sandbox.dir)), `web: { listen: "127.0.0.1:${port}", token_file: ${tokenFile}${web ? `, ${web}` : ''} }`, extraYaml].join('\n');
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${yaml}\nsources:`).replaceAll('["/DATA"]', JSON.stringify([data])));
    const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
    cleanups.push(() => daemon.stop());
    return { sandbox, daemon, base: `http://127.0.0.1:${port}`, tokenFile, data };
  }

  test('without the token every page and API route answers 401 (the page with the sign-in form); a forged or expired session too; headers on every answer; wrong tokens are rate-limited', async () => {
    const { daemon, base, tokenFile } = await dashboard('session_ttl: 3s');
    // Made on first start, private, and never logged.
    const token = (await readFile(tokenFile, 'utf8')).trim();
    assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
    assert.ok(token.length >= 40);

    for (const path of READ_ROUTES) {
      for (const cookie of [undefined, 'stackback_session=forged-session-id']) {
        const answer = await webRequest(base, 'GET', path, { cookie });
        assert.equal(answer.status, 401, `GET ${path} (cookie ${cookie}): ${answer.text}`);
        assert.match(answer.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/, path);
        assert.equal(answer.headers.get('x-frame-options'), 'DENY');
        assert.equal(answer.headers.get('referrer-policy'), 'no-referrer');
        if (path === '/') assert.match(answer.text, /<form method="post" action="\/login">/);
        else assert.equal(answer.json<{ error: { code: string } }>().error.code, 'UNAUTHORIZED', path);
      }
    }
    for (const [method, path] of ACTION_ROUTES) assert.equal((await webRequest(base, method, path, { body: method === 'GET' ? undefined : {} })).status, 401, `${method} ${path}`);
    // The sign-in page's stylesheet is the one thing served to anybody.
    assert.equal((await webRequest(base, 'GET', '/assets/login.css')).status, 200);

    // A session works until its expiry, then is refused like a forged one.
    const session = await signIn(base, tokenFile);
    const page = await webRequest(base, 'GET', '/', { cookie: session.cookie });
    assert.equal(page.status, 200);
    assert.match(page.text, /<script type="module" src="\/assets\/app.js"><\/script>/);
    assert.doesNotMatch(page.text, /<script>|<style|style=/, 'no inline script or style');
    const asset = await webRequest(base, 'GET', '/assets/app.js', { cookie: session.cookie, headers: { 'accept-encoding': 'gzip' } });
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('content-type') ?? '', /javascript/);
    assert.equal((await webRequest(base, 'GET', '/api/backup/status', { cookie: session.cookie })).status, 200);
    await sleep(3200);
    const expired = await webRequest(base, 'GET', '/api/backup/status', { cookie: session.cookie });
    assert.equal(expired.status, 401, expired.text);
    assert.match(expired.json<{ error: { message: string } }>().error.message, /expired or is unknown/);

    // The cookie's attributes.
    const login = await webRequest(base, 'POST', '/login', { form: { token } });
    assert.equal(login.status, 303);
    assert.match(login.headers.get('set-cookie') ?? '', /^stackback_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=3$/);

    // Scripts: the bearer token, no cookie.
    assert.equal((await webRequest(base, 'GET', '/api/backup/status', { bearer: token })).status, 200);
    assert.equal((await webRequest(base, 'GET', '/api/backup/status', { bearer: `${token}x` })).status, 401);

    // Wrong tokens: 5 a minute from one address (one bearer try above already counts), then 429 even for the right one.
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await webRequest(base, 'POST', '/login', { form: { token: `wrong-${i}` } })).status);
    assert.deepEqual(statuses, [401, 401, 401, 401, 429]);
    const limited = await webRequest(base, 'POST', '/login', { form: { token } });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    assert.equal((await webRequest(base, 'GET', '/api/backup/status', { bearer: token })).status, 429);
    assert.ok(!daemon.output().includes(token), 'the token never reaches the log');
  });

  test('the page may act only with web.allow_actions and the CSRF token; restores, deletes and reloads never; the lists, charts and runs follow real backups', async () => {
    const { sandbox, daemon, base, tokenFile, data } = await dashboard('allow_actions: true');
    const token = (await readFile(tokenFile, 'utf8')).trim();
    const { cookie, csrf } = await signIn(base, tokenFile);

    const refused = async (method: string, path: string, credentials: { cookie?: string; csrf?: string; bearer?: string }, pattern: RegExp) => {
      const answer = await webRequest(base, method, path, { ...credentials, body: method === 'GET' ? undefined : { type: 'full' } });
      assert.equal(answer.status, 403, `${method} ${path}: ${answer.text}`);
      assert.match(answer.json<{ error: { message: string } }>().error.message, pattern);
    };
    await refused('POST', '/api/backup/create', { cookie }, /CSRF token/);
    await refused('POST', '/api/backup/create', { cookie, csrf: `${csrf.slice(1)}x` }, /CSRF token/);
    await refused('GET', '/api/backup/verify/all', { cookie }, /CSRF token/);
    await refused('POST', '/api/backup/restore/anything', { cookie, csrf }, /not served to the dashboard/);
    await refused('DELETE', '/api/backup/anything', { cookie, csrf }, /not served to the dashboard/);
    await refused('POST', '/api/config/reload', { bearer: token }, /not served to the dashboard/);
    assert.deepEqual((await daemon.request('GET', '/api/jobs')).body, [], 'no job started');

    // With the CSRF token: a real backup of both sources, then one of docs alone from a script (bearer, no CSRF needed).
    const backups: string[] = [];
    for (const [credentials, body] of [[{ cookie, csrf }, { type: 'full' }], [{ bearer: token }, { type: 'incremental', sources: ['docs'] }]] as const) {
      const submitted = await webRequest(base, 'POST', '/api/backup/create', { ...credentials, body });
      assert.equal(submitted.status, 202, submitted.text);
      const { job } = submitted.json<{ job: { id: number } }>();
      const ended = await followJob(daemon.adminSocket, job.id, () => undefined);
      assert.equal(ended.state, 'ok', JSON.stringify(ended));
      backups.push((ended.result as { backup: string }).backup);
      await writeFile(join(data, 'b.txt'), 'a new file\n'.repeat(500));
    }

    const page = (query: string) => webRequest(base, 'GET', `/api/backups${query}`, { cookie }).then((r) => r.json<{ total: number; offset: number; limit: number; backups: ListedBackup[] }>());
    const all = await page('');
    assert.deepEqual([all.total, all.offset, all.limit], [2, 0, 50]);
    assert.deepEqual(all.backups.map((b) => b.name), [...backups].reverse(), 'newest first');
    assert.deepEqual((await page('?limit=1&offset=1')).backups.map((b) => b.name), [backups[0]]);
    assert.deepEqual((await page('?source=media')).backups.map((b) => b.name), [backups[0]]);
    assert.deepEqual((await page('?kind=incremental&source=docs')).backups.map((b) => b.name), [backups[1]]);
    assert.equal((await page('?source=nothing')).total, 0);
    const bad = await webRequest(base, 'GET', '/api/backups?status=fine', { cookie });
    assert.equal(bad.status, 400);
    assert.match(bad.json<{ error: { message: string } }>().error.message, /"status" must be one of ok, partial/);
    // The same list as the socket's.
    assert.deepEqual((await daemon.request('GET', '/api/backups')).body, all);

    const charts = (await webRequest(base, 'GET', '/api/charts', { cookie })).json<ChartSeries>();
    assert.deepEqual(charts.backups.name, backups);
    assert.deepEqual(charts.backups.bytes_stored, [...all.backups].reverse().map((b) => b.bytes_stored));
    assert.ok(charts.backups.duration_s.every((d) => d >= 0 && d < 60));
    assert.equal(charts.repository.bytes.length, 2, 'one repository size per backup');
    const status = (await webRequest(base, 'GET', '/api/backup/status', { cookie })).json<StatusDocument>();
    assert.equal(charts.repository.bytes.at(-1), status.repository.bytes);

    const runs = (await webRequest(base, 'GET', '/api/runs?kind=backup&status=ok&limit=1', { cookie })).json<{ total: number; runs: RunRow[] }>();
    assert.equal(runs.total, 2);
    assert.equal(runs.runs[0]!.backup, backups[1]);

    const detail = (await webRequest(base, 'GET', `/api/backup/${backups[0]}`, { cookie })).json<BackupDetail>();
    assert.deepEqual(detail.restore_commands.map((c) => c.command), [
      `stackback restore ${backups[0]} --config ${sandbox.configPath} --source docs --target-dir /var/tmp/stackback-restore`,
      `stackback restore ${backups[0]} --config ${sandbox.configPath} --source docs`,
      `stackback restore ${backups[0]} --config ${sandbox.configPath} --source media --target-dir /var/tmp/stackback-restore`,
      `stackback restore ${backups[0]} --config ${sandbox.configPath} --source media`,
    ]);

    // Signing out needs the CSRF token too; afterwards the cookie is dead.
    assert.equal((await webRequest(base, 'POST', '/logout', { cookie })).status, 403);
    assert.equal((await webRequest(base, 'POST', '/logout', { cookie, csrf })).status, 204);
    assert.equal((await webRequest(base, 'GET', '/api/backup/status', { cookie })).status, 401);
  });

  test('without web.allow_actions the API refuses every action, with the key to change named', async () => {
    const { daemon, base, tokenFile } = await dashboard();
    const token = (await readFile(tokenFile, 'utf8')).trim();
    const { cookie, csrf } = await signIn(base, tokenFile);
    assert.equal((await webRequest(base, 'GET', '/api/session', { cookie })).json<{ allow_actions: boolean }>().allow_actions, false);
    for (const credentials of [{ cookie, csrf }, { bearer: token }]) {
      for (const [method, path] of [['POST', '/api/backup/create'], ['GET', '/api/backup/verify/all'], ['POST', '/api/copy']]) {
        const answer = await webRequest(base, method!, path!, { ...credentials, body: method === 'GET' ? undefined : {} });
        assert.equal(answer.status, 403, `${method} ${path}`);
        assert.match(answer.text, /web\.allow_actions is false/);
      }
    }
    assert.deepEqual((await daemon.request('GET', '/api/jobs')).body, [], 'no job started');
  });

  test('the config view shows paths, never secrets: not in its JSON, the page, or any other route', async () => {
    const secrets = { pg: 'PG-PASSWORD-5d1f', qdrant: 'QDRANT-KEY-77ab', s3: 'S3-SECRET-KEY-9c0e', webhook: 'WEBHOOK-TOKEN-e3f2' };
    const secretDir = await mkdtemp(join(tmpdir(), 'stackback-secrets-'));
    cleanups.push(() => rm(secretDir, { recursive: true, force: true }));
    const file = async (name: string, text: string) => {
      await writeFile(join(secretDir, name), text, { mode: 0o600 });
      return join(secretDir, name);
    };
    const extra = [
      'remotes:',
      '  - { name: offsite, type: s3, endpoint: "http://127.0.0.1:9", region: us-east-1, bucket: offsite-bucket, force_path_style: true, credentials_file: ' + (await file('s3', `[default]\naws_access_key_id = AKIA\naws_secret_access_key = ${secrets.s3}\n`)) + ' }',
      'notify:',
      `  webhooks: [{ url_file: ${await file('hook', `https://hooks.example/${secrets.webhook}\n`)} }]`,
    ].join('\n');
    const { sandbox, base, tokenFile, daemon } = await dashboard('', extra);
    // Sources whose servers are not there, added by a reload (a start would try to reach them).
    const config = await readFile(sandbox.configPath, 'utf8');
    const sources = [
      '  postgres:',
      `    - { name: db, host: 127.0.0.1, port: 9, password_file: ${await file('pg', `${secrets.pg}\n`)}, databases: all }`,
      '  qdrant:',
      `    - { name: vectors, url: "http://127.0.0.1:9", api_key_file: ${await file('qdrant', `${secrets.qdrant}\n`)} }`,
    ].join('\n');
    await writeFile(sandbox.configPath, config.replace('sources:\n', `sources:\n${sources}\n`));
    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);

    const { cookie } = await signIn(base, tokenFile);
    const view = await webRequest(base, 'GET', '/api/config', { cookie });
    assert.equal(view.status, 200);
    const body = view.json<{ effective: { sources: { password_file?: string; api_key_file?: string; url?: string }[]; remotes: { credentials_file: string }[] }; check: { ok: boolean; sources: string[] } }>();
    assert.equal(body.check.ok, true, view.text);
    assert.equal(body.effective.sources.find((s) => s.password_file)?.password_file, join(secretDir, 'pg'), 'the path is shown');
    assert.equal(body.effective.sources.find((s) => s.api_key_file)?.api_key_file, join(secretDir, 'qdrant'));
    assert.equal(body.effective.remotes[0]!.credentials_file, join(secretDir, 's3'));
    const token = (await readFile(tokenFile, 'utf8')).trim();
    const everything = [view.text];
    for (const path of READ_ROUTES) everything.push((await webRequest(base, 'GET', path, { cookie })).text);
    for (const text of everything) {
      for (const [name, secret] of Object.entries({ ...secrets, token })) assert.ok(!text.includes(secret), `${name} leaked: ${text.slice(0, 200)}`);
    }
  });

  test('a token file the daemon cannot make leaves the backups running and says so in status, with the fix; `stackback web token` makes and rotates it; a rotated token ends the sessions', async () => {
    const sandbox = await makeSandbox('', { filesYaml: filesSourceYaml(['/tmp']) });
    cleanups.push(() => sandbox.cleanup());
    // Its folder is a file: not creatable, even by root.
    await writeFile(join(sandbox.dir, 'not-a-folder'), '');
    const tokenFile = join(sandbox.dir, 'not-a-folder', 'web.token');
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const yaml = [`schedule: { ${OFF} }`, controlYaml(controlSockets(sandbox.dir)), `web: { listen: "127.0.0.1:${port}", token_file: ${tokenFile} }`].join('\n');
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace('sources:', `${yaml}\nsources:`));
    const daemon = await startDaemon(sandbox.configPath, controlSockets(sandbox.dir));
    cleanups.push(() => daemon.stop());
    const status = (await daemon.request('GET', '/api/backup/status')).body as StatusDocument;
    const warning = status.warnings.find((w) => w.startsWith('web dashboard not served'));
    assert.ok(warning, JSON.stringify(status.warnings));
    assert.ok(warning.includes(`web.token_file ${tokenFile} does not exist and cannot be created (EEXIST)`), warning);
    assert.match(warning, /create it as root: `stackback web token`/);
    await assert.rejects(fetch(base), 'nothing listens');

    // The CLI makes the file where the config says (here after pointing it somewhere possible), keeps it, rotates it.
    const goodFile = join(sandbox.dir, 'etc', 'web.token');
    await writeFile(sandbox.configPath, (await readFile(sandbox.configPath, 'utf8')).replace(tokenFile, goodFile));
    const made = await sandbox.run(['web', 'token']);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, new RegExp(`created ${goodFile} \\(mode 06[04]0`));
    const first = (await readFile(goodFile, 'utf8')).trim();
    assert.ok(!made.stdout.includes(first), 'the token is not printed');
    assert.match((await sandbox.run(['web', 'token'])).stdout, /exists \(keeping it/);
    assert.equal((await readFile(goodFile, 'utf8')).trim(), first);

    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);
    await waitFor('the dashboard after the reload', () => fetch(`${base}/api/session`).then((r) => r.status === 401, () => false));
    const before = await signIn(base, goodFile);
    assert.ok(!((await daemon.request('GET', '/api/backup/status')).body as StatusDocument).warnings.some((w) => w.startsWith('web dashboard')), 'the warning is gone');

    assert.equal((await sandbox.run(['web', 'token', '--rotate'])).code, 0);
    assert.notEqual((await readFile(goodFile, 'utf8')).trim(), first);
    assert.equal((await webRequest(base, 'GET', '/api/backup/status', { cookie: before.cookie })).status, 200, 'the daemon has the old token until it reloads');
    assert.equal((await daemon.request('POST', '/api/config/reload')).status, 200);
    await waitFor('the old session to end', async () => (await webRequest(base, 'GET', '/api/backup/status', { cookie: before.cookie })).status === 401);
    await signIn(base, goodFile);
  });
});
