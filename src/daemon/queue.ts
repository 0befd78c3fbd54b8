import { EventEmitter } from 'node:events';
import { type ErrorDetails, errorDetails, StackbackError } from '../errors.ts';
import type { ProgressUpdate } from '../jobs/context.ts';

/**
 * The daemon's job queue: one job runs at a time (every job may write the repository or
 * hold it against writers), the rest wait in order. A job asked for while an identical one
 * (same kind and parameters) is still waiting is the same job: due schedules and impatient
 * operators do not pile up duplicates. Scheduled and manual jobs go through the same queue;
 * only so many manual jobs may wait (a client looping on requests must not fill memory or
 * push scheduled backups days back), while scheduled ones, which collapse, always get in.
 */
export type JobKind = 'backup' | 'restore' | 'verify' | 'delete' | 'prune' | 'copy';
export type JobState = 'queued' | 'running' | 'ok' | 'partial' | 'failed' | 'cancelled';

export interface JobEvent {
  job: number;
  time: string;
  state: JobState;
  progress?: ProgressUpdate;
  result?: unknown;
  error?: ErrorDetails;
}

export interface JobView {
  id: number;
  kind: JobKind;
  params: Record<string, unknown>;
  origin: 'schedule' | 'manual';
  state: JobState;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  progress: ProgressUpdate | null;
  result: unknown;
  error: JobEvent['error'] | null;
}

/** What a job function gets: its signal and a progress sink. It resolves with the job's result. */
export type JobRunner = (signal: AbortSignal, progress: (update: ProgressUpdate) => void) => Promise<{ state: 'ok' | 'partial' | 'failed'; result: unknown }>;

interface Job extends JobView {
  key: string;
  run: JobRunner;
  controller: AbortController;
  /** Set by fail(): the job ends failed with this error, whatever its runner makes of the abort. */
  failure?: { error: unknown };
  /** Stops waiting for a runner that has not ended after fail(). */
  abandon?: () => void;
}

const KEEP_FINISHED = 200;
/** Progress events go out at most this often per job (a backup reports every 64 KiB block). */
const PROGRESS_INTERVAL_MS = 250;

export class JobQueue {
  private readonly jobs = new Map<number, Job>();
  private readonly waiting: Job[] = [];
  private running: Job | undefined;
  private nextId = 1;
  private accepting = true;
  private readonly events = new EventEmitter();
  private idle: Promise<void> = Promise.resolve();
  /** How many jobs have finished: lets callers cache what only changes when a job ends. */
  finishedCount = 0;

  /** How many manual jobs may wait; asked at every submit, since a reload may change it. */
  private readonly maxWaitingManual: () => number;

  constructor(maxWaitingManual: () => number) {
    this.maxWaitingManual = maxWaitingManual;
    this.events.setMaxListeners(0);
  }

  /** Queues a job, or returns the identical one already waiting. Throws when the daemon is stopping or the queue is full. */
  submit(kind: JobKind, params: Record<string, unknown>, origin: JobView['origin'], run: JobRunner): { job: JobView; collapsed: boolean } {
    if (!this.accepting) throw new StackbackError('DAEMON_STOPPING', 'the daemon is stopping and takes no new jobs');
    const key = `${kind} ${JSON.stringify(params)}`;
    const same = this.waiting.find((j) => j.key === key);
    if (same) return { job: view(same), collapsed: true };
    const limit = this.maxWaitingManual();
    if (origin === 'manual' && this.waiting.filter((j) => j.origin === 'manual').length >= limit) {
      throw new StackbackError('QUEUE_FULL', `${limit} jobs asked for through the control channel are already waiting (control.max_queued_jobs)`, 'wait for them to run, or cancel some: POST /api/jobs/{id}/cancel');
    }
    const job: Job = {
      id: this.nextId++,
      kind,
      params,
      origin,
      state: 'queued',
      created_at: new Date().toISOString(),
      started_at: null,
      finished_at: null,
      progress: null,
      result: null,
      error: null,
      key,
      run,
      controller: new AbortController(),
    };
    this.jobs.set(job.id, job);
    this.waiting.push(job);
    this.emit(job, {});
    this.pump();
    return { job: view(job), collapsed: false };
  }

  get(id: number): JobView | undefined {
    const job = this.jobs.get(id);
    return job ? view(job) : undefined;
  }

