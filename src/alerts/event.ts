/**
 * What stackback tells people and monitoring systems when something happens (issue 17): one
 * event document for every channel (webhook, email, command; healthchecks pings carry a log
 * tail instead). Channels format it; they never add secrets to it.
 */
export type AlertKind = 'failure' | 'partial' | 'stale' | 'recovered' | 'success' | 'start';

/** The job kinds that raise events and ping healthchecks. */
export type AlertJobKind = 'backup' | 'verify' | 'copy' | 'prune';

export interface AlertEvent {
  /** Document version, for receivers. */
  stackback_event: 1;
  kind: AlertKind;
  /** ISO time the event happened. */
  at: string;
  host: string;
  /** The job the event is about (absent for stale/recovered-from-stale events about a source or remote). */
  job?: { kind: AlertJobKind; id?: number; run?: number };
  backup?: string;
  /** Sources affected (the failed ones of a partial backup, the stale one). */
  sources?: string[];
  remote?: string;
  error?: { code: string; message: string; hint?: string };
  /** One line for people: what happened. */
  summary: string;
  /** Commands to look further (`stackback show NAME`, `stackback history`). */
  look_further: string[];
  /** True for a reminder of an incident already reported (notify.repeat). */
  reminder?: boolean;
  /** True for `stackback notify test`. */
  test?: boolean;
}

/** A way to reach a person or a system; send() rejects when the delivery failed (the caller retries). */
export interface AlertChannel {
  /** From the config (or `<kind>-<n>`): names it in status, logs and `notify test --channel`. */
  readonly name: string;
  readonly kind: 'webhook' | 'email' | 'command' | 'healthchecks';
  send(event: AlertEvent, signal: AbortSignal): Promise<void>;
}
