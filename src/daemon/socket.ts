import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { StackbackError } from '../errors.ts';
import { nameIds } from '../system-accounts.ts';
import { daemonRequest } from './client.ts';

function groupId(group: string, socketPath: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const id = nameIds('/etc/group').get(group);
  if (id === undefined) throw new StackbackError('CONFIG_INVALID', `no group named "${group}" for the control socket ${socketPath}`, 'fix control.socket_group or control.admin_socket_group, or create the group');
  return id;
}

/**
 * Listens on the control socket. A socket file that answers belongs to a running daemon:
 * refuse, naming it. One that does not answer was left by a dead daemon: replace it.
 * The socket is created under a umask that already gives it its final mode (no window
 * in which it is wider), then given its group.
 */
async function listenOnSocket(server: http.Server, socketPath: string, mode: number, group: string | null): Promise<void> {
  await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
  if (existsSync(socketPath)) {
    const other = await daemonRequest(socketPath, 'GET', '/api/backup/status', undefined, 1000).catch(() => undefined);
    if (other) {
      const pid = (other.body as { daemon?: { pid?: number } }).daemon?.pid;
      throw new StackbackError('DAEMON_RUNNING', `another stackback daemon${pid ? ` (pid ${pid})` : ''} is serving ${socketPath}`, 'stop it first (systemctl stop stackback)');
    }
    await rm(socketPath, { force: true });
  }
  const previous = process.umask(0o777 & ~mode);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previous);
  }
  await chmod(socketPath, mode);
  if (group !== null) await chown(socketPath, -1, groupId(group, socketPath));
}

export interface SocketListener {
  server: http.Server;
  path: string;
  mode: number;
  group: string | null;
}

/**
 * Listens on every socket, or on none: when one cannot be served, those already listening
 * are closed and their files removed (never the file of another daemon that answers there).
 */
export async function listenOnSockets(listeners: SocketListener[]): Promise<void> {
  try {
    for (const listener of listeners) await listenOnSocket(listener.server, listener.path, listener.mode, listener.group);
  } catch (error) {
    await closeSockets(listeners.filter((l) => l.server.listening));
    throw error;
  }
}

/** Stops listening, drops open connections (event streams included) and removes the socket files. */
export async function closeSockets(listeners: SocketListener[]): Promise<void> {
  for (const { server, path: socketPath } of listeners) {
    server.close();
    server.closeAllConnections();
    await rm(socketPath, { force: true });
  }
}
