import { createHash } from 'node:crypto';
import { accessSync, constants, lstatSync, readFileSync, type Stats } from 'node:fs';
import path from 'node:path';
import { create as createTar, Parser, type ReadEntry } from 'tar';

/**
 * The files source's archive: a tar stream (the `tar` package) of the configured paths,
 * written relative to `/` so one archive holds several roots. Ownership, modes, mtimes,
 * symlinks (as links), hard links (stored once) and empty folders are kept; sockets and
 * devices are skipped with a warning. While the stream passes, every entry is also read
 * back to record a file list with sizes and sha256 (what a restore or a drill compares).
 */
export interface FileEntry {
  path: string;
  type: string;
  size: number;
  mode: number;
  mtime: string;
  uid: number;
  gid: number;
  /** Owner and group by name, as this host's /etc/passwd and /etc/group knew them. */
  user?: string;
  group?: string;
  sha256?: string;
  link?: string;
}

export interface ArchiveReport {
  files: FileEntry[];
  /** Things that happen to live trees: a file that vanished, a socket skipped. */
  warnings: string[];
  /** Files that could not be read: the backup is partial. */
  readErrors: string[];
}

export interface ArchiveOptions {
  paths: string[];
  exclude: string[];
  oneFileSystem: boolean;
}

const SUPPORTED = (stats: Stats) => stats.isFile() || stats.isDirectory() || stats.isSymbolicLink();

/** Whether an absolute path is excluded by one of the globs (matched against the whole path). */
export function excluded(absolute: string, globs: string[]): boolean {
  return globs.some((glob) => path.matchesGlob(absolute, glob));
}

function readable(absolute: string, stats: Stats): boolean {
  if (stats.isSymbolicLink()) return true;
  try {
    accessSync(absolute, stats.isDirectory() ? constants.R_OK | constants.X_OK : constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export function createArchive(options: ArchiveOptions): { stream: AsyncIterable<Uint8Array>; report: ArchiveReport } {
  const report: ArchiveReport = { files: [], warnings: [], readErrors: [] };
  const roots = options.paths.map((p) => path.resolve(p));
  const rootDevices = new Map(roots.map((r) => [r, lstatSync(r).dev]));
  const filter = (entryPath: string, stats: Stats | ReadEntry): boolean => {
    const absolute = path.resolve('/', entryPath);
    if (excluded(absolute, options.exclude)) return false;
    const s = stats as Stats;
    if (!SUPPORTED(s)) {
      report.warnings.push(`${absolute}: skipped (${s.isSocket() ? 'socket' : s.isFIFO() ? 'fifo' : 'device'})`);
      return false;
    }
    // An unreadable file would break the whole tar stream: leave it out and name it (the backup becomes partial).
    if (!readable(absolute, s)) {
      report.readErrors.push(`${absolute}: permission denied`);
      return false;
    }
    if (options.oneFileSystem) {
      const root = roots.find((r) => absolute === r || absolute.startsWith(`${r}/`));
      if (root && s.dev !== rootDevices.get(root) && absolute !== root) return false;
    }
    return true;
  };
  const tar = createTar(
    {
      cwd: '/',
      portable: false,
      follow: false,
      strict: false,
      filter,
      onwarn: (code: string, message: string, data: { path?: string; code?: string } | Error) => {
        const where = (data as { path?: string }).path ?? '';
        const errno = (data as { code?: string }).code;
        if (errno === 'ENOENT') report.warnings.push(`${where}: vanished while the backup ran`);
        else report.readErrors.push(`${where || code}: ${message}`);
      },
    },
    roots.map((r) => r.slice(1) || '.'),
  ) as unknown as AsyncIterable<Uint8Array>;
  return { stream: recordEntries(tar, report), report };
}

/** id → name from an /etc/passwd- or /etc/group-style file (name:x:id:…). */
export function idNames(file: string): Map<number, string> {
  const names = new Map<number, string>();
  const text = (() => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  })();
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id && /^\d+$/.test(id) && !names.has(Number(id))) names.set(Number(id), name);
  }
  return names;
}

/** Passes the tar bytes through while a parser reads them back into the file list. */
async function* recordEntries(tar: AsyncIterable<Uint8Array>, report: ArchiveReport): AsyncGenerator<Uint8Array> {
  const users = idNames('/etc/passwd');
  const groups = idNames('/etc/group');
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      const hash = entry.type === 'File' || entry.type === 'OldFile' ? createHash('sha256') : undefined;
      entry.on('data', (chunk: Buffer) => hash?.update(chunk));
      entry.on('end', () => {
        report.files.push({
          path: `/${entry.path.replace(/^\.?\/*/, '')}`.replace(/\/$/, '') || '/',
          type: entry.type,
          size: entry.size ?? 0,
          mode: entry.mode ?? 0,
          mtime: (entry.mtime ?? new Date(0)).toISOString(),
          uid: entry.uid ?? 0,
          gid: entry.gid ?? 0,
          ...(users.has(entry.uid ?? 0) ? { user: users.get(entry.uid ?? 0) } : {}),
          ...(groups.has(entry.gid ?? 0) ? { group: groups.get(entry.gid ?? 0) } : {}),
          ...(hash ? { sha256: hash.digest('hex') } : {}),
          ...(entry.linkpath ? { link: entry.linkpath } : {}),
        });
      });
    },
  });
  for await (const chunk of tar) {
    parser.write(Buffer.from(chunk));
    yield chunk;
  }
  await new Promise<void>((resolve) => parser.end(resolve));
  noteChangedFiles(report);
}

/**
 * tar reads a file up to the size it had when it was reached: a file written to while the
 * backup read it is stored as a consistent prefix, or with mixed contents. Compared with
 * the file as it is now, such files are named as warnings (the backup is not partial).
 */
function noteChangedFiles(report: ArchiveReport): void {
  for (const file of report.files) {
    if (file.type !== 'File' && file.type !== 'OldFile') continue;
    let now: Stats;
    try {
      now = lstatSync(file.path);
    } catch {
      continue; // gone since: not a change of what was stored
    }
    // tar keeps whole seconds of the mtime.
    if (now.size !== file.size || Math.floor(now.mtimeMs / 1000) !== Math.floor(Date.parse(file.mtime) / 1000)) {
      report.warnings.push(`${file.path}: changed while the backup read it (stored ${file.size} bytes; it now has ${now.size})`);
    }
  }
}
