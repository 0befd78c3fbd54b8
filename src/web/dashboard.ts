import { isLoopbackHost } from '../config/formats.ts';
import type { Config } from '../config/load.ts';
import { errorDetails } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ForegroundActivity } from '../daemon/foreground.ts';
import type { ControlHandler } from '../daemon/server.ts';
import { addressText, TcpListener } from '../daemon/tcp-listener.ts';
import { createWebServer } from './server.ts';
import { LoginLimiter, Sessions } from './sessions.ts';
import { WebToken } from './token.ts';

/**
 * The web dashboard in the daemon: follows web.* across reloads (token re-read, listener
 * started, moved or stopped). A dashboard that cannot be served never stops the backups: the
 * reason is logged and shown as a status warning instead.
 */
export class WebDashboard {
  private readonly listener: TcpListener;
  private readonly sessions = new Sessions();
  private readonly limiter = new LoginLimiter();
  private token: WebToken | undefined;
  private failure: string | undefined;
  private readonly options: { handle: ControlHandler; log: Logger; foreground: ForegroundActivity; config: () => Config; version: string };

  constructor(options: WebDashboard['options']) {
    this.options = options;
    this.listener = new TcpListener('web.listen', options.log);
  }

  /** Applies the current config's web section; never throws. */
  async apply(): Promise<void> {
    const { log, config } = this.options;
    const web = config().web;
    try {
      if (web.listen) {
        const { token, created } = WebToken.load(web.tokenFile);
        if (created) log.info({ file: web.tokenFile }, `web.token_file ${web.tokenFile} created with a random token (mode 0600): sign in with its content`);
        // A rotated token signs everybody out.
        if (this.token && !this.token.digest.equals(token.digest)) this.sessions.clear();
        this.token = token;
      }
      const moved = await this.listener.follow(web.listen, () =>
        createWebServer({
          handle: this.options.handle,
          log,
          foreground: this.options.foreground,
          settings: () => ({ allowActions: config().web.allowActions, sessionTtlMs: config().web.sessionTtlMs, timezone: config().timezone, version: this.options.version }),
          token: () => this.token!,
          sessions: this.sessions,
          limiter: this.limiter,
        }),
      );
      this.failure = undefined;
      if (moved && web.listen) {
        const where = addressText(web.listen);
        log.info({ listen: where }, `web dashboard on http://${where}/`);
        if (!isLoopbackHost(web.listen.host)) log.warn(`web.listen ${where} is reachable from other machines: put it behind a TLS proxy (the token and session cookie travel with every request)`);
      }
    } catch (error) {
      const { message, hint } = errorDetails(error);
      this.failure = `web dashboard not served: ${message}${hint ? `; ${hint}` : ''}`;
      log.error(this.failure);
    }
  }

  /** Why the configured dashboard is not served (none or one), for status's warnings. */
  problems(): string[] {
    return this.failure === undefined ? [] : [this.failure];
  }

  address() {
    return this.listener.address();
  }

  close(): Promise<void> {
    return this.listener.close();
  }
}
