import type { Command } from 'commander';
import { backupDetail } from '../../catalog/views.ts';
import { validateBackupName } from '../../repository/manifest.ts';
import { type GlobalOptions, loadCliConfig } from '../context.ts';
import { formatBytes, formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';
import { readView } from '../remote.ts';

export function registerShow(program: Command): void {
  withCommonOptions(program.command('show').description('show one backup: its artifacts, sizes and what the sources reported').argument('<name>', 'backup name')).action(
    async (name: string, options: GlobalOptions) => {
      validateBackupName(name);
      const remotes = loadCliConfig(options).remotes.map((r) => r.name);
      const backup = await readView(options, `/api/backup/${encodeURIComponent(name)}`, (catalog) => backupDetail(catalog, name, remotes));
      const verification = backup.verified;
      if (options.json) {
        printJson(backup);
        return;
      }
      printLine(`backup   ${backup.name} (${backup.kind}, ${backup.status})`);
      printLine(`chain    ${backup.chain}`);
      printLine(`time     ${backup.started_at} → ${backup.finished_at}`);
      if (verification) {
        printLine(`verified ${verification.level} ${verification.ok ? 'OK' : 'FAILED'} at ${verification.at}`);
        for (const a of (verification.detail as { artifacts: { artifact: string; ok: boolean; detail: string; seconds?: number }[] }).artifacts) {
          printLine(`         ${a.ok ? 'ok' : 'FAILED'} ${a.artifact}${a.seconds !== undefined ? ` (${a.seconds.toFixed(1)} s)` : ''}: ${a.detail}`);
        }
      } else printLine('verified never');
      if (remotes.length > 0) {
        const there = backup.remotes ?? [];
        const missing = remotes.filter((r) => !there.some((o) => o.name === r));
        const parts = [...there.map((o) => `${o.name} (since ${o.seen_at.replace(/\.\d+Z$/, 'Z')})`), ...(missing.length > 0 ? [`not yet on ${missing.join(', ')}`] : [])];
        printLine(`off-site ${parts.join('; ')}`);
      }
      printLine(`size     ${formatBytes(backup.bytes_read)} read, ${formatBytes(backup.bytes_stored)} newly stored, ${backup.chunks_new}/${backup.chunks} chunks new`);
      for (const source of backup.sources) {
        if (source.status === 'failed') printLine(`FAILED   source ${source.name}: ${source.error}`);
        for (const f of source.failed_artifacts ?? []) printLine(`FAILED   ${f.id}: ${f.error}`);
        for (const i of source.incomplete_artifacts ?? []) printLine(`PARTIAL  ${i.id}: could not read ${i.errors.join('; ')}`);
        for (const w of source.warnings ?? []) printLine(`warning  ${source.name}: ${w}`);
      }
      printLine();
      printLine(
        formatTable(
          ['ARTIFACT', 'KIND', 'SIZE', 'CHUNKS', 'SHA256', 'DETAIL'],
          backup.artifacts.map((a) => {
            const meta = a.meta as { server_version?: string; tables?: { exact: boolean }[] };
            const detail = meta.server_version ? `server ${meta.server_version}, ${meta.tables?.length ?? 0} tables` : '';
            return [a.id, a.kind, formatBytes(a.size), String(a.chunk_count), `${a.sha256.slice(0, 16)}…`, detail];
          }),
        ),
      );
    },
  );
}
