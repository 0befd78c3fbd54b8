import { Cron } from 'croner';
import type { Config } from '../config/load.ts';
import type { ScheduleName } from './schedule-info.ts';

/** Croner timers for the configured schedules; re-applied on every config reload. */
export class Scheduler {
  private crons: Cron[] = [];
  private readonly onDue: (name: ScheduleName) => void;

  constructor(onDue: (name: ScheduleName) => void) {
    this.onDue = onDue;
  }

  apply(config: Config): void {
    this.stop();
    const schedules: [ScheduleName, string | null][] = [
      ['full', config.schedule.full],
      ['incremental', config.schedule.incremental],
      ['verify', config.schedule.verify],
      ['prune', config.schedule.prune === 'after_backup' ? null : config.schedule.prune],
      // Without remotes a copy has nowhere to go.
      ['copy', config.schedule.copy === 'after_backup' || config.remotes.length === 0 ? null : config.schedule.copy],
    ];
    for (const [name, expression] of schedules) {
      if (expression === null) continue;
      this.crons.push(new Cron(expression, { timezone: config.timezone, name }, () => this.onDue(name)));
    }
  }

  stop(): void {
    for (const cron of this.crons) cron.stop();
    this.crons = [];
  }
}
