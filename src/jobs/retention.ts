import type { RetentionConfig } from '../config/load.ts';

/**
 * The retention policy as a pure function: which backups to keep and why. Semantics follow
 * restic's `forget`: each rule walks the successful backups newest first; a bucket rule
 * (hourly … yearly) keeps the newest backup of each bucket it meets until it has kept N;
 * a backup is kept if any rule keeps it. Buckets are computed in the configured time zone.
 * A backup counts only for the sources it holds: the rules run once for each set of sources
 * that were backed up together, so a manual `backup --source X` never pushes the backups of
 * the other sources out of keep_last.
 */
export interface RetentionCandidate {
  name: string;
  kind: 'full' | 'incremental';
  status: 'ok' | 'partial';
  time: Date;
  /** The sources the backup holds a complete copy of; absent: the backup counts as one with every other such backup. */
  sources?: string[];
}

export interface RetentionDecision {
  name: string;
  keep: boolean;
  reasons: string[];
}

const DAY_MS = 86_400_000;

interface LocalTime {
  year: number;
  month: number;
  day: number;
  hour: number;
}

function localTime(formatter: Intl.DateTimeFormat, time: Date): LocalTime {
  const parts = Object.fromEntries(formatter.formatToParts(time).map((p) => [p.type, p.value]));
  return { year: Number(parts.year), month: Number(parts.month), day: Number(parts.day), hour: Number(parts.hour) % 24 };
}

/** ISO 8601 week of a calendar date: "2026-W48" (weeks start on Monday; the Thursday decides the year). */
function isoWeek({ year, month, day }: LocalTime): string {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((date.getTime() - yearStart) / DAY_MS + 1) / 7);
  return `${date.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

const pad = (n: number) => String(n).padStart(2, '0');

const BUCKETS = {
  hourly: (t: LocalTime) => `${t.year}-${pad(t.month)}-${pad(t.day)} ${pad(t.hour)}h`,
  daily: (t: LocalTime) => `${t.year}-${pad(t.month)}-${pad(t.day)}`,
  weekly: isoWeek,
  monthly: (t: LocalTime) => `${t.year}-${pad(t.month)}`,
  yearly: (t: LocalTime) => String(t.year),
} as const;

function formatDays(ms: number): string {
  return ms % DAY_MS === 0 ? `${ms / DAY_MS}d` : `${Math.round(ms / 3_600_000)}h`;
}

export function decideRetention(backups: RetentionCandidate[], policy: RetentionConfig, timeZone: string, now: Date, safetyCopy: (name: string) => boolean): RetentionDecision[] {
  const formatter = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23' });
  const reasons = new Map<string, string[]>(backups.map((b) => [b.name, []]));
  const newestFirst = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime() || b.name.localeCompare(a.name));
  const successful = newestFirst.filter((b) => b.status === 'ok' && !safetyCopy(b.name));
  // formatToParts is slow: compute each backup's local time once, not once per rule.
  const local = new Map(successful.map((b) => [b.name, localTime(formatter, b.time)]));

  if (successful[0]) reasons.get(successful[0].name)!.push('newest successful backup');
  const groups = sourceGroups(successful);
  for (const [label, members] of groups) {
    const suffix = groups.size > 1 ? ` (${label})` : '';
    // Never the last complete copy of any source either.
    if (groups.size > 1) reasons.get(members[0]!.name)!.push(`newest successful backup${suffix}`);
    applyRules(members, policy, local, (name, reason) => reasons.get(name)!.push(`${reason}${suffix}`));
  }

  return newestFirst.map((b) => {
    const ageDays = (now.getTime() - b.time.getTime()) / DAY_MS;
    if (safetyCopy(b.name)) {
      const young = ageDays < policy.preRestoreDays;
      return { name: b.name, keep: young, reasons: [`restore safety copy, ${young ? 'younger' : 'older'} than pre_restore_days (${policy.preRestoreDays})`] };
    }
    if (b.status !== 'ok') {
      const young = ageDays < policy.keepFailedDays;
      return { name: b.name, keep: young, reasons: [`partial backup, ${young ? 'younger' : 'older'} than keep_failed_days (${policy.keepFailedDays})`] };
    }
    const why = reasons.get(b.name)!;
    return { name: b.name, keep: why.length > 0, reasons: why.length > 0 ? why : ['no rule keeps it'] };
  });
}

/**
 * The successful backups (newest first) each set of sources counts on: sources always backed
 * up together form one group, labelled by their names. Without source lists, one group.
 */
function sourceGroups(successful: RetentionCandidate[]): Map<string, RetentionCandidate[]> {
  const bySource = new Map<string, RetentionCandidate[]>();
  for (const b of successful) {
    for (const source of b.sources ?? ['']) {
      const members = bySource.get(source);
      if (members) members.push(b);
      else bySource.set(source, [b]);
    }
  }
  const groups = new Map<string, { sources: string[]; members: RetentionCandidate[] }>();
  for (const [source, members] of bySource) {
    const key = members.map((b) => b.name).join('\n');
    const group = groups.get(key);
    if (group) group.sources.push(source);
    else groups.set(key, { sources: [source], members });
  }
  return new Map([...groups.values()].map((g) => [g.sources.join(', '), g.members]));
}

/** The policy's rules over one group's successful backups (newest first). */
function applyRules(successful: RetentionCandidate[], policy: RetentionConfig, local: Map<string, LocalTime>, keep: (name: string, reason: string) => void): void {
  successful.slice(0, policy.keepLast).forEach((b, i) => keep(b.name, `last ${i + 1}/${policy.keepLast}`));
  successful.filter((b) => b.kind === 'full').slice(0, policy.keepFull).forEach((b, i) => keep(b.name, `full ${i + 1}/${policy.keepFull}`));
  const counts = { hourly: policy.keepHourly, daily: policy.keepDaily, weekly: policy.keepWeekly, monthly: policy.keepMonthly, yearly: policy.keepYearly };
  for (const [rule, limit] of Object.entries(counts) as [keyof typeof BUCKETS, number][]) {
    let kept = 0;
    let lastBucket: string | undefined;
    for (const b of successful) {
      if (kept >= limit) break;
      const bucket = BUCKETS[rule](local.get(b.name)!);
      if (bucket === lastBucket) continue;
      lastBucket = bucket;
      kept += 1;
      keep(b.name, `${rule} ${bucket}`);
    }
  }
  if (successful[0] && policy.keepWithinMs > 0) {
    const newest = successful[0].time.getTime();
    for (const b of successful) if (newest - b.time.getTime() < policy.keepWithinMs) keep(b.name, `within ${formatDays(policy.keepWithinMs)} of the newest`);
  }
}
