import type { Command } from 'commander';
import { createLogger } from '../../log.ts';
import { loadCliConfig, type GlobalOptions } from '../context.ts';
import { EXIT_FAILED, setCommandExitCode } from '../exit.ts';
import { formatTable, printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

/**
 * `stackback notify test [--channel NAME]`: one test event through every configured channel
 * (or one), sent from this process with the config it reads (no daemon needed), one line per
 * channel. Exit 1 when a channel failed, 2 for an unknown channel or none configured.
 */
export function registerNotify(program: Command): void {
  const notify = program.command('notify').description('notifications: check that alerts reach people');
  withCommonOptions(notify.command('test').description('send a test event through every notification channel (or one) and report each result'))
    .option('--channel <name>', 'only this channel (its name in the config)')
    .action(async (options: GlobalOptions & { channel?: string }) => {
      const config = loadCliConfig(options);
      // Loaded here, not with the CLI: every other command starts without the notification modules.
      const { sendTestEvent } = await import('../../alerts/notifier.ts');
      const results = await sendTestEvent(config, createLogger(config.log.level), options.channel);
      if (results.some((r) => !r.ok)) setCommandExitCode(EXIT_FAILED);
      if (options.json) {
        printJson(results);
        return;
      }
      printLine(formatTable(['RESULT', 'CHANNEL', 'KIND', 'TIME', 'ERROR'], results.map((r) => [r.ok ? 'ok' : 'FAILED', r.channel, r.kind, `${r.ms} ms`, r.error ?? ''])));
    });
}
