// The email channel of issue 17 against a real SMTP server on loopback (the smtp-server
// package, the server side of the nodemailer project): login checked by the server, the
// message as received, a wrong password, a password file others may read, STARTTLS demanded
// of a server without it, and servers that hang up, stay mute or are not there.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { createEmailChannel } from '../src/alerts/email.ts';
import type { AlertEvent } from '../src/alerts/event.ts';
import type { EmailConfig } from '../src/config/load.ts';
import { StackbackError } from '../src/errors.ts';

const USER = 'alerts';
const PASSWORD = 'c0rrect-h0rse-Battery-staple';
const WRONG = 'Wr0ng-pa55word-xyzzy';

const folder = mkdtempSync(join(tmpdir(), 'stackback-email-'));
after(() => rmSync(folder, { recursive: true, force: true }));

let fileCounter = 0;
function passwordFile(text: string, mode = 0o600): string {
  const file = join(folder, `smtp-${++fileCounter}.pw`);
  writeFileSync(file, text);
  chmodSync(file, mode);
  return file;
}

/** A pino logger whose lines the test can read (to prove no secret is logged). */
function capturedLog() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

interface Received {
  from: string;
  to: string[];
  user: string | undefined;
  raw: string;
}

interface TestServer {
  port: number;
  received: Received[];
  authAttempts: { user: string | undefined; ok: boolean }[];
  connections: number;
  close(): Promise<void>;
}

