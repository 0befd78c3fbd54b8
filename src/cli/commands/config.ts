import type { Command } from 'commander';
import { SCHEMA } from '../../config/schema.ts';
import { createSources } from '../../sources/registry.ts';
import { loadCliConfig, type GlobalOptions } from '../context.ts';
import { printJson, printLine } from '../output.ts';
import { withCommonOptions } from '../program.ts';

interface SchemaLeaf {
  doc: string;
  default: unknown;
}

/** Walks the schema into "key  default  doc" rows: the config reference in the README comes from here. */
function schemaRows(node: Record<string, unknown>, prefix: string): { key: string; default: string; doc: string }[] {
  return Object.entries(node).flatMap(([key, value]) => {
    const leaf = value as Partial<SchemaLeaf> & { item?: Record<string, unknown>; format?: unknown };
    const path = `${prefix}${key}`;
    if (leaf.doc === undefined) return schemaRows(value as Record<string, unknown>, `${path}.`);
    const row = { key: path, default: JSON.stringify(leaf.default), doc: leaf.doc };
    return leaf.item ? [row, ...schemaRows(leaf.item, leaf.format === 'object-list' ? `${path}[].` : `${path}.`)] : [row];
  });
}

export function registerConfig(program: Command): void {
  const config = program.command('config').description('check the config file, or print the reference of every key');
  withCommonOptions(config.command('check').description('validate the config; every error names its key (exit 2 on error)')).action((options: GlobalOptions) => {
    const loaded = loadCliConfig(options);
    if (options.json) printJson({ ok: true, file: loaded.file, config: loaded });
    else {
      printLine(`${loaded.file}: OK`);
      printLine(`  repository ${loaded.repository.path}`);
      printLine(`  catalog    ${loaded.catalog.path}`);
      for (const source of createSources(loaded)) printLine(`  source     ${source.describe()}`);
    }
  });
  withCommonOptions(config.command('schema').description('print every config key with its default and meaning'))
    .option('--markdown', 'as a Markdown table (the README\'s config reference)')
    .action((options: GlobalOptions & { markdown?: boolean }) => {
      const rows = schemaRows(SCHEMA as unknown as Record<string, unknown>, '');
      if (options.json) printJson(rows);
      else if (options.markdown) {
        printLine('| key | default | meaning |\n|---|---|---|');
        for (const row of rows) printLine(`| \`${row.key}\` | \`${row.default}\` | ${row.doc.replaceAll('|', '\\|')} |`);
      } else for (const row of rows) printLine(`${row.key} (default ${row.default})\n    ${row.doc}`);
    });
}
