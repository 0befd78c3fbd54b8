import type { Command } from 'commander';
import { backupList, type Verdict } from '../../catalog/views.ts';
import type { GlobalOptions } from '../context.ts';
import { formatBytes, formatSeconds, formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';
import { readView } from '../remote.ts';

function verifiedLabel(v: Verdict | null): string {
  return v ? `${v.level} ${v.ok ? 'ok' : 'FAILED'} ${v.at.slice(0, 10)}` : '-';
}

export function registerList(program: Command): void {
  withCommonOptions(program.command('list').description('list the backups in the catalog, oldest first')).action(async (options: GlobalOptions) => {
    const backups = await readView(options, '/api/backup/list', backupList);
    if (options.json) {
      printJson(backups);
      return;
    }
    if (backups.length === 0) {
      printLine('no backups yet');
      return;
    }
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
      verifiedLabel(b.verified),
    ]);
    printLine(formatTable(['NAME', 'KIND', 'STATUS', 'CHAIN', 'FINISHED', 'TOOK', 'READ', 'STORED', 'SOURCES', 'VERIFIED'], rows));
  });
}
