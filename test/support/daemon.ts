// Runs the real daemon as a child process against a sandbox config, and talks to it over
// its Unix sockets the way curl --unix-socket or the CLI does.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { daemonRequest, type DaemonResponse } from '../../src/daemon/client.ts';
import { PROJECT_ROOT } from './stackback.ts';

export interface DaemonProcess {
  child: ResultPromise;
  /** The read-only socket (control.socket). */
  socket: string;
  /** The admin socket (control.admin_socket), which serves every route. */
  adminSocket: string;
  /** Everything the daemon logged so far (stdout + stderr). */
  output(): string;
  /** A request through the admin socket. */
  request(method: string, path: string, body?: unknown): Promise<DaemonResponse>;
  stop(): Promise<void>;
}

export interface DaemonSockets {
  socket: string;
  adminSocket: string;
}

/** The control section of a test config: both sockets in `dir`. */
export function controlSockets(dir: string): DaemonSockets {
  return { socket: join(dir, 'control.sock'), adminSocket: join(dir, 'admin.sock') };
}

/** The `control:` line of a test config for these sockets; `extra` adds keys (`socket_mode: "0640"`). */
export function controlYaml({ socket, adminSocket }: DaemonSockets, extra = ''): string {
  return `control: { socket: ${socket}, admin_socket: ${adminSocket}${extra ? `, ${extra}` : ''} }`;
}

/** Starts the daemon on a config whose control section names these sockets, and waits until it answers. */
export async function startDaemon(configPath: string, { socket, adminSocket }: DaemonSockets, env: Record<string, string> = {}): Promise<DaemonProcess> {
  const child = execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'daemon', '--config', configPath], { reject: false, all: true, env, buffer: false });
  let output = '';
  let exited: number | undefined;
  child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  void child.then((result) => (exited = result.exitCode ?? -1));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited !== undefined) throw new Error(`the daemon exited (${exited}) before answering:\n${output}`);
    // The admin socket is listened on last: once it answers, both do.
    if (existsSync(adminSocket)) {
      const answer = await daemonRequest(adminSocket, 'GET', '/api/backup/status', undefined, 1000).catch(() => undefined);
      if (answer?.status === 200) break;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the daemon did not answer on ${adminSocket} within 20 s:\n${output}`);
    }
    await sleep(50);
  }
  return {
    child,
    socket,
    adminSocket,
    output: () => output,
    request: (method, path, body) => daemonRequest(adminSocket, method, path, body),
    async stop() {
      if (exited === undefined) child.kill('SIGTERM');
      await child;
    },
  };
}
