// The running job's live progress: its events stream, with rate and ETA computed here.
import { type JobEvent, type JobView, jobEvents } from '../api.ts';
import { fill, h, status } from '../dom.ts';
import { bytes, duration, relative } from '../format.ts';

type Progress = NonNullable<JobView['progress']>;

/** "backup (full)", "verify (quick)", "copy". */
export function jobLabel(job: Pick<JobView, 'kind' | 'params'>): string {
  const detail = job.params.type ?? job.params.level;
  return typeof detail === 'string' ? `${job.kind} (${detail})` : job.kind;
}

/** Bytes per second over the last few seconds of progress. */
class Rate {
  private samples: { at: number; bytes: number }[] = [];

  add(at: number, done: number | undefined): void {
    if (done === undefined) return;
    const last = this.samples.at(-1);
    if (last && done < last.bytes) this.samples = []; // a new count started
    this.samples.push({ at, bytes: done });
    while (this.samples.length > 2 && at - this.samples[0]!.at > 10_000) this.samples.shift();
  }

  perSecond(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at - first.at < 500) return undefined;
    return ((last.bytes - first.bytes) * 1000) / (last.at - first.at);
  }
}

function progressBox(job: JobView, rate: number | undefined): HTMLElement {
  const p: Partial<Progress> = job.progress ?? {};
  const done = p.bytes_done ?? 0;
  const estimated = p.bytes_estimated && p.bytes_estimated > 0 ? p.bytes_estimated : undefined;
  const percent = estimated ? Math.min(100, Math.floor((done / estimated) * 100)) : undefined;
  const eta = estimated && rate && rate > 0 && estimated > done ? (estimated - done) / rate : undefined;
  const amounts = [
    estimated ? `${bytes(done)} of about ${bytes(estimated)} (${percent} %)` : `${bytes(done)} so far`,
    rate !== undefined ? `${bytes(rate)}/s` : undefined,
    eta !== undefined ? `about ${duration(eta)} left` : undefined,
  ];
  return h(
    'div',
    { class: 'job', 'data-testid': 'job-progress' },
    h('h2', null, status('running', `Running ${jobLabel(job)}`), h('span', { class: 'muted' }, ` · job #${job.id} (${job.origin})`)),
    h('p', { class: 'phase' }, [p.phase ?? 'starting', p.source, p.artifact].filter(Boolean).join(' · ')),
    estimated ? h('progress', { max: estimated, value: Math.min(done, estimated), 'aria-label': 'Progress' }, `${percent} %`) : null,
    h('p', { class: 'bytes' }, amounts.filter(Boolean).join(' · ')),
    job.started_at ? h('p', { class: 'muted' }, `started ${relative(job.started_at)}`) : null,
  );
}

/**
 * Follows one job at a time: the one status says runs, or one just started here. The box
 * in `slot` is there only while that job runs; `ended` hears of the end of each followed job.
 */
export class JobWatch {
  private following: { job: JobView; controller: AbortController; rate: Rate } | undefined;
  private readonly slot: HTMLElement;
  private readonly ended: (job: JobView, last: JobEvent | undefined) => void;

  constructor(slot: HTMLElement, ended: (job: JobView, last: JobEvent | undefined) => void, signal: AbortSignal) {
    this.slot = slot;
    this.ended = ended;
    signal.addEventListener('abort', () => this.following?.controller.abort());
  }

  /** What status says runs now. */
  update(running: JobView | null): void {
    if (running && running.id !== this.following?.job.id) this.follow(running);
    else if (running && this.following && !this.following.job.progress) {
      this.following.job = running; // no event yet: status's progress is the best there is
      this.render();
    } else if (!running && !this.following) fill(this.slot);
  }

  follow(job: JobView): void {
    this.following?.controller.abort();
    const watch = { job, controller: new AbortController(), rate: new Rate() };
    this.following = watch;
    this.render();
    void this.stream(watch);
  }

  private async stream(watch: NonNullable<JobWatch['following']>): Promise<void> {
    let last: JobEvent | undefined;
    try {
      for await (const event of jobEvents(watch.job.id, watch.controller.signal)) {
        last = event;
        watch.job = { ...watch.job, state: event.state, ...(event.progress ? { progress: event.progress } : {}), ...(event.state === 'running' && !watch.job.started_at ? { started_at: event.time } : {}) };
        watch.rate.add(Date.parse(event.time), event.progress?.bytes_done);
        if (this.following === watch) this.render();
      }
    } catch {
      // the stream broke (daemon restarted, network): status polling takes over
    }
    if (watch.controller.signal.aborted || this.following !== watch) return;
    this.following = undefined;
    fill(this.slot);
    this.ended(watch.job, last);
  }

  private render(): void {
    const watch = this.following;
    fill(this.slot, watch?.job.state === 'running' ? progressBox(watch.job, watch.rate.perSecond()) : null);
  }
}
