import type http from 'node:http';
import type net from 'node:net';
import { errorMessage, StackbackError } from '../errors.ts';
import type { Logger } from '../log.ts';

export type ListenAddress = { host: string; port: number };

/** "host:port", with an IPv6 host in brackets. */
export function addressText(address: ListenAddress): string {
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

/**
 * A TCP listener that follows a config key (metrics.listen, web.listen) across reloads:
 * `follow` starts it, moves it to a new address, or stops it (null). A new address is bound
 * before the old listener closes, so a bad one (port taken) leaves the old one serving and
 * throws CONFIG_INVALID naming `key`.
 */
export class TcpListener {
  private server: http.Server | undefined;
  private bound: string | undefined;

  private readonly key: string;
  private readonly log: Logger;

  constructor(key: string, log: Logger) {
    this.key = key;
    this.log = log;
  }

  async follow(wanted: ListenAddress | null, createServer: () => http.Server): Promise<boolean> {
    const text = wanted ? addressText(wanted) : undefined;
    if (text === this.bound) return false;
    if (!wanted) {
      await this.close();
      return true;
    }
    const next = createServer();
    await new Promise<void>((resolve, reject) => {
      next.once('error', reject);
      next.listen({ host: wanted.host, port: wanted.port }, () => {
        next.off('error', reject);
        resolve();
      });
    }).catch((error: unknown) => {
      throw new StackbackError('CONFIG_INVALID', `cannot listen on ${this.key} ${text}: ${errorMessage(error)}`, 'choose a free port, or stop what listens there');
    });
    next.on('error', (error) => this.log.error({ err: errorMessage(error) }, `${this.key} listener: ${errorMessage(error)}`));
    await this.close();
    this.server = next;
    this.bound = text;
    return true;
  }

  address(): net.AddressInfo | null {
    return (this.server?.address() as net.AddressInfo | null) ?? null;
  }

  async close(): Promise<void> {
    const old = this.server;
    this.server = undefined;
    this.bound = undefined;
    if (!old) return;
    old.closeAllConnections();
    await new Promise<void>((resolve) => old.close(() => resolve()));
  }
}
