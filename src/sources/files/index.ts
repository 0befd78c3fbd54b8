import { createReadStream, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { FilesSourceConfig } from '../../config/load.ts';
import { StackbackError } from '../../errors.ts';
import type { ArtifactManifest } from '../../repository/manifest.ts';
import type { ArtifactCheck, ArtifactDump, DrillRequest, DrillVerdict, Finding, PlannedArtifact, RestorePlan, RestoreRequest, Source } from '../source.ts';
import { restoreStamp } from '../stamp.ts';
import { listTar } from '../tar-listing.ts';
import { dumpOfStream } from '../artifact-dump.ts';
import { createArchive, excluded, type FileEntry } from './archive.ts';
import { extractArchive, recordedRoot, scanArchive, symlinkOnTheWay } from './extract.ts';

async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Free bytes on the filesystem that holds `target` (or its nearest existing parent). */
async function freeBytes(target: string): Promise<number | undefined> {
  let dir = target;
  while (!existsSync(dir) && dir !== path.dirname(dir)) dir = path.dirname(dir);
  const stats = await statfs(dir).catch(() => undefined);
  return stats ? stats.bavail * stats.bsize : undefined;
}

/** Bytes under a path (honouring the excludes): the free-space estimate of a first backup. */
async function treeBytes(root: string, exclude: string[]): Promise<number> {
  const info = await lstat(root).catch(() => undefined);
  if (!info || excluded(root, exclude)) return 0;
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(root).catch(() => [] as string[])) total += await treeBytes(path.join(root, name), exclude);
  return total;
}

/**
 * Plain files (uploads, configs, job logs) as a backup source: one tar artifact of the
 * configured paths. Restore unpacks into --target-dir, or in place, where each replaced
 * top-level path is first moved aside as `<path>.pre-restore-<stamp>`.
 */
export class FilesSource implements Source {
  readonly kind = 'files';
  readonly name: string;
  readonly config: FilesSourceConfig;

  constructor(config: FilesSourceConfig) {
    this.name = config.name;
    this.config = config;
  }

  describe(): string {
    return `files source ${this.name} (${this.config.paths.join(', ')})`;
  }

  async check(): Promise<Record<string, unknown>> {
    const missing = this.config.paths.filter((p) => !existsSync(p));
    if (missing.length > 0) throw new StackbackError('SOURCE_NOT_FOUND', `path(s) ${missing.join(', ')} of ${this.describe()} do not exist`, 'fix sources.files[].paths');
    return { paths: this.config.paths };
  }

  async plan(): Promise<PlannedArtifact[]> {
    await this.check();
    let estimated = 0;
    for (const p of this.config.paths) estimated += await treeBytes(p, this.config.exclude);
    return [{ id: `${this.name}/files`, kind: 'files_tar', target: this.config.paths.join(','), estimatedBytes: estimated }];
  }

  async dump(_artifact: PlannedArtifact, signal?: AbortSignal): Promise<ArtifactDump> {
    const { stream, report } = createArchive({ paths: this.config.paths, exclude: this.config.exclude, oneFileSystem: this.config.oneFileSystem, signal });
    const paths = this.config.paths;
    return dumpOfStream(stream, () => {
      // Per configured path: one empty mount point among several is as much a lost disk as a whole empty source.
      const perPath = paths.map(() => 0);
      const roots = paths.map((p) => path.resolve(p));
      let fileCount = 0;
      for (const file of report.files) {
        if (file.type !== 'File' && file.type !== 'OldFile') continue;
        fileCount += 1;
        roots.forEach((root, index) => {
          if (file.path === root || file.path.startsWith(root === '/' ? '/' : `${root}/`)) perPath[index]! += 1;
        });
      }
      const empty = paths.filter((_, index) => perPath[index] === 0);
      return {
        paths,
        files: report.files,
        file_count: fileCount,
        warnings: report.warnings,
        read_errors: report.readErrors,
        ...(empty.length > 0 ? { coverage: empty.map((p) => `no files under ${p}: is a disk not mounted there?`) } : {}),
      };
    });
  }

  async checkArtifact(_artifact: ArtifactManifest, data: AsyncIterable<Uint8Array>): Promise<ArtifactCheck> {
    const entries = await listTar(data);
    return { ok: true, detail: `files tar reads (${entries.length} entries)` };
  }

