import os from 'node:os';
import { type Catalog, newestBackupOf } from '../catalog/catalog.ts';
import type { Config, EmailConfig, NotifyConfig } from '../config/load.ts';
import type { JobView } from '../daemon/queue.ts';
import { type Staleness, staleness } from '../daemon/status.ts';
import { errorMessage, StackbackError } from '../errors.ts';
import { type Logger, type RecentLines, recentLogLines } from '../log.ts';
import { createCommandChannel } from './command.ts';
import { Deliveries } from './delivery.ts';
import { type JobFacts, isAlertJobKind, jobLabel, jobEvent, jobFacts, oneLine, staleEvent } from './document.ts';
import type { AlertChannel, AlertEvent, AlertJobKind, AlertKind } from './event.ts';
import { createHealthcheckChannel, type HealthcheckChannel, tailBytes } from './healthchecks.ts';
import { logTail } from './log-tail.ts';
import { createWebhookChannel } from './webhook.ts';

export type { AlertChannel, AlertEvent } from './event.ts';

export interface Notifier {
  /** A job of a notifying kind started (healthchecks /start pings; a `start` event when notify.on has it). */
  jobStarted(job: { id: number; kind: string; params: Record<string, unknown> }): void;
  /** It ended: ok/partial/failed(/cancelled) with its result or error (the daemon's JobView). Events per the incident rules; healthchecks success or /fail pings with the run's log tail. */
  jobEnded(job: JobView): void;
  /** Looks for stale sources and remotes behind (the rules `status` uses) and sends stale/recovered events. Cheap: called every few seconds. */
  checkStale(now: Date): void;
  /** Each channel's delivery state for `status`: failing since when, the last error (no secrets). */
  channels(): { name: string; kind: string; failing_since: string | null; last_error: string | null }[];
  /** Waits for deliveries in flight up to `ms` (daemon shutdown). */
  drain(ms: number): Promise<void>;
  /** Resolves once nothing is being delivered or waits (retries included), or after `ms`; delivery goes on (tests). */
  idle(ms: number): Promise<boolean>;
}

export interface NotifierOptions {
  config: () => Config;
  catalog: Catalog;
  log: Logger;
  /** The host named in events (default: os.hostname()). */
  host?: string;
  /** Called with a channel's name each time a delivery to it is given up (stackback_notification_failures_total). */
  onDeliveryFailed?: (channel: string) => void;
  /** Where the runs' log lines are kept (default: every logger's, log.ts recentLogLines). */
  recentLines?: RecentLines;
  /** The first retry's delay (default 1 s; tests shorten it). */
  retryBaseMs?: number;
}

/** The channels of a config: healthchecks (pinged per run) and the event channels (webhooks, email, command). */
export interface ChannelSet {
  healthchecks: HealthcheckChannel[];
  events: AlertChannel[];
}

export function createChannels(notify: NotifyConfig, log: Logger): ChannelSet {
  const events: AlertChannel[] = notify.webhooks.map((w, i) => createWebhookChannel(w, log, i));
  if (notify.email) events.push(lazyEmailChannel(notify.email, log));
  if (notify.command) events.push(createCommandChannel(notify.command, log));
  return { healthchecks: notify.healthchecks.map((h, i) => createHealthcheckChannel(h, log, i)), events };
}

/**
 * The email channel (src/alerts/email.ts, createEmailChannel), loaded at its first message:
 * nodemailer stays out of every CLI command's start-up (the bundle puts it in its own chunk).
 */
function lazyEmailChannel(config: EmailConfig, log: Logger): AlertChannel {
  let channel: Promise<AlertChannel> | undefined;
  return {
    name: config.name || 'email',
    kind: 'email',
    async send(event, signal) {
      channel ??= import('./email.ts').then((m) => m.createEmailChannel(config, log));
      return (await channel).send(event, signal);
    },
  };
}

/** An open incident (a job kind failing, a source stale, a remote behind), as kept in the catalog's facts table. */
interface Incident {
  open: boolean;
  /** The event kind that opened it: failure, partial or stale. */
  kind?: AlertKind;
  /** When it began. */
  since?: string;
  /** When it was last announced (the first message or the latest reminder). */
  notified_at?: string;
  summary?: string;
}

const HEALTHCHECK_START_BODY = (job: { id: number; kind: string }, host: string) => `stackback: ${job.kind} job ${job.id} started on ${host}\n`;

