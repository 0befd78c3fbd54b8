import type { PostgresSourceConfig } from '../../config/load.ts';
import { StackbackError } from '../../errors.ts';
import type { ArtifactManifest } from '../../repository/manifest.ts';
import type { ArtifactCheck, ArtifactDump, DrillRequest, DrillVerdict, PlannedArtifact, RestorePlan, RestoreRequest, SafetyCopyCleanup, Source } from '../source.ts';
import { feedWhileOpen, runTool } from '../tool.ts';
import { findBinaries, type PgBinaries } from './binaries.ts';
import type { Logger } from '../../log.ts';
import { PgServer } from './connection.ts';
import { dumpDatabase, dumpGlobals, type PgDumpMeta } from './dump.ts';
import { restoreStamp } from '../stamp.ts';
import { type DatabaseRestorePlan, derivedName, dropScratchDatabase, planDatabaseRestore, restoreDatabase, restoreGlobals, rolesInGlobals } from './restore.ts';
import { serverMajor } from './properties.ts';
import { dropLeftovers, markedDatabases, scratchMarker } from './scratch.ts';
import { exec, ident } from './sql.ts';

const GLOBALS_HEADER = '--\n-- PostgreSQL database cluster dump';

/**
 * A PostgreSQL server as a backup source: one `pg_dump -Fc` artifact per database, plus
 * one `pg_dumpall --globals-only` artifact (roles, tablespaces) when `globals` is on.
 */
export class PostgresSource implements Source {
  readonly kind = 'postgres';
  readonly name: string;
  readonly server: PgServer;
  private bins: PgBinaries | undefined;

  constructor(config: PostgresSourceConfig) {
    this.name = config.name;
    this.server = new PgServer(config);
  }

  describe(): string {
    return this.server.describe();
  }

  private async binaries(major: number): Promise<PgBinaries> {
    this.bins ??= await findBinaries(major, this.server.config.binDir, 'dump server');
    return this.bins;
  }

  async check(): Promise<Record<string, unknown>> {
    return this.server.with(this.server.config.maintenanceDb, async (client) => {
      const major = await serverMajor(client);
      const bins = await this.binaries(major);
      const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
      return { server_version: rows[0]!.v, tools: bins.dir, tools_version: bins.version };
    });
  }

  async plan(): Promise<PlannedArtifact[]> {
    const { databases, sizes } = await this.server.with(this.server.config.maintenanceDb, async (client) => {
      await this.binaries(await serverMajor(client));
      const { rows } = await client.query<{ name: string; size: string; allowed: boolean }>(
        'SELECT datname AS name, pg_database_size(oid) AS size, datallowconn AND NOT datistemplate AS allowed FROM pg_database ORDER BY datname',
      );
      const sizes = new Map(rows.map((r) => [r.name, Number(r.size)]));
      const wanted = this.server.config.databases;
      if (wanted === 'all') return { databases: rows.filter((r) => r.allowed).map((r) => r.name), sizes };
      const missing = wanted.filter((db) => !sizes.has(db));
      if (missing.length > 0) {
        throw new StackbackError(
          'PG_DATABASE_MISSING',
          `database(s) ${missing.map((d) => `"${d}"`).join(', ')} of ${this.describe()} do not exist`,
          'fix sources.postgres[].databases, or use "all"',
        );
      }
      return { databases: wanted, sizes };
    });
    const artifacts: PlannedArtifact[] = databases.map((db) => ({
      id: `${this.name}/db/${db}`,
      kind: 'pg_dump',
      target: db,
      estimatedBytes: sizes.get(db) ?? 0,
    }));
    if (this.server.config.globals) artifacts.push({ id: `${this.name}/globals`, kind: 'pg_globals', target: 'globals', estimatedBytes: 64 * 1024, auxiliary: true });
    return artifacts;
  }

  async dump(artifact: PlannedArtifact, signal?: AbortSignal): Promise<ArtifactDump> {
    if (!this.bins) throw new Error('plan() must run before dump()');
    if (artifact.kind === 'pg_globals') return dumpGlobals(this.server, this.bins, signal);
    return dumpDatabase(this.server, this.bins, artifact.target, signal);
  }

