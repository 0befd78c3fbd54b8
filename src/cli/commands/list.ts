import type { Command } from 'commander';
import { backupList, type Verdict } from '../../catalog/views.ts';
import { isStackbackError } from '../../errors.ts';
import { openRemote, remoteBackupNames, remoteConfig } from '../../jobs/remote-repository.ts';
import type { Manifest } from '../../repository/manifest.ts';
import { type GlobalOptions, loadCliConfig, openCliCatalog } from '../context.ts';
import { formatBytes, formatSeconds, formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';
import { readView } from '../remote.ts';

function verifiedLabel(v: Verdict | null): string {
  return v ? `${v.level} ${v.ok ? 'ok' : 'FAILED'} ${v.at.slice(0, 10)}` : '-';
}

const shortTime = (iso: string) => iso.replace(/\.\d+Z$/, 'Z');

/** One backup on a remote, as its manifest there says. */
export interface RemoteListedBackup {
  name: string;
  kind: Manifest['kind'];
  status: Manifest['status'];
  chain: string;
  started_at: string;
  finished_at: string;
  bytes_read: number;
  bytes_stored: number;
  sources: { name: string; status: string }[];
  /** Also in this machine's catalog. */
  local: boolean;
}

/** Manifests read at once: each is one GET. */
const MANIFEST_READS = 8;

/**
 * `list --remote R`: the backups on remote R, from its manifests (a LIST, then one GET per
 * manifest), read here in the CLI — no daemon needed, nothing written to the bucket. The
 * catalog learns which backups the remote holds.
 */
async function listRemote(options: GlobalOptions, name: string): Promise<{ location: string; backups: RemoteListedBackup[] }> {
  const config = loadCliConfig(options);
  const remote = remoteConfig(config, name); // REMOTE_NOT_FOUND before anything is opened
  const location = `s3://${remote.bucket}/${remote.prefix}`;
  const catalog = openCliCatalog(config);
  try {
    let opened;
    try {
      opened = await openRemote(config, catalog, name);
    } catch (error) {
      // Nothing copied there yet: an empty list, not a failure.
      if (isStackbackError(error) && error.code === 'REPO_NOT_INITIALIZED') return { location, backups: [] };
      throw error;
    }
    try {
      const names = await remoteBackupNames(opened, new Date());
      const manifests: (Manifest | undefined)[] = new Array(names.length);
      let next = 0;
      const worker = async () => {
        while (next < names.length) {
          const index = next++;
          try {
            manifests[index] = await opened.repo.readManifest(names[index]!);
          } catch (error) {
            // Removed between the LIST and the GET (a prune of the remote): no longer there.
            if (!(isStackbackError(error) && error.code === 'BACKUP_NOT_FOUND')) throw error;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(MANIFEST_READS, names.length) }, worker));
      const backups = manifests
        .filter((m): m is Manifest => m !== undefined)
        .map((m) => ({
          name: m.name,
          kind: m.kind,
          status: m.status,
          chain: m.chain,
          started_at: m.started_at,
          finished_at: m.finished_at,
          bytes_read: m.stats.bytes_read,
          bytes_stored: m.stats.bytes_stored,
          sources: m.sources.map((s) => ({ name: s.name, status: s.status })),
          local: catalog.hasBackup(m.name),
        }))
        .sort((a, b) => a.started_at.localeCompare(b.started_at) || a.name.localeCompare(b.name));
      return { location: opened.storage.location, backups };
    } finally {
      opened.close();
    }
  } finally {
    catalog.close();
  }
}

export function registerList(program: Command): void {
  withCommonOptions(program.command('list').description('list the backups in the catalog, oldest first (--remote R: the backups on remote R, from its manifests)'))
    .option('--remote <name>', 'list the backups on this remote instead, read from its manifests (no daemon needed)')
    .action(async (options: GlobalOptions & { remote?: string }) => {
      if (options.remote !== undefined) {
        const { location, backups } = await listRemote(options, options.remote);
        if (options.json) printJson(backups);
        else if (backups.length === 0) printLine(`no backups on remote ${options.remote} (${location}) yet: \`stackback copy --remote ${options.remote}\` sends them`);
        else {
          const rows = backups.map((b) => [b.name, b.kind, b.status, b.chain, shortTime(b.started_at), formatBytes(b.bytes_stored), b.local ? 'yes' : 'no']);
          printLine(formatTable(['NAME', 'KIND', 'STATUS', 'CHAIN', 'STARTED', 'STORED', 'LOCAL'], rows));
        }
        return;
      }
      const config = loadCliConfig(options);
      const remotes = config.remotes.map((r) => r.name);
      const backups = await readView(options, '/api/backup/list', (catalog) => backupList(catalog, remotes));
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
        shortTime(b.finished_at),
        formatSeconds((Date.parse(b.finished_at) - Date.parse(b.started_at)) / 1000),
        formatBytes(b.bytes_read),
        formatBytes(b.bytes_stored),
        b.sources.map((s) => s.name + (s.status === 'ok' && !s.failed_artifacts?.length ? '' : '!')).join(','),
        verifiedLabel(b.verified),
        // Only with remotes configured: a column of dashes would say nothing.
        ...(remotes.length > 0 ? [b.remotes?.length ? b.remotes.join(',') : '-'] : []),
      ]);
      printLine(formatTable(['NAME', 'KIND', 'STATUS', 'CHAIN', 'FINISHED', 'TOOK', 'READ', 'STORED', 'SOURCES', 'VERIFIED', ...(remotes.length > 0 ? ['OFF-SITE'] : [])], rows));
    });
}