  async planRestore(request: RestoreRequest): Promise<RestorePlan> {
    const artifact = request.artifacts.find((a) => a.kind === 'files_tar');
    if (!artifact) throw new StackbackError('ARTIFACT_NOT_FOUND', `the backup holds no files of source ${this.name}`);
    const { targetDir, path: only } = request.options;
    if (only !== undefined && !path.isAbsolute(only)) throw new StackbackError('USAGE', `--path must be an absolute path as it was backed up (got ${only})`);
    request.willRead([artifact]);
    const root = targetDir === undefined ? '/' : path.resolve(targetDir);
    const recorded = (artifact.meta.paths as string[] | undefined) ?? [];
    // In place, only what the source backs up may be written: an entry elsewhere refuses the restore.
    const extract = { root, only, recorded: targetDir === undefined ? recorded : undefined };
    const scan = await scanArchive(request.open(artifact), extract);
    if (scan.entries === 0) throw new StackbackError('ARTIFACT_NOT_FOUND', `the backup holds nothing under ${only ?? '/'} from source ${this.name}`);
    const findings: Finding[] = scan.problems.map((problem) => ({
      level: 'error',
      message: `unsafe archive entry, nothing will be written: ${problem}`,
      hint: 'this backup was tampered with or made by something else: restore another one',
    }));
    const topFiles = targetDir === undefined ? scan.topEntries.filter((t) => t.type !== 'Directory') : [];
    for (const t of topFiles) findings.push({ level: 'error', message: `/${t.name} is a file directly under /: it cannot be restored in place`, hint: 'restore it with --target-dir and move it into place' });
    const free = await freeBytes(root);
    const needed = artifact.size + request.reserveBytes;
    if (free !== undefined && free < needed) findings.push({ level: 'error', message: `not enough free disk under ${root}: ${free} bytes free, about ${needed} needed`, hint: 'free space, or restore into another --target-dir' });
    else if (free !== undefined) findings.push({ level: 'ok', message: `${root} has ${free} bytes free, about ${needed} needed` });
    // In place, what gets replaced is moved aside first: the --path, or each backed-up top-level path.
    const replaced = targetDir === undefined ? (only !== undefined ? [only] : recorded) : [];
    for (const p of replaced) {
      // A symlink below the recorded path (say, an uploads folder its owner swapped for a link to /etc) would take the move and the files elsewhere.
      const link = symlinkOnTheWay(path.dirname(recordedRoot(p, recorded) ?? p), p, false);
      if (link !== undefined) findings.push({ level: 'error', message: `${link} is a symlink on disk: restoring ${p} in place would write through it`, hint: 'restore with --target-dir, check what is there, and move it into place' });
    }
    const aside = replaced.filter((p) => existsSync(p));
    const suffix = `.pre-restore-${restoreStamp(request.now)}`;
    return {
      source: this.name,
      artifacts: [artifact],
      replacesData: aside.length > 0,
      safetyBackup: [],
      findings,
      steps: [
        ...aside.map((p) => `move ${p} aside to ${p}${suffix}`),
        `unpack ${scan.entries} entries${only ? ` under ${only}` : ''} ${targetDir === undefined ? 'in place' : `into ${root}`}`,
      ],
      execute: async () => {
        for (const p of aside) await rename(p, `${p}${suffix}`);
        await mkdir(root, { recursive: true, mode: 0o750 });
        let renamedOwners: number;
        try {
          renamedOwners = (await extractArchive(() => request.open(artifact), extract, scan)).ownersMappedByName;
        } catch (error) {
          if (aside.length === 0) throw error;
          throw new StackbackError('RESTORE_FAILED', `${(error as Error).message}; the previous contents are at ${aside.map((p) => `${p}${suffix}`).join(', ')}`);
        }
        return [{ artifact: artifact.id, restored_as: root, entries: scan.entries, owners_mapped_by_name: renamedOwners, moved_aside: aside.map((p) => `${p}${suffix}`) }];
      },
    };
  }

  /** Unpacks into a scratch folder under work_dir and compares every file's size and sha256 with the recorded list. */
  async drill(artifact: ArtifactManifest, request: DrillRequest): Promise<DrillVerdict> {
    const scratch = path.join(request.workDir, `drill-${this.name}-${request.now.getTime()}`);
    if (existsSync(scratch)) throw new StackbackError('RESTORE_FAILED', `${scratch} exists already: a drill never touches a folder it did not create`);
    try {
      const scan = await scanArchive(request.open(), { root: scratch });
      if (scan.problems.length > 0) return { ok: false, detail: 'the archive is unsafe to unpack', differences: scan.problems };
      await mkdir(scratch, { recursive: true, mode: 0o700 });
      await extractArchive(() => request.open(), { root: scratch }, scan);
      const files = ((artifact.meta.files as FileEntry[] | undefined) ?? []).filter((f) => f.sha256 !== undefined);
      const differences: string[] = [];
      for (const file of files) {
        const restored = path.join(scratch, file.path);
        const info = await lstat(restored).catch(() => undefined);
        if (!info) differences.push(`${file.path} is missing`);
        else if (info.size !== file.size) differences.push(`${file.path}: ${info.size} bytes, recorded ${file.size}`);
        else if ((await sha256OfFile(restored)) !== file.sha256) differences.push(`${file.path}: content differs from the recorded sha256`);
      }
      return { ok: differences.length === 0, detail: `unpacked into a scratch folder: ${files.length} file(s) compared by size and sha256`, differences };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
}
