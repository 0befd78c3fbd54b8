// A throwaway PostgreSQL 15 cluster for tests (DESIGN.md §7).
//
// There is no synchronous way to stop a server from a process 'exit' handler, so every
// test that starts a cluster must call stop() in an after() hook.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { freePort } from './free-port.ts';

export interface PgCluster {
  dataDir: string;
  socketDir: string;
  port: number;
  binDir: string;
  /** Always 'postgres'. */
  superuser: string;
  /** Required for TCP (127.0.0.1, scram-sha-256); Unix socket connections are trusted. */
  password: string;
  /** Runs `sql` (sent on stdin) with psql as the superuser over the socket; resolves to trimmed stdout. */
  psql(database: string, sql: string): Promise<string>;
  /** Stops the server (fast mode) and removes the temp folder; safe to call twice. */
  stop(): Promise<void>;
}

const DEFAULT_BIN_DIR = '/usr/lib/postgresql/15/bin';
const SUPERUSER = 'postgres';

export async function startPgCluster(options: { binDir?: string } = {}): Promise<PgCluster> {
  const binDir = options.binDir ?? DEFAULT_BIN_DIR;
  if (!existsSync(join(binDir, 'initdb')) || !existsSync(join(binDir, 'pg_ctl'))) {
    throw new Error(
      `PostgreSQL 15 server binaries are needed in ${binDir}: apt-get install postgresql-15 postgresql-contrib`,
    );
  }
  // initdb refuses to run as root, so the server runs as the postgres system user.
  const asRoot = process.getuid?.() === 0;
  const baseDir = await mkdtemp(join(tmpdir(), 'stackback-pg-'));
  const dataDir = join(baseDir, 'data');
  const socketDir = join(baseDir, 'socket');
  const logFile = join(baseDir, 'postgres.log');

  // Server tools run as postgres (when root) from a folder it can read.
  const server = (tool: string, args: string[]) =>
    asRoot
      ? execa('runuser', ['-u', SUPERUSER, '--', join(binDir, tool), ...args], { cwd: baseDir, reject: false })
      : execa(join(binDir, tool), args, { cwd: baseDir, reject: false });

  let started = false;
  try {
    await mkdir(socketDir);
    if (asRoot) {
      const { uid, gid } = await systemUser(SUPERUSER);
      await chown(baseDir, uid, gid);
      await chown(socketDir, uid, gid);
    }
    // Client tools run as the test's own user and must reach the socket.
    await chmod(baseDir, 0o755);
    await chmod(socketDir, 0o755);

    const password = randomBytes(24).toString('base64url');
    check(
      'initdb',
      await server('initdb', [
        '-D', dataDir,
        '-U', SUPERUSER,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--encoding=UTF8',
        `--locale=${(await hasCUtf8Locale()) ? 'C.UTF-8' : 'C'}`,
      ]),
    );

    const port = await freePort();
    // Settings go into postgresql.conf rather than `pg_ctl -o`, which passes its string
    // through a shell and would break on paths with spaces or quotes.
    const settings = {
      listen_addresses: '127.0.0.1',
      port: String(port),
      unix_socket_directories: socketDir,
      // Durability is pointless for a throwaway cluster; these make tests much faster.
      fsync: 'off',
      full_page_writes: 'off',
      synchronous_commit: 'off',
    };
    const conf = Object.entries(settings)
      .map(([name, value]) => `${name} = '${value.replaceAll("'", "''")}'\n`)
      .join('');
    await writeFile(join(dataDir, 'postgresql.conf'), `\n# stackback test cluster\n${conf}`, { flag: 'a' });

    started = true;
    const start = await server('pg_ctl', ['start', '-w', '-t', '60', '-D', dataDir, '-l', logFile]);
    if (start.failed) {
      throw new Error(`pg_ctl start failed: ${start.stderr || start.stdout}\n--- server log (tail) ---\n${await logTail(logFile)}`);
    }

    const psql = async (database: string, sql: string): Promise<string> => {
      // -q hides command tags, so stdout is only query results.
      const result = await execa(
        join(binDir, 'psql'),
        ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', socketDir, '-p', String(port), '-U', SUPERUSER, '-d', database],
        { input: sql, reject: false },
      );
      if (result.failed) throw new Error(`psql on database "${database}" failed: ${result.stderr || result.message}`);
      return result.stdout.trim();
    };

    // The password travels on stdin, never on a command line.
    await psql('postgres', `ALTER ROLE ${SUPERUSER} PASSWORD '${password}';`);

    let stopping: Promise<void> | undefined;
    const stop = () => {
      stopping ??= (async () => {
        try {
          check('pg_ctl stop', await server('pg_ctl', ['stop', '-w', '-m', 'fast', '-D', dataDir]));
        } finally {
          await rm(baseDir, { recursive: true, force: true });
        }
      })();
      return stopping;
    };

    return { dataDir, socketDir, port, binDir, superuser: SUPERUSER, password, psql, stop };
  } catch (error) {
    // Don't leave a half-started server or its folder behind.
    if (started) await server('pg_ctl', ['stop', '-w', '-m', 'immediate', '-D', dataDir]);
    await rm(baseDir, { recursive: true, force: true });
    throw error;
  }
}

function check(what: string, result: { failed: boolean; stderr: string; stdout: string; message?: string }): void {
  if (result.failed) throw new Error(`${what} failed: ${result.stderr || result.stdout || result.message}`);
}

async function systemUser(name: string): Promise<{ uid: number; gid: number }> {
  const result = await execa('id', ['-u', name], { reject: false });
  const group = await execa('id', ['-g', name], { reject: false });
  if (result.failed || group.failed) {
    throw new Error(`Running tests as root needs the "${name}" system user (installed with postgresql-15)`);
  }
  return { uid: Number(result.stdout), gid: Number(group.stdout) };
}

async function hasCUtf8Locale(): Promise<boolean> {
  const result = await execa('locale', ['-a'], { reject: false });
  if (result.failed) return false;
  return result.stdout.split('\n').some((line) => line.trim().toLowerCase().replace('-', '') === 'c.utf8');
}

async function logTail(logFile: string, lines = 30): Promise<string> {
  try {
    return (await readFile(logFile, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no server log)';
  }
}
