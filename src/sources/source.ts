import type { PostgresSourceConfig } from '../config/load.ts';
import type { Logger } from '../log.ts';
import type { ArtifactData } from '../repository/artifact-reader.ts';
import type { ArtifactKind, ArtifactManifest } from '../repository/manifest.ts';

/**
 * What every data source module provides (DESIGN.md §4). The backup, restore and verify
 * jobs drive sources only through this interface; a new kind of source is one new module.
 */
export interface PlannedArtifact {
  id: string;
  kind: ArtifactKind;
  target: string;
  /** Rough size of the artifact, for free-space checks and progress. */
  estimatedBytes: number;
  /** Kept beside what the source was configured to protect (a server's roles): a backup of only these protects nothing. */
  auxiliary?: boolean;
}

export interface ArtifactDump {
  /** The artifact's bytes; ends when the producer ends, successful or not. */
  stream: AsyncIterable<Uint8Array>;
  /**
   * Resolves with the source's metadata once the producer has exited successfully. The
   * keys `warnings` and `read_errors` (string lists), when present, are reported on the
   * run; read errors make the backup partial. `coverage` (string list) says the artifact
   * protects less than it should (an empty tree): shown by `status` until the next backup.
   */
  finished: Promise<Record<string, unknown>>;
}

export interface ArtifactCheck {
  ok: boolean;
  detail: string;
}

/** Restore options from the CLI or the control channel; each source reads the ones it knows. */
export interface RestoreOptions {
  /** PostgreSQL: only this database. */
  database?: string | undefined;
  /** PostgreSQL: restore beside the original under this name. */
  targetDb?: string | undefined;
  /** PostgreSQL: replay roles and tablespaces first. */
  withGlobals: boolean;
  /** PostgreSQL: terminate sessions on the database being replaced. */
  forceDisconnect: boolean;
  /** Qdrant: only this collection. */
  collection?: string | undefined;
  /** Qdrant: restore under this collection name instead. */
  targetCollection?: string | undefined;
  /** Qdrant: do not store a snapshot of a collection before restoring over it. */
  noSafety: boolean;
  /** Files: unpack under this folder instead of in place. */
  targetDir?: string | undefined;
  /** Files: only this original path (and what is below it). */
  path?: string | undefined;
}

export interface RestoreRequest {
  /** This source's artifacts in the backup being restored. */
  artifacts: ArtifactManifest[];
  options: RestoreOptions;
  /** Opens an artifact's data: verified chunk by chunk and as a whole. */
  open(artifact: ArtifactManifest): ArtifactData;
  now: Date;
  /** Where restores may put temporary things (named pipes): work_dir. */
  workDir: string;
  signal?: AbortSignal | undefined;
  /** Free space to keep on a restore target beyond what the restore needs (restore.reserve_free). */
  reserveBytes: number;
  /**
   * Call as soon as it is known which artifacts the plan will read, before the preflight's
   * round trips: their chunks are checked for damage meanwhile. (Artifacts a plan reads but
   * did not announce are checked after planning.)
   */
  willRead(artifacts: ArtifactManifest[]): void;
}

/** One result of a restore preflight; every problem says what to do about it. */
export interface Finding {
  level: 'ok' | 'error';
  message: string;
  hint?: string;
}

/** A restore checked against its target and ready to run: nothing has been written yet. */
export interface RestorePlan {
  source: string;
  /** The artifacts `execute` will read: checked for damage before anything runs. */
  artifacts: ArtifactManifest[];
  /** What will happen, one line each, for the operator's confirmation. */
  steps: string[];
  /** Whether existing data gets replaced (then the CLI asks for confirmation or --yes). */
  replacesData: boolean;
  /** Artifacts of the live source to back up into the repository first (safety copies of what gets replaced). */
  safetyBackup: string[];
  /** The preflight's findings; any error blocks `execute`. */
  findings: Finding[];
  execute(): Promise<Record<string, unknown>[]>;
}

/** A restore drill of one artifact: into a scratch target, compared, then removed. */
export interface DrillRequest {
  open(): ArtifactData;
  now: Date;
  signal?: AbortSignal | undefined;
  /** Names of scratch databases/collections start with this; files drills unpack under workDir. */
  scratchPrefix: string;
  workDir: string;
  reserveBytes: number;
  /** PostgreSQL: drill on this server instead of the source server (drill.postgres_server). */
  postgresServer?: PostgresSourceConfig | null | undefined;
}

export interface DrillVerdict {
  ok: boolean;
  detail: string;
  /** What differs from what the manifest recorded, one line each. */
  differences: string[];
}

export interface Source {
  readonly name: string;
  readonly kind: string;
  /** "postgres main (postgres@/var/run/postgresql:5432)": for messages; never includes secrets. */
  describe(): string;
  /** Connects and checks tools; throws a clear StackbackError when the source is unusable. */
  check(signal?: AbortSignal): Promise<Record<string, unknown>>;
  /** The artifacts a backup of this source produces right now. */
  plan(signal?: AbortSignal): Promise<PlannedArtifact[]>;
  dump(artifact: PlannedArtifact, signal?: AbortSignal): Promise<ArtifactDump>;
  /** Reads an artifact with the source's own tool (e.g. pg_restore --list) to prove it is usable. */
  checkArtifact(artifact: ArtifactManifest, data: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<ArtifactCheck>;
  /** Preflight of a restore: throws, naming every problem, before anything is touched. */
  planRestore(request: RestoreRequest): Promise<RestorePlan>;
  /** Restores the artifact into a scratch target (never the source's own), compares, and removes the scratch target whatever happens. */
  drill(artifact: ArtifactManifest, request: DrillRequest): Promise<DrillVerdict>;
  /** Safety copies that restores left on the live server (e.g. <db>_pre_restore_<stamp>) older than `before`: dropped, or only listed with dryRun. */
  cleanSafetyCopies?(before: Date, dryRun: boolean): Promise<SafetyCopyCleanup[]>;
  /** Scratch targets (e.g. <db>_restoring_<stamp>) that killed restores and drills left and no live process uses: dropped, named in the log, returned. */
  cleanLeftovers?(log: Logger): Promise<string[]>;
}

export interface SafetyCopyCleanup {
  name: string;
  created: string;
  dropped: boolean;
  note?: string;
}
