import type { Catalog } from '../catalog/catalog.ts';
import type { JobView } from '../daemon/queue.ts';
import type { Staleness } from '../daemon/status.ts';
import type { BackupSummary } from '../jobs/backup.ts';
import type { CopyReport } from '../jobs/copy.ts';
import type { PruneResult } from '../jobs/prune.ts';
import type { VerifyReport } from '../jobs/verify.ts';
import { sourceSucceeded } from '../repository/manifest.ts';
import type { AlertEvent, AlertJobKind, AlertKind } from './event.ts';

/**
 * Turns what the daemon knows (a finished job's JobView, a stale source or remote) into the
 * event document every channel formats. Only facts the job reported go in: error messages and
 * hints as the jobs word them (they never carry secrets), names of backups, sources, remotes.
 */

export const ALERT_JOB_KINDS: readonly AlertJobKind[] = ['backup', 'verify', 'copy', 'prune'];

export function isAlertJobKind(kind: string): kind is AlertJobKind {
  return (ALERT_JOB_KINDS as readonly string[]).includes(kind);
}

/** What a finished job says about itself, for an event. */
export interface JobFacts {
  /** "backup (full)", "verify (drill)", "copy to r1", "prune". */
  label: string;
  backup?: string;
  sources?: string[];
  remote?: string;
  error?: { code: string; message: string; hint?: string };
  /** The catalog run of this job, when it is found. */
  run?: number;
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** One line, at most `max` characters. */
export function oneLine(text: string, max = 500): string {
  const flat = text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** "backup (full)", "verify (drill)", "copy to r1": a job as people name it. */
export function jobLabel(job: Pick<JobView, 'kind' | 'params'> | { kind: string; params: Record<string, unknown> }): string {
  const p = job.params;
  if (job.kind === 'backup') return `backup${typeof p.type === 'string' ? ` (${p.type})` : ''}${Array.isArray(p.sources) ? ` of ${p.sources.join(', ')}` : ''}`;
  if (job.kind === 'verify') return `verify${typeof p.level === 'string' ? ` (${p.level})` : ''}${typeof p.remote === 'string' ? ` of remote ${p.remote}` : ''}`;
  if (job.kind === 'copy') return `copy${Array.isArray(p.remotes) ? ` to ${p.remotes.join(', ')}` : ''}`;
  return job.kind;
}

/** The catalog run a job recorded: the first run of its kind that started once the job did. */
function findRun(catalog: Catalog, job: JobView): { id: number; backup: string | null; error: string | null } | undefined {
  if (!job.started_at) return undefined;
  try {
    const runs = catalog.listRuns(20).filter((r) => r.kind === job.kind && r.started_at >= job.started_at!);
    const run = runs[runs.length - 1];
    if (!run) return undefined;
    const backup = run.backup ?? (typeof run.detail?.backup === 'string' ? run.detail.backup : null);
    return { id: run.id, backup, error: run.error };
  } catch {
    return undefined;
  }
}

/** The facts of a finished job: its backup, the sources or remotes affected, the error with its hint. */
export function jobFacts(job: JobView, catalog: Catalog): JobFacts {
  const facts: JobFacts = { label: jobLabel(job) };
  const run = findRun(catalog, job);
  if (run) {
    facts.run = run.id;
    if (run.backup) facts.backup = run.backup;
  }
  if (job.error) facts.error = { code: job.error.code, message: job.error.message, ...(job.error.hint ? { hint: job.error.hint } : {}) };
  const result = job.result;
  if (job.kind === 'backup' && isRecord(result)) {
    const summary = result as unknown as BackupSummary;
    if (typeof summary.backup === 'string') facts.backup = summary.backup;
    if (Array.isArray(summary.sources)) {
      const failed = summary.sources.filter((s) => !sourceSucceeded(s));
      if (failed.length > 0) {
        facts.sources = failed.map((s) => s.name);
        facts.error ??= {
          code: 'BACKUP_PARTIAL',
          message: failed
            .map((s) => `source ${s.name}: ${s.error ?? [...(s.failed_artifacts ?? []).map((a) => `${a.id}: ${a.error}`), ...(s.incomplete_artifacts ?? []).map((a) => `${a.id}: ${a.errors.join('; ')}`)].join('; ')}`)
            .map((m) => oneLine(m, 400))
            .join('; '),
          hint: facts.backup ? `the other sources are in backup ${facts.backup}; \`stackback show ${facts.backup}\` names what is missing` : 'the other sources were backed up',
        };
      }
    }
  } else if (job.kind === 'verify' && isRecord(result)) {
    const report = result as unknown as VerifyReport;
    const bad = Array.isArray(report.backups) ? report.backups.filter((b) => !b.ok) : [];
    if (bad.length > 0) {
      if (bad.length === 1) facts.backup = bad[0]!.backup;
      const damaged = Array.isArray(report.damaged_chunks) ? report.damaged_chunks.length : 0;
      const details = bad.slice(0, 3).map((b) => {
        const artifact = b.artifacts.find((a) => !a.ok);
        return `backup ${b.backup}${artifact ? `: ${artifact.artifact}: ${oneLine(artifact.detail, 300)}` : ''}`;
      });
      facts.error ??= {
        code: 'VERIFY_FAILED',
        message: `${bad.length} backup(s) failed verification${damaged ? ` (${damaged} damaged chunk(s))` : ''}: ${details.join('; ')}${bad.length > 3 ? '; …' : ''}`,
        hint: `\`stackback verify ${bad[0]!.backup} --deep\` says what is damaged; the next backup re-stores damaged chunks`,
      };
    }
  } else if (job.kind === 'copy' && Array.isArray(result)) {
    const failed = (result as CopyReport[]).filter((r) => isRecord(r) && r.ok === false);
    if (failed.length > 0) {
      facts.remote = failed.map((r) => r.remote).join(', ');
      const first = failed[0]!;
      facts.error ??= {
        code: first.error_code ?? 'REMOTE_FAILED',
        message: failed.map((r) => `remote ${r.remote}: ${oneLine(r.error ?? 'failed', 400)}`).join('; '),
        ...(first.hint ? { hint: first.hint } : {}),
      };
    }
  } else if (job.kind === 'prune' && isRecord(result)) {
    const remotes = Array.isArray((result as unknown as PruneResult).remotes) ? (result as unknown as PruneResult).remotes : [];
    const failed = remotes.filter((r) => !r.ok);
    if (failed.length > 0) {
      facts.remote = failed.map((r) => r.remote).join(', ');
      const first = failed[0]!;
      facts.error ??= {
        code: first.error_code ?? 'REMOTE_FAILED',
        message: `the local prune is done; ${failed.map((r) => `remote ${r.remote}: ${oneLine(r.error ?? 'failed', 400)}`).join('; ')}`,
        ...(first.hint ? { hint: first.hint } : {}),
      };
    }
  }
  if (!facts.error && run?.error && (job.state === 'failed' || job.state === 'partial')) facts.error = { code: job.state === 'partial' ? 'PARTIAL' : 'FAILED', message: oneLine(run.error) };
  if (!facts.error && (job.state === 'failed' || job.state === 'partial')) facts.error = { code: job.state.toUpperCase(), message: `the ${job.kind} job ended ${job.state}` };
  return facts;
}

/** Where a person looks further. */
export function lookFurther(backup: string | undefined, extra: string[] = []): string[] {
  return [...(backup ? [`stackback show ${backup}`] : []), ...extra, 'stackback history'];
}

export function jobEvent(kind: AlertKind, job: JobView, jobKind: AlertJobKind, facts: JobFacts, host: string, at: Date, extra: { summary: string; reminder?: boolean }): AlertEvent {
  return {
    stackback_event: 1,
    kind,
    at: at.toISOString(),
    host,
    job: { kind: jobKind, id: job.id, ...(facts.run !== undefined ? { run: facts.run } : {}) },
    ...(facts.backup ? { backup: facts.backup } : {}),
    ...(facts.sources?.length ? { sources: facts.sources } : {}),
    ...(facts.remote ? { remote: facts.remote } : {}),
    ...(facts.error && kind !== 'recovered' && kind !== 'success' && kind !== 'start' ? { error: facts.error } : {}),
    summary: extra.summary,
    look_further: lookFurther(facts.backup, kind === 'failure' || kind === 'partial' ? ['stackback status'] : []),
    ...(extra.reminder ? { reminder: true } : {}),
  };
}

export function staleEvent(kind: 'stale' | 'recovered', stale: Pick<Staleness, 'subject' | 'name' | 'backup'>, summary: string, host: string, at: Date, reminder = false): AlertEvent {
  const backup = stale.backup ?? undefined;
  return {
    stackback_event: 1,
    kind,
    at: at.toISOString(),
    host,
    ...(backup ? { backup } : {}),
    ...(stale.subject === 'source' ? { sources: [stale.name] } : { remote: stale.name }),
    ...(kind === 'stale' ? { error: { code: stale.subject === 'source' ? 'STALE' : 'REMOTE_BEHIND', message: summary, hint: stale.subject === 'source' ? 'check that scheduled backups run and succeed: `stackback status`, `stackback history`' : `run \`stackback copy --remote ${stale.name}\`` } } : {}),
    summary,
    look_further: stale.subject === 'source' ? [...lookFurther(backup, ['stackback status'])] : ['stackback status', `stackback copy --remote ${stale.name}`, 'stackback history'],
    ...(reminder ? { reminder: true } : {}),
  };
}

/** A few lines for people (ntfy, slack, the healthchecks body's head). */
export function eventText(event: AlertEvent): string {
  const lines = [event.summary];
  if (event.reminder) lines.push('(reminder: still going on)');
  if (event.backup) lines.push(`backup: ${event.backup}`);
  if (event.sources?.length) lines.push(`sources: ${event.sources.join(', ')}`);
  if (event.remote) lines.push(`remote: ${event.remote}`);
  if (event.error) {
    lines.push(`error: ${event.error.message} [${event.error.code}]`);
    if (event.error.hint) lines.push(`hint: ${event.error.hint}`);
  }
  lines.push(`host: ${event.host}, at ${event.at}`);
  if (event.look_further.length) lines.push(`look further: ${event.look_further.join(' · ')}`);
  return lines.join('\n');
}

/** "stackback on db1: backup failed" — a title. */
export function eventTitle(event: AlertEvent): string {
  const what = event.test ? 'test' : event.kind === 'failure' ? 'FAILED' : event.kind === 'partial' ? 'PARTIAL' : event.kind === 'stale' ? 'STALE' : event.kind === 'recovered' ? 'recovered' : event.kind === 'success' ? 'ok' : 'started';
  const subject = event.job ? event.job.kind : event.remote ? `remote ${event.remote}` : event.sources?.length ? `source ${event.sources.join(', ')}` : 'notifications';
  return `stackback on ${event.host}: ${subject} ${what}${event.reminder ? ' (reminder)' : ''}`;
}
