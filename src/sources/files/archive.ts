import { createHash } from 'node:crypto';
import { constants, lstatSync, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Header, Pax } from 'tar';
import { StackbackError } from '../../errors.ts';
import { idNames } from '../../system-accounts.ts';

/**
 * The files source's archive: a tar stream of the configured paths, written relative to `/`
 * so one archive holds several roots. Ownership, modes, mtimes, symlinks (as links), hard
 * links (stored once) and empty folders are kept; sockets and devices are skipped with a
 * warning. Every entry is also recorded in a file list with sizes and sha256 (what a
 * restore or a drill compares).
 *
 * The tree is walked here rather than by node-tar's packer: that one reports a file or
 * folder that vanished between listing and opening as a stream error nobody can recover
 * from (and, for a file, after its header is already out). Here each entry is opened
 * before its header is written, so a tree that changes while it is read only ever costs
 * warnings, and the archive stays well formed.
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
  /** Stops the walk (a cancelled or failed job): checked at every entry and every block read. */
  signal?: AbortSignal | undefined;
}

/** File contents are read in blocks of this size. */
const READ_BLOCK = 1024 * 1024;

/** Whether an absolute path is excluded by one of the globs (matched against the whole path). */
export function excluded(absolute: string, globs: string[]): boolean {
  return globs.some((glob) => path.matchesGlob(absolute, glob));
}

export function createArchive(options: ArchiveOptions): { stream: AsyncIterable<Uint8Array>; report: ArchiveReport } {
  const report: ArchiveReport = { files: [], warnings: [], readErrors: [] };
  return { stream: archiveStream(options, report), report };
}

const errno = (error: unknown) => (error as NodeJS.ErrnoException).code;