/** A plain (no TLS) SMTP server on loopback that demands a login and keeps what it receives. */
async function startSmtpServer(options: { starttls?: boolean } = {}): Promise<TestServer> {
  const state: TestServer = { port: 0, received: [], authAttempts: [], connections: 0, close: async () => {} };
  const server = new SMTPServer({
    logger: false,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: false,
    allowInsecureAuth: true,
    disabledCommands: options.starttls === false ? ['STARTTLS'] : [],
    hideSTARTTLS: options.starttls === false,
    onConnect(_session, callback) {
      state.connections += 1;
      callback();
    },
    onAuth(auth, _session, callback) {
      const ok = auth.username === USER && auth.password === PASSWORD;
      state.authAttempts.push({ user: auth.username, ok });
      if (!ok) {
        const error = new Error('Invalid username or password') as Error & { responseCode: number };
        error.responseCode = 535;
        callback(error);
        return;
      }
      callback(null, { user: auth.username });
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        state.received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          user: session.user as string | undefined,
          raw: Buffer.concat(chunks).toString('utf8'),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  state.port = (server.server.address() as net.AddressInfo).port;
  state.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return state;
}

function config(port: number, overrides: Partial<EmailConfig['smtp']> = {}, name = 'email'): EmailConfig {
  return {
    name,
    smtp: { host: '127.0.0.1', port, starttls: false, tls: false, user: USER, passwordFile: passwordFile(`${PASSWORD}\n`), ...overrides },
    from: 'backup@example.com',
    to: ['ops@example.com', 'dba@example.com'],
  };
}

const failureEvent: AlertEvent = {
  stackback_event: 1,
  kind: 'failure',
  at: '2025-03-04T05:06:07.000Z',
  host: 'db1.example.com',
  job: { kind: 'backup', id: 42, run: 7 },
  backup: 'main-2025-03-04T050000Z-full',
  sources: ['main-db', 'uploads'],
  error: { code: 'PG_CONNECT', message: 'cannot connect to PostgreSQL at /run/postgresql:5432 (ECONNREFUSED)', hint: 'is the server running? check sources[main-db].host' },
  summary: 'backup of main-db failed: cannot connect to PostgreSQL',
  look_further: ['stackback show main-2025-03-04T050000Z-full', 'stackback history --job backup'],
};

/** Headers and decoded text body of a simple single-part message as nodemailer writes it. */
function parseMessage(raw: string): { headers: Map<string, string>; body: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers = new Map<string, string>();
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = raw.slice(split + 4);
  const encoding = (headers.get('content-transfer-encoding') ?? '7bit').toLowerCase();
  if (encoding === 'quoted-printable') {
    body = Buffer.from(
      body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
      'latin1',
    ).toString('utf8');
  } else if (encoding === 'base64') {
    body = Buffer.from(body, 'base64').toString('utf8');
  }
  return { headers, body: body.replace(/\r\n/g, '\n') };
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, String(error));
    return error;
  }
  assert.fail('send() resolved');
}

describe('email channel', () => {
  let smtp: TestServer;
  before(async () => {
    smtp = await startSmtpServer({ starttls: false });
  });
  after(() => smtp.close());

  test('delivers the event: subject, sender, recipients, every field in the body, the event document at the end', async () => {
    const { log, lines } = capturedLog();
    const channel = createEmailChannel(config(smtp.port), log);
    assert.equal(channel.kind, 'email');
    assert.equal(channel.name, 'email');
    const before = smtp.received.length;
    await channel.send(failureEvent, new AbortController().signal);

    assert.equal(smtp.received.length, before + 1);
    const got = smtp.received.at(-1)!;
    assert.equal(got.user, USER, 'the server saw the login');
    assert.equal(got.from, 'backup@example.com');
    assert.deepEqual(got.to, ['ops@example.com', 'dba@example.com']);

    const { headers, body } = parseMessage(got.raw);
    assert.equal(headers.get('subject'), '[stackback] FAILURE backup on db1.example.com: backup of main-db failed: cannot connect to PostgreSQL');
    assert.equal(headers.get('from'), 'backup@example.com');
    assert.equal(headers.get('to'), 'ops@example.com, dba@example.com');
    assert.equal(headers.get('auto-submitted'), 'auto-generated');
    assert.match(headers.get('content-type') ?? '', /^text\/plain/);

    for (const expected of [
      'FAILURE: backup of main-db failed: cannot connect to PostgreSQL',
      'Host:     db1.example.com',
      'Job:      backup (job 42, run 7)',
      'Backup:   main-2025-03-04T050000Z-full',
      'Sources:  main-db, uploads',
      'Error:    cannot connect to PostgreSQL at /run/postgresql:5432 (ECONNREFUSED) [PG_CONNECT]',
      'Hint:     is the server running? check sources[main-db].host',
      'At:       2025-03-04T05:06:07.000Z',
      '  stackback show main-2025-03-04T050000Z-full',
      '  stackback history --job backup',
    ]) {
      assert.ok(body.includes(expected), `body lacks ${JSON.stringify(expected)}:\n${body}`);
    }
    const json = body.slice(body.indexOf('{'));
    assert.deepEqual(JSON.parse(json), failureEvent, 'the event document closes the body, whole');

    const logged = lines.join('');
    assert.ok(!logged.includes(PASSWORD), 'the password is not logged');
    assert.match(logged, /email alert delivered/);
  });

  test('a test event says TEST; a reminder and a recovered event say so', async () => {
    const channel = createEmailChannel(config(smtp.port), capturedLog().log);
    const testEvent: AlertEvent = { stackback_event: 1, kind: 'success', at: new Date().toISOString(), host: 'db1', summary: 'test notification from stackback', look_further: ['stackback status'], test: true };
    await channel.send(testEvent, new AbortController().signal);
    let message = parseMessage(smtp.received.at(-1)!.raw);
    assert.equal(message.headers.get('subject'), '[stackback] TEST on db1: test notification from stackback');
    assert.match(message.body, /notify test/);

    await channel.send({ ...failureEvent, reminder: true }, new AbortController().signal);
    message = parseMessage(smtp.received.at(-1)!.raw);
    assert.match(message.headers.get('subject') ?? '', /^\[stackback\] FAILURE \(reminder\) backup on db1\.example\.com: /);
    assert.match(message.body, /Reminder: this incident was reported before/);

    await channel.send({ ...failureEvent, kind: 'recovered', error: undefined, summary: 'backup succeeded again' }, new AbortController().signal);
    message = parseMessage(smtp.received.at(-1)!.raw);
    assert.equal(message.headers.get('subject'), '[stackback] RECOVERED backup on db1.example.com: backup succeeded again');
  });

  test('a wrong password: rejected with the channel, the server and its 535 reply, never the password', async () => {
    const { log, lines } = capturedLog();
    const channel = createEmailChannel({ ...config(smtp.port, { passwordFile: passwordFile(`${WRONG}\n`) }), name: 'ops-mail' }, log);
    const delivered = smtp.received.length;
    const error = await rejection(channel.send(failureEvent, new AbortController().signal));
    assert.match(error.message, new RegExp(`^email ops-mail: 127\\.0\\.0\\.1:${smtp.port} refused the login as alerts \\(535 `), error.message);
    assert.match(error.message, /Invalid username or password/);
    const everything = `${error.message} ${error.stack} ${JSON.stringify(error)} ${lines.join('')}`;
    for (const form of [WRONG, Buffer.from(WRONG).toString('base64'), Buffer.from(`\0${USER}\0${WRONG}`).toString('base64')]) {
      assert.ok(!everything.includes(form), `the error or the log carries the password (${form})`);
    }
    assert.equal(smtp.received.length, delivered, 'nothing delivered');
    assert.deepEqual(smtp.authAttempts.at(-1), { user: USER, ok: false });
  });

  test('a password file others may read is refused, with its path, before any connection', async () => {
    const file = passwordFile(`${PASSWORD}\n`, 0o644);
    const channel = createEmailChannel(config(smtp.port, { passwordFile: file }), capturedLog().log);
    const connections = smtp.connections;
    const error = await rejection(channel.send(failureEvent, new AbortController().signal));
    assert.ok(error instanceof StackbackError);
    assert.equal(error.code, 'SECRET_FILE');
    assert.ok(error.message.includes(`password_file ${file} of the email channel`), error.message);
    assert.match(error.message, /accessible to others \(mode 0644\)/);
    assert.ok(!error.message.includes(PASSWORD));
    assert.equal(smtp.connections, connections, 'the server was not contacted');
  });

  test('starttls: true against a server without STARTTLS fails clearly, and no password is sent in clear', async () => {
    const channel = createEmailChannel(config(smtp.port, { starttls: true }), capturedLog().log);
    const attempts = smtp.authAttempts.length;
    const error = await rejection(channel.send(failureEvent, new AbortController().signal));
    assert.match(error.message, new RegExp(`^email: 127\\.0\\.0\\.1:${smtp.port}: TLS failed: the server did not accept STARTTLS, which smtp.starttls requires \\(500 `), error.message);
    assert.equal(smtp.authAttempts.length, attempts, 'no login was tried');
  });

  test('starttls: true upgrades against a server offering STARTTLS, and a certificate that does not verify (smtp-server\'s built-in one) is refused', async () => {
    const tlsServer = await startSmtpServer({ starttls: true });
    try {
      const channel = createEmailChannel(config(tlsServer.port, { starttls: true }), capturedLog().log);
      const error = await rejection(channel.send(failureEvent, new AbortController().signal));
      assert.match(error.message, new RegExp(`^email: 127\\.0\\.0\\.1:${tlsServer.port}: TLS`), error.message);
      assert.match(error.message, /certificate|self[- ]signed|altname/i, error.message);
      assert.equal(tlsServer.authAttempts.length, 0, 'no login was tried');
      assert.equal(tlsServer.received.length, 0);
    } finally {
      await tlsServer.close();
    }
  });
});

describe('email channel against servers that fail', () => {
  const TIMEOUT_MS = 1500;

  /** A TCP server on loopback whose behaviour per connection the test decides. */
  async function rawServer(onSocket: (socket: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
      onSocket(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      port: (server.address() as net.AddressInfo).port,
      close: () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    };
  }

  test('a server that hangs up mid-session: rejected at once, naming the server', async () => {
    const server = await rawServer((socket) => {
      socket.write('220 mx.test ESMTP\r\n');
      socket.once('data', () => socket.destroy());
    });
    try {
      const channel = createEmailChannel(config(server.port), capturedLog().log, { timeoutMs: TIMEOUT_MS });
      const started = performance.now();
      const error = await rejection(channel.send(failureEvent, new AbortController().signal));
      assert.ok(performance.now() - started < TIMEOUT_MS, `took ${performance.now() - started} ms`);
      assert.match(error.message, new RegExp(`^email: the connection to 127\\.0\\.0\\.1:${server.port} failed`), error.message);
    } finally {
      await server.close();
    }
  });

  test('a server that never greets: rejected within the timeout', async () => {
    const server = await rawServer(() => {});
    try {
      const channel = createEmailChannel(config(server.port), capturedLog().log, { timeoutMs: TIMEOUT_MS });
      const started = performance.now();
      const error = await rejection(channel.send(failureEvent, new AbortController().signal));
      const took = performance.now() - started;
      assert.ok(took >= TIMEOUT_MS - 100 && took < TIMEOUT_MS + 2000, `took ${took} ms`);
      assert.match(error.message, new RegExp(`^email: 127\\.0\\.0\\.1:${server.port} did not answer within 1\\.5 s`), error.message);
    } finally {
      await server.close();
    }
  });

  test('the caller’s signal ends a delivery stuck on a mute server', async () => {
    const server = await rawServer(() => {});
    try {
      const channel = createEmailChannel(config(server.port), capturedLog().log);
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('daemon stopping')), 200);
      const started = performance.now();
      const error = await rejection(channel.send(failureEvent, controller.signal));
      assert.ok(performance.now() - started < 5000);
      assert.match(error.message, new RegExp(`^email: delivery to 127\\.0\\.0\\.1:${server.port} was cancelled \\(daemon stopping\\)`), error.message);
    } finally {
      await server.close();
    }
  });

  test('nothing listening on the port: rejected at once with ECONNREFUSED', async () => {
    const server = await rawServer(() => {});
    const port = server.port;
    await server.close();
    const channel = createEmailChannel(config(port), capturedLog().log, { timeoutMs: TIMEOUT_MS });
    const started = performance.now();
    const error = await rejection(channel.send(failureEvent, new AbortController().signal));
    assert.ok(performance.now() - started < TIMEOUT_MS);
    assert.equal(error.message, `email: cannot connect to 127.0.0.1:${port} (ECONNREFUSED)`);
  });
});
