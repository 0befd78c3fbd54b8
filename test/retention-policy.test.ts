// The retention policy on synthetic timelines, checked against expectations computed here
// independently (plain grouping by calendar strings in the time zone, no shared code).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RetentionConfig } from '../src/config/load.ts';
import { decideRetention, type RetentionCandidate } from '../src/jobs/retention.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const NONE: RetentionConfig = {
  keepLast: 0, keepHourly: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepYearly: 0,
  keepWithinMs: 0, keepFull: 0, keepFailedDays: 7, preRestoreDays: 7, gcGraceMs: 0,
};
const TZ = 'Europe/Berlin';
const notSafety = (name: string) => name.startsWith('prerestore-');

/** 400 days of hourly backups ending 2026-11-26 00:00Z: a full every Sunday 03:00 local, some partial. */
function timeline(): RetentionCandidate[] {
  const end = Date.UTC(2026, 10, 26, 0, 0, 0);
  const local = new Intl.DateTimeFormat('en-US', { timeZone: TZ, weekday: 'short', hour: 'numeric', hourCycle: 'h23' });
  const backups: RetentionCandidate[] = [];
  for (let t = end - 400 * DAY; t <= end; t += HOUR) {
    const parts = Object.fromEntries(local.formatToParts(new Date(t)).map((p) => [p.type, p.value]));
    const full = parts.weekday === 'Sun' && parts.hour === '3';
    const index = backups.length;
    backups.push({ name: `b${String(index).padStart(5, '0')}`, kind: full ? 'full' : 'incremental', status: index % 97 === 13 ? 'partial' : 'ok', time: new Date(t) });
  }
  return backups;
}

/** "2026-03-29 01" style local strings: an independent way to bucket. */
function localParts(time: Date): { date: string; hour: string; monday: string } {
  const text = time.toLocaleString('sv-SE', { timeZone: TZ, hourCycle: 'h23' }); // "2026-03-29 01:30:00"
  const [date, clock] = text.split(' ');
  const [y, m, d] = date!.split('-').map(Number);
  const weekday = (new Date(Date.UTC(y!, m! - 1, d!)).getUTCDay() + 6) % 7;
  const monday = new Date(Date.UTC(y!, m! - 1, d! - weekday)).toISOString().slice(0, 10);
  return { date: date!, hour: clock!.slice(0, 2), monday };
}

/** Expected survivors of one bucket rule: newest ok backup per bucket, newest N buckets. */
function expectBuckets(backups: RetentionCandidate[], key: (b: RetentionCandidate) => string, n: number): Set<string> {
  const newestFirst = backups.filter((b) => b.status === 'ok').sort((a, b) => b.time.getTime() - a.time.getTime());
  const seen = new Map<string, string>();
  for (const b of newestFirst) if (!seen.has(key(b))) seen.set(key(b), b.name);
  return new Set([...seen.values()].slice(0, n));
}

function kept(backups: RetentionCandidate[], policy: Partial<RetentionConfig>, now = new Date(Date.UTC(2026, 10, 26, 1))): Set<string> {
  return new Set(decideRetention(backups, { ...NONE, ...policy }, TZ, now, notSafety).filter((d) => d.keep).map((d) => d.name));
}

function newestOk(backups: RetentionCandidate[]): string {
  return backups.filter((b) => b.status === 'ok').sort((a, b) => b.time.getTime() - a.time.getTime())[0]!.name;
}

const without = (set: Set<string>, ...names: string[]) => new Set([...set].filter((n) => !names.includes(n)));

