import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { text as readText } from 'node:stream/consumers';
import type { Command } from 'commander';
import { addKeyPassphrase, exportKey, importKey, removeKeyPassphrase } from '../../jobs/repository-key.ts';
import { type GlobalOptions, loadCliConfig, openCliCatalog } from '../context.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

/** Runs `work` with the configured catalog open (the key commands need no job context). */
async function withCatalog<T>(options: GlobalOptions, work: (config: ReturnType<typeof loadCliConfig>, catalog: ReturnType<typeof openCliCatalog>) => Promise<T>): Promise<T> {
  const config = loadCliConfig(options);
  const catalog = openCliCatalog(config);
  try {
    return await work(config, catalog);
  } finally {
    catalog.close();
  }
}

export function registerKey(program: Command): void {
  const key = program.command('key').description('the repository key (encrypted repositories): keep a copy elsewhere, restore it, manage passphrases');
  withCommonOptions(key.command('export').description('print the key as text to keep away from this server (paper, password manager); status warns until this was done')).action(async (options: GlobalOptions) => {
    const result = await withCatalog(options, (config, catalog) => exportKey(config, catalog));
    if (options.json) printJson(result);
    else process.stdout.write(result.text);
  });
  withCommonOptions(key.command('import').description('write repository.key_file from exported text (never replaces a key file)').argument('[file]', 'the exported text (default: standard input)')).action(
    async (file: string | undefined, options: GlobalOptions) => {
      const text = file === undefined || file === '-' ? await readText(process.stdin) : await readFile(path.resolve(file), 'utf8');
      const result = await withCatalog(options, (config, catalog) => importKey(config, catalog, text));
      if (options.json) printJson(result);
      else printLine(`key ${result.key_id} written to ${result.key_file}${result.checked ? ', and it opens the repository' : ''}`);
    },
  );
  for (const [name, description, run] of [
    ['add', 'add a passphrase that opens the key (a passphrase-protected key file; no chunk is rewritten)', addKeyPassphrase],
    ['remove', 'remove the passphrase in the given file from the key file (never the last one)', removeKeyPassphrase],
  ] as const) {
    withCommonOptions(key.command(name).description(description))
      .requiredOption('--passphrase-file <file>', 'file whose first line is the passphrase (mode 0600)')
      .action(async (options: GlobalOptions & { passphraseFile: string }) => {
        const result = await withCatalog(options, (config, catalog) => run(config, catalog, path.resolve(options.passphraseFile)));
        if (options.json) printJson(result);
        else printLine(`passphrase ${result.wrapping} ${name === 'add' ? 'added' : 'removed'}: the key file has ${result.passphrases} passphrase(s)`);
      });
  }
}