  list(): JobView[] {
    return [...this.jobs.values()].map(view).reverse();
  }

  current(): JobView | undefined {
    return this.running ? view(this.running) : undefined;
  }

  queued(): JobView[] {
    return this.waiting.map(view);
  }

  /** Cancels a waiting job at once, or asks the running one to stop. False when it already finished. */
  cancel(id: number): boolean {
    const job = this.jobs.get(id);
    if (!job || job.finished_at !== null) return false;
    const index = this.waiting.indexOf(job);
    if (index >= 0) {
      this.waiting.splice(index, 1);
      this.finish(job, 'cancelled', null, { code: 'CANCELLED', message: 'cancelled before it started' });
    } else {
      job.controller.abort(new Error('cancelled by request'));
    }
    return true;
  }

  /**
   * Fails the running job from outside: the last-resort handler's answer to an exception
   * nobody caught while it ran. The job is asked to stop, as by a cancel, and ends `failed`
   * with that error. A runner still going after `abandonAfterMs` is no longer waited for and
   * the queue goes on (last-resort.ts says why that is the safer side).
   */
  fail(id: number, error: unknown, abandonAfterMs: number): boolean {
    const job = this.running;
    if (!job || job.id !== id) return false;
    job.failure ??= { error };
    job.controller.abort(error);
    setTimeout(() => job.abandon?.(), abandonAfterMs).unref();
    return true;
  }

  /** Every event of a job, as it happens; returns the unsubscribe function. */
  subscribe(id: number, listener: (event: JobEvent) => void): () => void {
    const name = `job:${id}`;
    this.events.on(name, listener);
    return () => this.events.off(name, listener);
  }

  /** Stops taking jobs, drops the waiting ones, stops the running one, and resolves once it ended. */
  async shutdown(reason: string): Promise<void> {
    this.accepting = false;
    for (const job of this.waiting.splice(0)) this.finish(job, 'cancelled', null, { code: 'CANCELLED', message: reason });
    this.running?.controller.abort(new Error(reason));
    await this.idle;
  }

  private pump(): void {
    if (this.running || this.waiting.length === 0) return;
    const job = this.waiting.shift()!;
    this.running = job;
    job.state = 'running';
    job.started_at = new Date().toISOString();
    this.emit(job, {});
    let lastProgress = 0;
    const progress = (update: ProgressUpdate) => {
      const samePhase = update.phase === job.progress?.phase;
      job.progress = update;
      const now = Date.now();
      if (samePhase && now - lastProgress < PROGRESS_INTERVAL_MS) return;
      lastProgress = now;
      this.emit(job, { progress: update });
    };
    type Outcome = { state: JobState; result: unknown; error: JobEvent['error'] | null };
    const ended = job.run(job.controller.signal, progress).then(
      ({ state, result }): Outcome => ({ state, result, error: null }),
      (error: unknown): Outcome => ({ state: job.controller.signal.aborted ? 'cancelled' : 'failed', result: null, error: errorDetails(error) }),
    );
    const abandoned = new Promise<Outcome>((resolve) => (job.abandon = () => resolve({ state: 'failed', result: null, error: null })));
    this.idle = Promise.race([ended, abandoned])
      .then(({ state, result, error }) => {
        if (job.failure) this.finish(job, 'failed', result, errorDetails(job.failure.error));
        else this.finish(job, state, result, error);
      })
      .finally(() => {
        this.running = undefined;
        this.pump();
      });
  }

  private finish(job: Job, state: JobState, result: unknown, error: JobEvent['error'] | null): void {
    this.finishedCount += 1;
    job.state = state;
    job.finished_at = new Date().toISOString();
    job.result = result;
    job.error = error;
    this.emit(job, { ...(result !== null ? { result } : {}), ...(error ? { error } : {}) });
    this.forgetOld();
  }

  private forgetOld(): void {
    const finished = [...this.jobs.values()].filter((j) => j.finished_at !== null);
    for (const job of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.jobs.delete(job.id);
  }

  private emit(job: Job, extra: Partial<JobEvent>): void {
    this.events.emit(`job:${job.id}`, { job: job.id, time: new Date().toISOString(), state: job.state, ...extra } satisfies JobEvent);
  }
}

function view(job: Job): JobView {
  const { key: _key, run: _run, controller: _controller, ...rest } = job;
  return { ...rest };
}