/**
 * The daemon's notifications (issue 17). Incidents: a job kind (backup, verify/drill, copy,
 * prune) that fails or ends partial opens one and sends failure/partial once; its next
 * successful run closes it with recovered; runs failing in between send nothing but a reminder
 * every notify.repeat. Stale sources and remotes behind are incidents of their own. Incident
 * state lives in the catalog's facts table (alert.job.<kind>, alert.stale.source.<name>,
 * alert.stale.remote.<name>), so a restart neither repeats nor forgets one. Only the kinds in
 * notify.on are sent (the state is kept whatever it says). Healthchecks get /start, success and
 * /fail pings around every run of their job kinds. Nothing here waits for a delivery.
 */
export function createNotifier(options: NotifierOptions): Notifier {
  const { catalog, log } = options;
  const host = options.host ?? os.hostname();
  const recent = options.recentLines ?? recentLogLines;
  const deliveries = new Deliveries({
    log,
    retryForMs: () => options.config().notify.retryForMs,
    ...(options.onDeliveryFailed ? { onFailed: options.onDeliveryFailed } : {}),
    ...(options.retryBaseMs !== undefined ? { retryBaseMs: options.retryBaseMs } : {}),
  });
  let built: { config: Config; channels: ChannelSet } | undefined;
  const channels = (): ChannelSet => {
    const config = options.config();
    if (built?.config !== config) built = { config, channels: createChannels(config.notify, log) };
    return built.channels;
  };
  /** Where each running job's log lines begin. */
  const marks = new Map<number, number>();
  const incidents = new Map<string, Incident>();

  const incident = (key: string): Incident => {
    let found = incidents.get(key);
    if (!found) {
      found = { open: false };
      try {
        const raw = catalog.fact(key);
        if (raw) found = JSON.parse(raw) as Incident;
      } catch (error) {
        log.warn({ key, err: errorMessage(error) }, `notifications: cannot read incident state ${key}: starting afresh`);
      }
      incidents.set(key, found);
    }
    return found;
  };
  const saveIncident = (key: string, value: Incident) => {
    incidents.set(key, value);
    try {
      catalog.setFact(key, JSON.stringify(value));
    } catch (error) {
      log.warn({ key, err: errorMessage(error) }, `notifications: cannot save incident state ${key} (it is kept in memory)`);
    }
  };

  /** When this daemon first watched something (kept in the facts table, set on the first call). */
  const seenAt = new Map<string, string>();
  const firstSeen = (key: string, now: Date): string => {
    let seen = seenAt.get(key) ?? catalog.fact(key);
    if (seen === undefined) {
      seen = now.toISOString();
      catalog.setFact(key, seen);
    }
    seenAt.set(key, seen);
    return seen;
  };

  const wanted = (kind: AlertKind) => options.config().notify.on.includes(kind);
  const repeatDue = (found: Incident, now: Date) => {
    const repeat = options.config().notify.repeatMs;
    return repeat > 0 && found.notified_at !== undefined && now.getTime() - Date.parse(found.notified_at) >= repeat;
  };

  /** Sends `event` to every event channel (webhooks, email, command), in the background. */
  const broadcast = (event: AlertEvent) => {
    const { events } = channels();
    log.info({ event: event.kind, summary: event.summary, channels: events.map((c) => c.name), reminder: event.reminder === true }, `notification: ${event.kind}${event.reminder ? ' (reminder)' : ''}: ${event.summary}`);
    for (const channel of events) deliveries.enqueue(channel.name, channel.kind, `${event.kind}${event.reminder ? ' reminder' : ''} event`, (signal) => channel.send(event, signal));
  };

  const pingChecks = (kind: AlertJobKind, ping: 'start' | 'success' | 'fail', body: string) => {
    for (const check of channels().healthchecks) {
      if (check.jobs.includes(kind)) deliveries.enqueue(check.name, check.kind, `${ping} ping`, (signal) => check.ping(ping, body, signal));
    }
  };

  const summaryOf = (job: JobView, facts: JobFacts): string => {
    if (job.state === 'ok') return `${facts.label} succeeded${facts.backup ? `: backup ${facts.backup}` : ''}`;
    if (job.state === 'partial') {
      if (job.kind === 'backup') return `${facts.label} is partial${facts.backup ? ` (backup ${facts.backup})` : ''}${facts.sources?.length ? `: source${facts.sources.length > 1 ? 's' : ''} ${facts.sources.join(', ')} failed` : ''}`;
      return `${facts.label} ended partial${facts.error ? `: ${oneLine(facts.error.message, 300)}` : ''}`;
    }
    return `${facts.label} failed${facts.error ? `: ${oneLine(facts.error.message, 300)}` : ''}`;
  };

  return {
    jobStarted(job) {
      if (!isAlertJobKind(job.kind)) return;
      try {
        marks.set(job.id, recent.mark());
        pingChecks(job.kind, 'start', HEALTHCHECK_START_BODY(job, host));
        if (wanted('start')) {
          const label = jobLabel(job);
          broadcast({ stackback_event: 1, kind: 'start', at: new Date().toISOString(), host, job: { kind: job.kind, id: job.id }, summary: `${label} started`, look_further: ['stackback status'] });
        }
      } catch (error) {
        log.error({ err: errorMessage(error) }, `notifications: job ${job.id} start not handled: ${errorMessage(error)}`);
      }
    },

    jobEnded(job) {
      if (!isAlertJobKind(job.kind)) return;
      const kind = job.kind;
      try {
        const mark = marks.get(job.id);
        marks.delete(job.id);
        // Cancelled while it waited: it never ran, nothing was announced.
        if (job.started_at === null) return;
        const now = new Date();
        const facts = jobFacts(job, catalog);
        const summary = job.state === 'cancelled' ? `${facts.label} was cancelled${job.error ? `: ${oneLine(job.error.message, 300)}` : ''}` : summaryOf(job, facts);

        // Healthchecks: per run, their protocol. A cancelled run did not succeed: /fail.
        const checks = channels().healthchecks.filter((c) => c.jobs.includes(kind));
        if (checks.length > 0) {
          const head = `${summary}\n${facts.error && job.state !== 'ok' ? `error: ${facts.error.message} [${facts.error.code}]\n${facts.error.hint ? `hint: ${facts.error.hint}\n` : ''}` : ''}`;
          const tail = mark === undefined ? '' : logTail(recent.since(mark));
          pingChecks(kind, job.state === 'ok' ? 'success' : 'fail', tailBytes(`${head}\n${tail}`));
        }

        if (job.state === 'cancelled') return;
        const key = `alert.job.${kind}`;
        const found = incident(key);
        if (job.state === 'ok') {
          if (found.open) {
            saveIncident(key, { open: false });
            if (wanted('recovered')) {
              broadcast(jobEvent('recovered', job, kind, facts, host, now, { summary: `${summary} — recovered (${found.kind ?? 'failing'} since ${found.since ?? 'unknown'})` }));
            }
          } else if (wanted('success')) {
            broadcast(jobEvent('success', job, kind, facts, host, now, { summary }));
          }
          return;
        }
        const eventKind: AlertKind = job.state === 'partial' ? 'partial' : 'failure';
        if (!found.open) {
          saveIncident(key, { open: true, kind: eventKind, since: now.toISOString(), notified_at: now.toISOString(), summary });
          if (wanted(eventKind)) broadcast(jobEvent(eventKind, job, kind, facts, host, now, { summary }));
          return;
        }
        if (repeatDue(found, now)) {
          saveIncident(key, { ...found, notified_at: now.toISOString(), summary });
          if (wanted(eventKind)) broadcast(jobEvent(eventKind, job, kind, facts, host, now, { summary: `${summary} (still failing since ${found.since})`, reminder: true }));
          return;
        }
        log.debug({ key, since: found.since }, `notifications: ${kind} still failing since ${found.since}: already reported`);
      } catch (error) {
        log.error({ err: errorMessage(error) }, `notifications: the end of job ${job.id} was not handled: ${errorMessage(error)}`);
      }
    },

    checkStale(now) {
      let found: Staleness[];
      const config = options.config();
      try {
        found = staleness(config, catalog, now);
      } catch (error) {
        log.warn({ err: errorMessage(error) }, `notifications: cannot check for stale backups: ${errorMessage(error)}`);
        return;
      }
      const subjects: { subject: 'source' | 'remote'; name: string }[] = [
        ...config.sources.map((s) => ({ subject: 'source' as const, name: s.name })),
        ...config.remotes.map((r) => ({ subject: 'remote' as const, name: r.name })),
      ];
      let backups: ReturnType<Catalog['listBackups']> | undefined;
      for (const { subject, name } of subjects) {
        const key = `alert.stale.${subject}.${name}`;
        let stale = found.find((f) => f.subject === subject && f.name === name);
        // A source that never had a backup is stale only once the schedule had time to make one
        // since this daemon first watched it (a fresh install must not start with an alert).
        if (stale?.reason === 'never') {
          const seen = firstSeen(`alert.seen.source.${name}`, now);
          if (stale.expected_ms === null || now.getTime() - Date.parse(seen) <= 2 * stale.expected_ms) stale = undefined;
        }
        const state = incident(key);
        try {
          if (stale && !state.open) {
            saveIncident(key, { open: true, kind: 'stale', since: now.toISOString(), notified_at: now.toISOString(), summary: stale.message });
            if (wanted('stale')) broadcast(staleEvent('stale', stale, stale.message, host, now));
          } else if (stale && state.open && repeatDue(state, now)) {
            saveIncident(key, { ...state, notified_at: now.toISOString() });
            if (wanted('stale')) broadcast(staleEvent('stale', stale, `${stale.message} (stale since ${state.since})`, host, now, true));
          } else if (!stale && state.open) {
            saveIncident(key, { open: false });
            backups ??= catalog.listBackups();
            const newest = subject === 'source' ? newestBackupOf(backups, name)?.name ?? null : null;
            const summary =
              subject === 'source'
                ? `source ${name} is backed up again${newest ? `: backup ${newest}` : ''} (stale since ${state.since})`
                : `remote ${name} has the newest backup again (behind since ${state.since})`;
            if (wanted('recovered')) broadcast(staleEvent('recovered', { subject, name, backup: newest }, summary, host, now));
          }
        } catch (error) {
          log.error({ err: errorMessage(error) }, `notifications: staleness of ${subject} ${name} not handled: ${errorMessage(error)}`);
        }
      }
    },

    channels() {
      const { healthchecks, events } = channels();
      return [...healthchecks, ...events].map((c) => {
        const health = deliveries.health(c.name);
        return { name: c.name, kind: c.kind, failing_since: health?.failing_since ?? null, last_error: health?.last_error ?? null };
      });
    },

    drain: (ms) => deliveries.drain(ms),
    idle: (ms) => deliveries.idle(ms),
  };
}