  async checkArtifact(artifact: ArtifactManifest, data: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<ArtifactCheck> {
    if (artifact.kind === 'pg_globals') {
      let head = '';
      for await (const chunk of data) if (head.length < GLOBALS_HEADER.length) head += Buffer.from(chunk).toString('utf8', 0, 256);
      const ok = head.startsWith(GLOBALS_HEADER);
      return { ok, detail: ok ? 'globals SQL header present' : 'does not start like a pg_dumpall globals dump' };
    }
    const major = Number(artifact.meta.pg_dump_major);
    const bins = await findBinaries(major, this.server.config.binDir, 'read dumps made by pg_dump');
    const run = runTool(bins.path('pg_restore'), ['--list'], { env: {}, signal, errorCode: 'VERIFY_FAILED', what: `pg_restore --list of ${artifact.id}`, stdin: 'pipe' });
    let listing = '';
    run.stdout!.setEncoding('utf8').on('data', (text: string) => (listing += text));
    try {
      await feedWhileOpen(data, run.stdin!);
    } catch (error) {
      // The data itself is bad (a damaged chunk): end pg_restore's input so it exits, then report the data's error.
      run.stdin!.destroy();
      await run.exited.catch(() => undefined);
      throw error;
    }
    try {
      await run.exited;
    } catch (error) {
      return { ok: false, detail: (error as Error).message };
    }
    const entries = listing.split('\n').filter((line) => line.trim() !== '' && !line.startsWith(';')).length;
    return entries > 0 ? { ok: true, detail: `pg_restore --list reads ${entries} entries` } : { ok: false, detail: 'pg_restore --list found no entries' };
  }

  async planRestore(request: RestoreRequest): Promise<RestorePlan> {
    const { options } = request;
    const dumps = request.artifacts.filter((a) => a.kind === 'pg_dump' && (options.database === undefined || a.target === options.database));
    if (dumps.length === 0) {
      const held = request.artifacts.filter((a) => a.kind === 'pg_dump').map((a) => a.target);
      throw new StackbackError(
        'ARTIFACT_NOT_FOUND',
        options.database === undefined
          ? `the backup holds no database dumps of source ${this.name}`
          : `the backup holds no database "${options.database}" of source ${this.name} (it holds: ${held.join(', ') || 'none'})`,
      );
    }
    if (options.targetDb !== undefined && dumps.length !== 1) {
      throw new StackbackError('USAGE', `--target-db restores one database, but ${dumps.length} are selected (${dumps.map((d) => d.target).join(', ')})`, 'add --database NAME');
    }
    const globals = options.withGlobals ? request.artifacts.find((a) => a.kind === 'pg_globals') : undefined;
    if (options.withGlobals && !globals) {
      throw new StackbackError('ARTIFACT_NOT_FOUND', `--with-globals: the backup holds no globals of source ${this.name} (globals: false when it was taken?)`);
    }
    request.willRead([...(globals ? [globals] : []), ...dumps]);
    const globalsSql = globals ? Buffer.concat(await Array.fromAsync(request.open(globals))).toString('utf8') : '';
    const databaseOptions = {
      targetDb: options.targetDb,
      forceDisconnect: options.forceDisconnect,
      rolesToCreate: rolesInGlobals(globalsSql),
      reserveBytes: request.reserveBytes,
      signal: request.signal,
      now: request.now,
      workDir: request.workDir,
    };
    const plans: { artifact: ArtifactManifest; plan: DatabaseRestorePlan }[] = [];
    for (const artifact of dumps) {
      plans.push({ artifact, plan: await planDatabaseRestore(this.server, artifact.meta as PgDumpMeta, databaseOptions) });
    }
    const steps = [
      ...(globals ? [`replay roles and tablespaces of ${this.name} (existing ones are kept)`] : []),
      ...plans.map(({ plan }) =>
        plan.mode === 'swap'
          ? `restore database "${plan.database}" into a fresh copy and swap it in; the current one is kept as "${plan.safetyCopy}"`
          : plan.mode === 'target'
            ? `restore database "${plan.database}" as new database "${plan.final}" (the original is not touched)`
            : `restore database "${plan.database}" (it does not exist on the server now)`,
      ),
    ];
    return {
      source: this.name,
      artifacts: [...(globals ? [globals] : []), ...dumps],
      steps,
      replacesData: globals !== undefined || plans.some(({ plan }) => plan.mode === 'swap'),
      // The swap keeps the replaced database itself as the safety copy.
      safetyBackup: [],
      findings: plans.flatMap(({ plan }) => plan.findings.map((f) => ({ ...f, message: `${plan.database}: ${f.message}` }))),
      execute: async () => {
        const results: Record<string, unknown>[] = [];
        // Copies that killed restores and drills left behind hold disk that this restore needs.
        const leftovers = await dropLeftovers(this.server);
        if (leftovers.dropped.length > 0 || leftovers.problems.length > 0) results.push({ source: this.name, leftovers_dropped: leftovers.dropped, leftovers_kept: leftovers.problems });
        if (globals) {
          const bins = plans[0]!.plan.bins;
          const { skipped } = await restoreGlobals(this.server, bins, globalsSql, request.signal);
          results.push({ artifact: globals.id, skipped_existing: skipped });
        }
        for (const { artifact, plan } of plans) {
          const result = await restoreDatabase(this.server, plan, request.open(artifact), databaseOptions);
          results.push({ artifact: artifact.id, ...result });
        }
        return results;
      },
    };
  }

  /** Only databases stackback marked as safety copies when it swapped them out: a look-alike name alone is never enough. */
  async cleanSafetyCopies(before: Date, dryRun: boolean): Promise<SafetyCopyCleanup[]> {
    return this.server.with(this.server.config.maintenanceDb, async (client) => {
      const marked = new Set((await markedDatabases(client, ['safety-copy'])).map((m) => m.name));
      const { rows } = await client.query<{ name: string; sessions: string }>(
        `SELECT d.datname AS name, (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname) AS sessions
           FROM pg_database d WHERE d.datname ~ '_pre_restore_[0-9]{8}_[0-9]{6}$' ORDER BY 1`,
      );
      const results: SafetyCopyCleanup[] = [];
      for (const row of rows) {
        const stamp = /_pre_restore_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})$/.exec(row.name)!;
        const created = new Date(Date.UTC(+stamp[1]!, +stamp[2]! - 1, +stamp[3]!, +stamp[4]!, +stamp[5]!, +stamp[6]!));
        if (created >= before) continue;
        if (!marked.has(row.name)) {
          results.push({ name: row.name, created: created.toISOString(), dropped: false, note: 'kept: not marked as a stackback safety copy (drop it yourself when it is not needed)' });
          continue;
        }
        if (Number(row.sessions) > 0) {
          results.push({ name: row.name, created: created.toISOString(), dropped: false, note: `kept: ${row.sessions} session(s) use it` });
          continue;
        }
        if (!dryRun) await exec(client, `DROP DATABASE ${ident(row.name)}`);
        results.push({ name: row.name, created: created.toISOString(), dropped: !dryRun });
      }
      return results;
    });
  }

  /** Drops restore and drill scratch databases that killed runs left on the source server (see scratch.ts); returns their names. */
  async cleanLeftovers(log: Logger): Promise<string[]> {
    const { dropped, problems } = await dropLeftovers(this.server);
    for (const name of dropped) log.info({ source: this.name, database: name }, `dropped database ${name}, left by a restore or drill that was killed`);
    for (const problem of problems) log.warn({ source: this.name }, `cannot drop a database left by a killed restore or drill: ${problem}`);
    return dropped;
  }

  /**
   * Restores a dump into a scratch database on the source server, compares its tables'
   * row counts with those recorded at backup time and its extensions, and drops it again.
   */
  async drill(artifact: ArtifactManifest, request: DrillRequest): Promise<DrillVerdict> {
    if (artifact.kind === 'pg_globals') {
      const check = await this.checkArtifact(artifact, request.open());
      return { ok: check.ok, detail: check.detail, differences: check.ok ? [] : [check.detail] };
    }
    const meta = artifact.meta as PgDumpMeta;
    const scratch = derivedName(`${request.scratchPrefix}${meta.database}`, `_${restoreStamp(request.now)}`);
    const marker = scratchMarker('drill', scratch);
    // The source server itself, or the one drill.postgres_server names.
    const server = request.postgresServer ? new PgServer(request.postgresServer) : this.server;
    await dropLeftovers(server);
    // Still there: not a leftover of a dead run, so not ours to drop.
    await dropScratchDatabase(server, scratch, marker);
    const options = { targetDb: scratch, forceDisconnect: false, rolesToCreate: new Set<string>(), reserveBytes: request.reserveBytes, signal: request.signal, now: request.now, workDir: request.workDir, drillMarker: marker };
    const plan = await planDatabaseRestore(server, meta, options);
    const blocking = plan.findings.filter((f) => f.level === 'error');
    if (blocking.length > 0) return { ok: false, detail: `the drill could not restore on ${server.describe()}`, differences: blocking.map((f) => `${f.message} (${f.hint})`) };
    try {
      await restoreDatabase(server, plan, request.open(), options);
      const differences = await server.with(scratch, async (client) => {
        const found: string[] = [];
        for (const table of meta.tables) {
          if (!table.exact || table.rows === null) continue;
          const [schema, ...rest] = table.table.split('.');
          const result = await exec<{ n: string }>(client, `SELECT count(*) AS n FROM ONLY ${ident(schema!)}.${ident(rest.join('.'))}`).catch(() => undefined);
          if (!result) found.push(`table ${table.table} is missing`);
          else if (Number(result.rows[0]!.n) !== table.rows) found.push(`table ${table.table}: ${result.rows[0]!.n} rows restored, ${table.rows} recorded at backup time`);
        }
        const { rows } = await client.query<{ name: string }>('SELECT extname AS name FROM pg_extension');
        const present = new Set(rows.map((r) => r.name));
        for (const extension of meta.extensions) if (!present.has(extension.name)) found.push(`extension ${extension.name} is missing`);
        return found;
      });
      const exact = meta.tables.filter((t) => t.exact).length;
      const where = request.postgresServer ? ` on ${server.describe()}` : '';
      return { ok: differences.length === 0, detail: `restored into ${scratch}${where}: ${exact} table row counts and ${meta.extensions.length} extension(s) compared`, differences };
    } finally {
      await dropScratchDatabase(server, scratch, marker);
    }
  }
}
