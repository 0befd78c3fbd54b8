/** "20261126_021132" (UTC, to the second): the suffix of everything a restore sets aside or a drill creates. */
export function restoreStamp(now: Date): string {
  return now.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
}
