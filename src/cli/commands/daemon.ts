import type { Command } from 'commander';
import { resolveConfigPath } from '../../config/load.ts';
import { runDaemon } from '../../daemon/daemon.ts';
import type { GlobalOptions } from '../context.ts';
import { setCommandExitCode } from '../exit.ts';

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('run the daemon in the foreground (the systemd ExecStart): schedules, job queue, control socket')
    .option('-c, --config <file>', 'config file (default: $STACKBACK_CONFIG, else /etc/stackback/stackback.yaml)')
    .action(async (options: GlobalOptions) => {
      setCommandExitCode(await runDaemon(resolveConfigPath(options.config)));
    });
}