async function* archiveStream(options: ArchiveOptions, report: ArchiveReport): AsyncGenerator<Uint8Array> {
  const users = idNames('/etc/passwd');
  const groups = idNames('/etc/group');
  /** dev:ino → archive path of the first copy of a hard-linked file. */
  const hardLinks = new Map<string, string>();

  // Gone since it was listed (or a parent was replaced): a live tree did that, the backup goes on.
  // Anything else that stops an entry from being read makes the backup partial.
  const unreadable = (absolute: string, error: unknown) => {
    const code = errno(error);
    if (code === 'ENOENT' || code === 'ENOTDIR') report.warnings.push(`${absolute}: vanished while the backup ran`);
    else if (code === 'ELOOP') report.warnings.push(`${absolute}: became a symlink while the backup ran (not stored)`);
    else report.readErrors.push(`${absolute}: ${code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (error as Error).message}`);
  };

  /** The header block(s) of one entry, recorded in the file list as it goes out. */
  const header = (absolute: string, stats: Stats, type: 'File' | 'Directory' | 'SymbolicLink' | 'Link', fields: { size?: number; linkpath?: string; sha256?: string }) => {
    const name = absolute === '/' ? '.' : absolute.slice(1);
    const mtime = new Date(Math.floor(stats.mtimeMs / 1000) * 1000);
    const data = {
      path: type === 'Directory' ? `${name}/` : name,
      type,
      mode: stats.mode & 0o7777,
      uid: stats.uid,
      gid: stats.gid,
      size: fields.size ?? 0,
      mtime,
      linkpath: fields.linkpath ?? '',
      uname: users.get(stats.uid) ?? '',
      gname: groups.get(stats.gid) ?? '',
    };
    const block = new Header(data);
    const needPax = block.encode();
    return needPax ? [new Pax(data).encode(), block.block!] : [block.block!];
  };
  const record = (absolute: string, stats: Stats, type: string, size: number, extra: { sha256?: string; link?: string }) => {
    report.files.push({
      path: absolute,
      type,
      size,
      mode: stats.mode & 0o7777,
      mtime: new Date(Math.floor(stats.mtimeMs / 1000) * 1000).toISOString(),
      uid: stats.uid,
      gid: stats.gid,
      ...(users.has(stats.uid) ? { user: users.get(stats.uid) } : {}),
      ...(groups.has(stats.gid) ? { group: groups.get(stats.gid) } : {}),
      ...extra,
    });
  };

  async function* file(absolute: string, listed: Stats): AsyncGenerator<Uint8Array> {
    const linkKey = `${listed.dev}:${listed.ino}`;
    const first = listed.nlink > 1 ? hardLinks.get(linkKey) : undefined;
    if (first !== undefined) {
      yield* header(absolute, listed, 'Link', { linkpath: first });
      record(absolute, listed, 'Link', 0, { link: first });
      return;
    }
    // Opened before the header goes out; O_NOFOLLOW and O_NONBLOCK: a file swapped for a
    // symlink or a FIFO since it was listed is neither followed nor waited on.
    let handle: FileHandle;
    try {
      handle = await open(absolute, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (error) {
      return unreadable(absolute, error);
    }
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) return void report.warnings.push(`${absolute}: replaced by something else while the backup ran (not stored)`);
      yield* header(absolute, stats, 'File', { size: stats.size });
      const hash = createHash('sha256');
      let remaining = stats.size;
      while (remaining > 0) {
        options.signal?.throwIfAborted();
        const buffer = Buffer.allocUnsafe(Math.min(READ_BLOCK, remaining));
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, stats.size - remaining);
        if (bytesRead === 0) {
          // Shrunk while read: the header promised `size` bytes, so the rest is zeros (as GNU tar does).
          report.warnings.push(`${absolute}: shrank while the backup read it (the missing ${remaining} bytes are stored as zeros)`);
          const zeros = Buffer.alloc(remaining);
          hash.update(zeros);
          yield zeros;
          break;
        }
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        yield chunk;
        remaining -= bytesRead;
      }
      if (stats.size % 512 !== 0) yield Buffer.alloc(512 - (stats.size % 512));
      if (stats.nlink > 1) hardLinks.set(`${stats.dev}:${stats.ino}`, absolute.slice(1));
      record(absolute, stats, 'File', stats.size, { sha256: hash.digest('hex') });
    } catch (error) {
      if (options.signal?.aborted) throw error;
      // The header is out: the archive cannot go on without this file's bytes, so the artifact fails.
      throw new StackbackError('BACKUP_FAILED', `reading ${absolute} failed: ${(error as Error).message}`);
    } finally {
      await handle.close();
    }
  }

  async function* visit(absolute: string, rootDevice: number | undefined): AsyncGenerator<Uint8Array> {
    options.signal?.throwIfAborted();
    if (excluded(absolute, options.exclude)) return;
    let stats: Stats;
    try {
      stats = await lstat(absolute);
    } catch (error) {
      return unreadable(absolute, error);
    }
    if (options.oneFileSystem && rootDevice !== undefined && stats.dev !== rootDevice) return;
    const device = rootDevice ?? stats.dev;
    if (stats.isFile()) return yield* file(absolute, stats);
    if (stats.isSymbolicLink()) {
      let target: string;
      try {
        target = await readlink(absolute);
      } catch (error) {
        return unreadable(absolute, error);
      }
      yield* header(absolute, stats, 'SymbolicLink', { linkpath: target });
      return record(absolute, stats, 'SymbolicLink', 0, { link: target });
    }
    if (!stats.isDirectory()) return void report.warnings.push(`${absolute}: skipped (${stats.isSocket() ? 'socket' : stats.isFIFO() ? 'fifo' : 'device'})`);
    let names: string[];
    try {
      names = await readdir(absolute);
    } catch (error) {
      return unreadable(absolute, error);
    }
    yield* header(absolute, stats, 'Directory', {});
    record(absolute, stats, 'Directory', 0, {});
    for (const name of names.sort()) yield* visit(path.join(absolute, name), device);
  }

  for (const root of options.paths.map((p) => path.resolve(p))) yield* visit(root, undefined);
  // The end of a tar archive: two zero blocks.
  yield Buffer.alloc(1024);
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
