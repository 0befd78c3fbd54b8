import type { Command } from 'commander';
import { resolveConfigPath } from '../../config/load.ts';
import type { GlobalOptions } from '../context.ts';
import { setCommandExitCode } from '../exit.ts';

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('run the daemon in the foreground (the systemd ExecStart): schedules, job queue, control socket')
    .option('-c, --config <file>', 'config file (default: $STACKBACK_CONFIG, else /etc/stackback/stackback.yaml)')
    .action(async (options: GlobalOptions) => {
      // Loaded here, not with the CLI: the daemon's modules (metrics, notifications) would slow every other command's start.
      const { runDaemon } = await import('../../daemon/daemon.ts');
      setCommandExitCode(await runDaemon(resolveConfigPath(options.config)));
    });
}