describe('retention policy on 400 days of hourly backups (Europe/Berlin, two DST changes)', () => {
  const backups = timeline();
  const newest = newestOk(backups);
  const partials = (n: number) => new Set(backups.filter((b) => b.status === 'partial' && b.time.getTime() > Date.UTC(2026, 10, 26, 1) - n * DAY).map((b) => b.name));

  const rules: [string, Partial<RetentionConfig>, (b: RetentionCandidate) => string, number][] = [
    ['hourly', { keepHourly: 48 }, (b) => { const p = localParts(b.time); return `${p.date} ${p.hour}`; }, 48],
    ['daily', { keepDaily: 30 }, (b) => localParts(b.time).date, 30],
    ['weekly', { keepWeekly: 20 }, (b) => localParts(b.time).monday, 20],
    ['monthly', { keepMonthly: 12 }, (b) => localParts(b.time).date.slice(0, 7), 12],
    ['yearly', { keepYearly: 5 }, (b) => localParts(b.time).date.slice(0, 4), 5],
  ];
  for (const [rule, policy, key, n] of rules) {
    test(`keep_${rule} keeps the newest backup of each of the last ${n} ${rule} buckets`, () => {
      const expected = new Set([...expectBuckets(backups, key, n), newest, ...partials(7)]);
      assert.deepEqual(kept(backups, policy), expected);
    });
  }

  test('the autumn DST change: the two 02:00 local hours are one hourly bucket', () => {
    const around = backups.filter((b) => b.time >= new Date('2025-10-25T22:00:00Z') && b.time <= new Date('2025-10-26T03:00:00Z'));
    assert.equal(around.length, 6);
    const decisions = decideRetention(around, { ...NONE, keepHourly: 10 }, TZ, new Date('2025-10-26T04:00:00Z'), notSafety);
    const hours = decisions.filter((d) => d.keep).map((d) => d.reasons.find((r) => r.startsWith('hourly'))!);
    assert.equal(new Set(hours).size, hours.length, 'one backup per bucket');
    assert.ok(hours.includes('hourly 2025-10-26 02h'));
    assert.equal(hours.length, around.filter((b) => b.status === 'ok').length - 1, 'the repeated 02h hour counts once');
  });

  test('keep_last, keep_full and keep_within', () => {
    const ok = backups.filter((b) => b.status === 'ok').sort((a, b) => b.time.getTime() - a.time.getTime());
    assert.deepEqual(kept(backups, { keepLast: 5 }), new Set([...ok.slice(0, 5).map((b) => b.name), ...partials(7)]));
    const fulls = ok.filter((b) => b.kind === 'full').slice(0, 3).map((b) => b.name);
    assert.deepEqual(kept(backups, { keepFull: 3 }), new Set([...fulls, newest, ...partials(7)]));
    const within = ok.filter((b) => ok[0]!.time.getTime() - b.time.getTime() < 36 * HOUR).map((b) => b.name);
    assert.deepEqual(kept(backups, { keepWithinMs: 36 * HOUR }), new Set([...within, ...partials(7)]));
  });

  test('a backup is kept if any rule keeps it: the union of the rules', () => {
    const union = new Set([...kept(backups, { keepDaily: 7 }), ...kept(backups, { keepWeekly: 4 }), ...kept(backups, { keepLast: 3 })]);
    assert.deepEqual(kept(backups, { keepDaily: 7, keepWeekly: 4, keepLast: 3 }), union);
  });

  test('partial backups never count toward the rules and go after keep_failed_days', () => {
    const decisions = decideRetention(backups, { ...NONE, keepLast: 1000, keepFailedDays: 30 }, TZ, new Date(Date.UTC(2026, 10, 26, 1)), notSafety);
    for (const d of decisions) {
      const b = backups.find((x) => x.name === d.name)!;
      if (b.status === 'partial') {
        assert.equal(d.keep, Date.UTC(2026, 10, 26, 1) - b.time.getTime() < 30 * DAY, d.name);
        assert.match(d.reasons[0]!, /partial backup/);
      }
    }
    const keptByLast = decisions.filter((d) => d.reasons.some((r) => r.startsWith('last ')));
    assert.equal(keptByLast.length, 1000);
    assert.ok(keptByLast.every((d) => backups.find((b) => b.name === d.name)!.status === 'ok'));
  });

  test('the newest successful backup is never removed, whatever the policy says', () => {
    assert.deepEqual(without(kept(backups, {}), ...partials(7)), new Set([newest]));
    const onlyPartialNewer: RetentionCandidate[] = [
      { name: 'old-ok', kind: 'full', status: 'ok', time: new Date('2020-01-01T00:00:00Z') },
      { name: 'new-partial', kind: 'incremental', status: 'partial', time: new Date('2020-06-01T00:00:00Z') },
    ];
    const decisions = decideRetention(onlyPartialNewer, { ...NONE, keepFailedDays: 0 }, TZ, new Date('2026-01-01T00:00:00Z'), notSafety);
    assert.deepEqual(decisions.map((d) => [d.name, d.keep]), [['new-partial', false], ['old-ok', true]]);
    assert.deepEqual(decisions[1]!.reasons, ['newest successful backup']);
  });

  test('restore safety copies are kept for pre_restore_days and count toward nothing', () => {
    const withSafety: RetentionCandidate[] = [
      ...backups.slice(-3),
      { name: 'prerestore-20261120T000000Z', kind: 'full', status: 'ok', time: new Date('2026-11-20T00:00:00Z') },
      { name: 'prerestore-20261125T000000Z', kind: 'full', status: 'ok', time: new Date('2026-11-25T00:00:00Z') },
    ];
    const decisions = new Map(decideRetention(withSafety, { ...NONE, keepFull: 5, preRestoreDays: 3 }, TZ, new Date('2026-11-26T01:00:00Z'), notSafety).map((d) => [d.name, d]));
    assert.equal(decisions.get('prerestore-20261120T000000Z')!.keep, false);
    assert.equal(decisions.get('prerestore-20261125T000000Z')!.keep, true);
    assert.match(decisions.get('prerestore-20261125T000000Z')!.reasons[0]!, /restore safety copy/);
  });
});
