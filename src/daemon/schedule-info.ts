import { Cron } from 'croner';
import type { Config } from '../config/load.ts';

export type ScheduleName = 'full' | 'incremental' | 'verify' | 'prune' | 'copy';

export interface ScheduleInfo {
  name: ScheduleName;
  /** The cron expression, "after_backup", or null when off. */
  expression: string | null;
  next: string | null;
  /** Time between the next two runs: what "overdue" is measured against. */
  period_ms: number | null;
}

/** Next run and period of every schedule, computed from the config (the daemon need not be up). */
export function scheduleInfo(config: Config, now: Date): ScheduleInfo[] {
  const entries: [ScheduleName, string | null][] = [
    ['full', config.schedule.full],
    ['incremental', config.schedule.incremental],
    ['verify', config.schedule.verify],
    ['prune', config.schedule.prune],
    ['copy', config.schedule.copy],
  ];
  return entries.map(([name, expression]) => {
    if (expression === null || expression === 'after_backup') return { name, expression, next: null, period_ms: null };
    const cron = new Cron(expression, { paused: true, timezone: config.timezone });
    const [first, second] = cron.nextRuns(2, now);
    return { name, expression, next: first?.toISOString() ?? null, period_ms: first && second ? second.getTime() - first.getTime() : null };
  });
}
