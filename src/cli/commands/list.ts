import type { Command } from 'commander';
import { openCliContext, type GlobalOptions } from '../context.ts';
import { formatBytes, formatSeconds, formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

function verifiedLabel(v: { level: string; at: string; ok: boolean } | undefined): string {
  return v ? `${v.level} ${v.ok ? 'ok' : 'FAILED'} ${v.at.slice(0, 10)}` : '-';
}

export function registerList(program: Command): void {
  withCommonOptions(program.command('list').description('list the backups in the catalog, oldest first')).action(async (options: GlobalOptions) => {
    const ctx = openCliContext(options);
    try {
      const backups = ctx.catalog.listBackups();
      if (options.json) {
        const verified = ctx.catalog.lastVerifications();
        printJson(backups.map((b) => ({ ...b, verified: verified.get(b.name) ? { level: verified.get(b.name)!.level, at: verified.get(b.name)!.at, ok: verified.get(b.name)!.ok } : null })));
        return;
      }
      if (backups.length === 0) {
        printLine('no backups yet');
        return;
      }
      const verified = ctx.catalog.lastVerifications();
      const rows = backups.map((b) => [
        b.name,
        b.kind,
        b.status,
        b.chain,
        b.finished_at.replace(/\.\d+Z$/, 'Z'),
        formatSeconds((Date.parse(b.finished_at) - Date.parse(b.started_at)) / 1000),
        formatBytes(b.bytes_read),
        formatBytes(b.bytes_stored),
        b.sources.map((s) => s.name + (s.status === 'ok' && !s.failed_artifacts?.length ? '' : '!')).join(','),
        verifiedLabel(verified.get(b.name)),
      ]);
      printLine(formatTable(['NAME', 'KIND', 'STATUS', 'CHAIN', 'FINISHED', 'TOOK', 'READ', 'STORED', 'SOURCES', 'VERIFIED'], rows));
    } finally {
      ctx.close();
    }
  });
}