/** `stackback notify test`'s result for one channel. */
export interface TestResult {
  channel: string;
  kind: string;
  ok: boolean;
  error?: string;
  ms: number;
}

/** One test event through one channel may take this long. */
const TEST_TIMEOUT_MS = 30_000;

/**
 * `stackback notify test`: one test event through every channel (or the one named), at once,
 * each tried once (a test reports what happens; no retries). Rejects only for usage: no
 * channel configured, or no channel of that name (StackbackError USAGE, naming the channels).
 */
export async function sendTestEvent(config: Config, log: Logger, channel?: string): Promise<TestResult[]> {
  const { healthchecks, events } = createChannels(config.notify, log);
  const all: AlertChannel[] = [...healthchecks, ...events];
  if (all.length === 0) throw new StackbackError('USAGE', `no notification channel is configured in ${config.file}`, 'add notify.healthchecks, notify.webhooks, notify.email or notify.command');
  const chosen = channel === undefined ? all : all.filter((c) => c.name === channel);
  if (chosen.length === 0) throw new StackbackError('USAGE', `no notification channel is named ${JSON.stringify(channel)}: the channels are ${all.map((c) => c.name).join(', ')}`, 'pick one of those with --channel, or leave --channel out to test them all');
  const host = os.hostname();
  const event: AlertEvent = {
    stackback_event: 1,
    kind: 'success',
    at: new Date().toISOString(),
    host,
    summary: `test message from \`stackback notify test\` on ${host}: this channel works`,
    look_further: ['stackback status'],
    test: true,
  };
  return Promise.all(
    chosen.map(async (c): Promise<TestResult> => {
      const started = performance.now();
      try {
        await c.send(event, AbortSignal.timeout(TEST_TIMEOUT_MS));
        return { channel: c.name, kind: c.kind, ok: true, ms: Math.round(performance.now() - started) };
      } catch (error) {
        const message = errorMessage(error);
        log.debug({ channel: c.name, err: message }, `notify test: ${c.kind} ${c.name} failed`);
        return { channel: c.name, kind: c.kind, ok: false, error: message, ms: Math.round(performance.now() - started) };
      }
    }),
  );
}

