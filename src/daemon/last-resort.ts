import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { JobQueue } from './queue.ts';

/** How long a job failed by the last resort may take to stop before the queue goes on without it. */
const ABANDON_AFTER_MS = 60_000;

/**
 * The daemon's last resort against its own bugs: an exception nobody caught or a rejection
 * nobody handled must not end the process. Under systemd that exit means a restart, a
 * catch-up full and, with a fault that comes back, a loop of full dumps; meanwhile no
 * scheduled backup runs.
 *
 * Why going on is safe:
 * - Only one job runs at a time, so a fault while one runs is attributed to it. It is failed
 *   and stopped as a cancel stops it: its child processes are killed and its own `finally`
 *   blocks release the writer lock. A backup that stops without its manifest never happened
 *   (its chunks are collected later); a restore reports the failure and what was moved aside.
 *   A job that ran beside an unknown fault is never reported ok.
 * - A job that does not stop within ABANDON_AFTER_MS is left behind and the queue goes on. If
 *   it still holds the writer lock, the next writing job fails REPO_LOCKED, which status shows:
 *   visible, rather than a queue that silently waits forever.
 * - The catalog (SQLite, each write its own transaction), the repository (write-once objects,
 *   manifest last), the daemon lock, the scheduler and the control server keep no state that
 *   a thrown callback leaves half-changed across an await.
 * - Outside any job (a control request, a timer) nothing is failed: the fault is logged at
 *   the highest level, with its stack, for an operator and a bug report.
 */
export function installLastResort(queue: JobQueue, log: Logger): void {
  const handler = (what: string) => (error: unknown) => {
    const err = error instanceof Error ? error : new Error(String(error));
    const job = queue.current();
    if (job && queue.fail(job.id, err, ABANDON_AFTER_MS)) {
      log.error({ job: job.id, kind: job.kind, err }, `unexpected ${what} while job ${job.id} (${job.kind}) ran: ${errorMessage(err)}; the job is failed, the daemon goes on`);
    } else {
      log.fatal({ err }, `unexpected ${what} outside any job: ${errorMessage(err)}; the daemon goes on, but this is a bug: please report it`);
    }
  };
  process.on('uncaughtException', handler('exception'));
  process.on('unhandledRejection', handler('unhandled promise rejection'));
}
