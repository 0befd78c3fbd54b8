import type { Command } from 'commander';
import { daemonRequest } from '../../daemon/client.ts';
import { buildStatus, humanDuration, type StatusDocument } from '../../daemon/status.ts';
import { type GlobalOptions, loadCliConfig, openCliCatalog } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { formatBytes, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';
import { findDaemon } from '../remote.ts';

function print(status: StatusDocument, timeZone: string): void {
  const when = (iso: string | null) => (iso ? `${new Date(iso).toLocaleString('sv-SE', { timeZone, hour12: false }).slice(0, 16)} ${timeZone}` : '-');
  printLine(status.daemon ? `daemon      running, pid ${status.daemon.pid}, up ${humanDuration(status.daemon.uptime_seconds * 1000)}, stackback ${status.daemon.version}` : 'daemon      NOT RUNNING');
  if (status.running) {
    const p = status.running.progress;
    const progress = p ? `: ${p.phase}${p.artifact ? ` ${p.artifact}` : ''}${p.bytes_done !== undefined ? `, ${formatBytes(p.bytes_done)}${p.bytes_estimated ? ` of ~${formatBytes(p.bytes_estimated)}` : ''}` : ''}` : '';
    printLine(`running     job ${status.running.id} ${status.running.kind}${status.running.params.type ? ` (${String(status.running.params.type)})` : ''}${progress}`);
  } else if (status.daemon) printLine('running     nothing (idle)');
  for (const job of status.queued) printLine(`queued      job ${job.id} ${job.kind} ${JSON.stringify(job.params)}`);
  for (const s of status.schedules) printLine(`schedule    ${s.name.padEnd(12)} ${s.expression === null ? 'off' : `"${s.expression}"`}${s.next ? `, next ${when(s.next)}` : ''}`);
  for (const [kind, run] of Object.entries(status.last)) {
    printLine(`last ${kind.padEnd(12)}${run ? `${run.status.toUpperCase()}${run.level ? ` (${run.level})` : ''} ${when(run.started_at)}${run.backup ? ` ${run.backup}` : ''}${run.bytes_stored ? `, ${formatBytes(run.bytes_stored)} stored` : ''}` : 'never'}`);
  }
  printLine(`repository  ${status.repository.path}: ${formatBytes(status.repository.bytes)} in ${status.repository.backups} backup(s)`);
  for (const r of status.remotes ?? []) {
    const held = `${r.backups} backup(s) there, ${r.missing === 0 ? 'every local backup off-site' : `${r.missing} local backup(s) not yet`}`;
    const failed = r.last_error ? `; last attempt FAILED ${when(r.last_attempt_at)}: ${r.last_error}` : '';
    printLine(`remote      ${r.name} ${r.location}: ${held}; last copy ${r.last_copy_at ? when(r.last_copy_at) : 'never'}${failed}`);
  }
  for (const warning of status.warnings) printLine(`WARNING     ${warning}`);
  printLine(status.healthy ? 'healthy' : 'NOT healthy');
}

export function registerStatus(program: Command): void {
  withCommonOptions(program.command('status').description('daemon, running job, next runs, last results and warnings; exit 0 healthy, 1 warnings or no daemon')).action(
    async (options: GlobalOptions) => {
      const config = loadCliConfig(options);
      const socket = await findDaemon(config, 'read');
      let status: StatusDocument;
      if (socket) status = (await daemonRequest(socket, 'GET', '/api/backup/status')).body as StatusDocument;
      else {
        const catalog = openCliCatalog(config);
        try {
          status = buildStatus(config, catalog, null, new Date());
        } finally {
          catalog.close();
        }
      }
      if (options.json) printJson(status);
      else print(status, config.timezone);
      if (!status.healthy) setCommandExitCode(EXIT_FAILED);
    },
  );
}
