import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { StackbackError } from '../../errors.ts';
import { nameIds } from '../../system-accounts.ts';
import { writeTokenFile } from '../../web/token.ts';
import { loadCliConfig, type GlobalOptions } from '../context.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

/** The group the systemd unit runs the daemon in: a token file made by root is given to it (0640). */
const DAEMON_GROUP = 'stackback';

/**
 * `stackback web token [--rotate]`: makes web.token_file with a random token when it is
 * missing (run as root where the daemon cannot write /etc/stackback), or replaces it. The
 * token is never printed: read the file. A running daemon takes a new token at its next
 * reload and signs everybody out.
 */
export function registerWeb(program: Command): void {
  const web = program.command('web').description('the web dashboard (web.* in the config)');
  withCommonOptions(web.command('token').description('create web.token_file with a random token if it is missing (--rotate: replace it)'))
    .option('--rotate', 'replace an existing token (sessions end at the daemon\'s next reload)')
    .addHelpText('after', '\nExample:\n  sudo stackback web token && sudo systemctl reload stackback\n  sudo cat /etc/stackback/web.token    # the token to sign in with')
    .action((options: GlobalOptions & { rotate?: boolean }) => {
      const file = loadCliConfig(options).web.tokenFile;
      const existed = existsSync(file);
      if (existed && !options.rotate) {
        if (options.json) printJson({ file, created: false });
        else printLine(`${file} exists (keeping it; --rotate replaces it)`);
        return;
      }
      const group = process.getuid?.() === 0 ? nameIds('/etc/group').get(DAEMON_GROUP) : undefined;
      try {
        if (writeTokenFile(file, { replace: existed, group }) === 'exists') throw Object.assign(new Error('made by another process meanwhile'), { code: 'EEXIST' });
      } catch (error) {
        throw new StackbackError('WEB_TOKEN', `cannot write web.token_file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'run it as root (sudo), or point web.token_file at a writable place');
      }
      if (options.json) printJson({ file, created: true });
      else printLine(`${existed ? 'replaced' : 'created'} ${file} (mode ${group === undefined ? '0600' : `0640, group ${DAEMON_GROUP}`}); sign in with its content${existed ? '; `systemctl reload stackback` makes the daemon take it' : ''}`);
    });
}
