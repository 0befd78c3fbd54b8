// Runs the real daemon as a child process against a sandbox config, and talks to it over
// its Unix socket the way curl --unix-socket or the CLI does.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { daemonRequest, type DaemonResponse } from '../../src/daemon/client.ts';
import { PROJECT_ROOT } from './stackback.ts';

export interface DaemonProcess {
  child: ResultPromise;
  socket: string;
  /** Everything the daemon logged so far (stdout + stderr). */
  output(): string;
  request(method: string, path: string, body?: unknown): Promise<DaemonResponse>;
  stop(): Promise<void>;
}

export async function startDaemon(configPath: string, socket: string, env: Record<string, string> = {}): Promise<DaemonProcess> {
  const child = execa(process.execPath, [join(PROJECT_ROOT, 'src/cli/main.ts'), 'daemon', '--config', configPath], { reject: false, all: true, env, buffer: false });
  let output = '';
  let exited: number | undefined;
  child.all?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  void child.then((result) => (exited = result.exitCode ?? -1));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited !== undefined) throw new Error(`the daemon exited (${exited}) before answering:\n${output}`);
    if (existsSync(socket)) {
      const answer = await daemonRequest(socket, 'GET', '/api/backup/status', undefined, 1000).catch(() => undefined);
      if (answer?.status === 200) break;
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the daemon did not answer on ${socket} within 20 s:\n${output}`);
    }
    await sleep(50);
  }
  return {
    child,
    socket,
    output: () => output,
    request: (method, path, body) => daemonRequest(socket, method, path, body),
    async stop() {
      if (exited === undefined) child.kill('SIGTERM');
      await child;
    },
  };
}
