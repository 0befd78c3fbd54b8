import { Command, CommanderError } from 'commander';
import { STACKBACK_VERSION } from '../version.ts';
import { registerBackup } from './commands/backup.ts';
import { registerCatalog } from './commands/catalog.ts';
import { registerConfig } from './commands/config.ts';
import { registerCopy } from './commands/copy.ts';
import { registerDaemon } from './commands/daemon.ts';
import { registerDelete } from './commands/delete.ts';
import { registerHistory } from './commands/history.ts';
import { registerInit } from './commands/init.ts';
import { registerKey } from './commands/key.ts';
import { registerList } from './commands/list.ts';
import { registerNotify } from './commands/notify.ts';
import { registerPrune } from './commands/prune.ts';
import { registerRestore } from './commands/restore.ts';
import { registerShow } from './commands/show.ts';
import { registerStatus } from './commands/status.ts';
import { registerVerify } from './commands/verify.ts';
import { registerWeb } from './commands/web.ts';
import { EXIT_OK, EXIT_USAGE, errorJson, exitCodeFor, takeCommandExitCode } from './exit.ts';
import { printJson } from './output.ts';

/** Adds --detach to a command that can run as a daemon job. */
export function withDetach(command: Command): Command {
  return command.option('--detach', 'when a daemon runs: return as soon as the job is queued');
}

/** Adds the options every command takes. */
export function withCommonOptions(command: Command): Command {
  return command
    .option('-c, --config <file>', 'config file (default: $STACKBACK_CONFIG, else /etc/stackback/stackback.yaml)')
    .option('--json', 'print the result as JSON on stdout');
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('stackback')
    .description('Backups of PostgreSQL databases into a verified, deduplicated repository')
    .version(STACKBACK_VERSION)
    .exitOverride()
    .showHelpAfterError();
  for (const register of [registerDaemon, registerInit, registerKey, registerStatus, registerBackup, registerList, registerShow, registerVerify, registerRestore, registerDelete, registerPrune, registerCopy, registerHistory, registerCatalog, registerConfig, registerNotify, registerWeb]) {
    register(program);
  }
  try {
    await program.parseAsync(argv);
    return takeCommandExitCode();
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const wantsJson = argv.includes('--json');
    if (wantsJson) printJson(errorJson(error));
    else {
      const { error: e } = errorJson(error);
      process.stderr.write(`stackback: ${e.message}\n${e.hint ? `  hint: ${e.hint}\n` : ''}`);
    }
    return exitCodeFor(error);
  }
}
