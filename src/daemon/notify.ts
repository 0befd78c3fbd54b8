import { execa } from 'execa';
import type { Logger } from '../log.ts';

/**
 * Tells systemd (Type=notify) that the daemon is ready and what it is doing, through the
 * `systemd-notify` binary: Node cannot send on a Unix datagram socket itself, and the
 * notification comes from that child process, hence NotifyAccess=all in the unit.
 * Without NOTIFY_SOCKET (not under systemd) this does nothing.
 */
export class SystemdNotifier {
  private readonly enabled = process.env.NOTIFY_SOCKET !== undefined && process.env.NOTIFY_SOCKET !== '';
  private lastStatus = '';
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  async ready(status: string): Promise<void> {
    await this.send(['--ready', `--pid=${process.pid}`, `--status=${status}`]);
    this.lastStatus = status;
  }

  async status(status: string): Promise<void> {
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    await this.send([`--pid=${process.pid}`, `--status=${status}`]);
  }

  async stopping(): Promise<void> {
    await this.send([`--pid=${process.pid}`, 'STOPPING=1', '--status=stopping']);
  }

  private async send(args: string[]): Promise<void> {
    if (!this.enabled) return;
    const result = await execa('systemd-notify', args, { reject: false, timeout: 5000 });
    if (result.failed) this.log.warn({ err: String(result.stderr || result.shortMessage) }, 'systemd-notify failed');
  }
}
