import { closeSync, constants, existsSync, fchmodSync, fchownSync, fstatSync, futimesSync, lchownSync, lstatSync, openSync, statSync, type Stats } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry, Unpack } from 'tar';
import { StackbackError } from '../../errors.ts';
import { nameIds } from '../../system-accounts.ts';

/**
 * Unpacking a files archive without ever writing outside the restore root. The archive is
 * read twice: a scan that refuses the whole restore, before anything is written, if any
 * entry would escape (an absolute path, a `..`, a hard link out, a relative symlink that
 * resolves outside, anything written through a symlink in the archive, and in place, any
 * entry outside the paths the source backed up); then the extraction itself, which keeps
 * modes and mtimes, and owners when running as root, and stops at the first entry whose
 * way down crosses a symlink already on disk.
 * Absolute symlink targets are data (as in GNU tar) and are restored as they were. That is
 * why node-tar runs with preservePaths: without it, node-tar makes absolute symlink targets
 * relative (and refuses relative ones that pass through another symlink); its check of
 * folders on disk comes with that same option, so the check is done here instead.
 */
export interface ExtractOptions {
  /** Where the archive's `/` lands: `/` for an in-place restore, or --target-dir. */
  root: string;
  /** Only this original path and what is below it. */
  only?: string | undefined;
  /** In place: the paths the manifest recorded for the source. Nothing outside them is written. */
  recorded?: string[] | undefined;
}

const normalize = (entryPath: string) => entryPath.replace(/^\.\//, '').replace(/\/+$/, '');
const within = (root: string, target: string) => target === root || target.startsWith(root === '/' ? '/' : `${root}/`);

function selected(entryPath: string, only: string | undefined): boolean {
  if (only === undefined) return true;
  const original = `/${normalize(entryPath)}`;
  return original === only || original.startsWith(`${only}/`);
}

/** The recorded path an original path lies in (the deepest one), if any. */
export function recordedRoot(original: string, recorded: string[]): string | undefined {
  return recorded
    .map((p) => path.resolve(p))
    .filter((p) => within(p, original))
    .sort((a, b) => b.length - a.length)[0];
}

/**
 * What is known of the folders on the way down to entries: a real folder whose place in the
 * tree nobody else can change (it and every folder above it, from where the check starts,
 * belong to root or to us and are open to nobody else for writing) is checked once. Any
 * other folder is checked again before every entry below it is written: its owner (or
 * anyone who may write to the folder holding it) can swap it for a symlink at any time.
 */
export class FolderChecks {
  /** Folder → whether it is itself closed to others. Only folders whose place is stable are here. */
  private readonly stable = new Map<string, boolean>();

  /** A folder nobody but root and us can change the entries of. */
  private static closed(info: Stats): boolean {
    return (info.uid === 0 || info.uid === process.getuid?.()) && (info.mode & 0o022) === 0;
  }

  /** Whether a path to `dir` checked before still leads to that same folder (no one else can swap a folder on the way). */
  isStable(dir: string): boolean {
    return this.stable.has(dir);
  }

  /**
   * The first folder on the way from `base` down to `target` (excluded unless `inclusive`)
   * that is a symlink on disk. Folders not there yet are made by tar as real folders.
   */
  symlinkOnTheWay(base: string, target: string, inclusive: boolean): string | undefined {
    const last = inclusive ? target : path.dirname(target);
    if (!within(base, last)) return undefined;
    let parentClosed: boolean | undefined = this.stable.get(base);
    if (parentClosed === undefined) {
      // `base` is where the check starts: symlinks above it (and base itself) are the host's own layout.
      const info = statOrUndefined(base);
      if (!info) return undefined;
      parentClosed = FolderChecks.closed(info);
      this.stable.set(base, parentClosed);
    }
    let stableChain = true;
    let at = base;
    for (const part of path.relative(base, last).split('/').filter(Boolean)) {
      at = path.join(at, part);
      const known: boolean | undefined = stableChain ? this.stable.get(at) : undefined;
      if (known !== undefined) {
        parentClosed = known;
        continue;
      }
      let info: Stats;
      try {
        info = lstatSync(at);
      } catch {
        return undefined;
      }
      if (info.isSymbolicLink()) return at;
      if (!info.isDirectory()) return undefined;
      stableChain &&= parentClosed;
      parentClosed = FolderChecks.closed(info);
      if (stableChain) this.stable.set(at, parentClosed);
    }
    return undefined;
  }
}

function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

/** The first symlink on disk on the way from `base` down to `target` (see FolderChecks). */
export function symlinkOnTheWay(base: string, target: string, inclusive: boolean, checks = new FolderChecks()): string | undefined {
  return checks.symlinkOnTheWay(base, target, inclusive);
}

/** setuid/setgid only come back for root restoring owners too: a file another user could run as root, or as this user, is not made. */
const restorableMode = (mode: number) => (process.getuid?.() === 0 ? mode : mode & ~0o6000);

/** Problems that make the archive unsafe to unpack under `root`; empty when it is safe. */
export interface TopEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  uname?: string | undefined;
  gname?: string | undefined;
  mtime: Date;
}

export interface ArchiveScan {
  entries: number;
  problems: string[];
  /** First path segments: in place, one extraction pass each. */
  tops: string[];
  /** Entries that are a first segment themselves (e.g. /data): their metadata is applied by hand in place. */
  topEntries: TopEntry[];
}

export async function scanArchive(data: AsyncIterable<Uint8Array>, options: ExtractOptions): Promise<ArchiveScan> {
  const root = path.resolve(options.root);
  const problems: string[] = [];
  const symlinks: string[] = [];
  const tops = new Set<string>();
  const topEntries: TopEntry[] = [];
  let entries = 0;
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      entry.resume();
      const raw = entry.path;
      if (!selected(raw, options.only)) return;
      entries += 1;
      if (path.isAbsolute(raw)) return problems.push(`${raw}: absolute path`);
      if (raw.split('/').includes('..')) return problems.push(`${raw}: contains '..'`);
      const target = path.resolve(root, raw);
      if (!within(root, target)) return problems.push(`${raw}: lands outside ${root}`);
      if (options.recorded && !recordedRoot(`/${normalize(raw)}`, options.recorded)) {
        return problems.push(`${raw}: outside the paths this source backed up (${options.recorded.join(', ')})`);
      }
      tops.add(normalize(raw).split('/')[0]!);
      if (!normalize(raw).includes('/')) {
        topEntries.push({ name: normalize(raw), type: entry.type, mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0, uname: entry.uname, gname: entry.gname, mtime: entry.mtime ?? new Date() });
      }
      if (symlinks.some((link) => target.startsWith(`${link}/`))) return problems.push(`${raw}: would be written through a symlink`);
      if (entry.type === 'Link') {
        const linked = path.resolve(root, entry.linkpath ?? '');
        if (path.isAbsolute(entry.linkpath ?? '') || !within(root, linked)) problems.push(`${raw}: hard link to ${entry.linkpath} outside ${root}`);
        else if (symlinks.some((link) => linked === link || linked.startsWith(`${link}/`))) problems.push(`${raw}: hard link through a symlink (${entry.linkpath})`);
      }
      if (entry.type === 'SymbolicLink') {
        const linkpath = entry.linkpath ?? '';
        if (!path.isAbsolute(linkpath) && !within(root, path.resolve(path.dirname(target), linkpath))) problems.push(`${raw}: symlink to ${linkpath} points outside ${root}`);
        symlinks.push(target);
      }
    },
  });
  let failure: unknown;
  parser.on('error', (error: unknown) => (failure ??= error));
  for await (const chunk of data) parser.write(Buffer.from(chunk));
  await new Promise<void>((resolve) => parser.end(resolve));
  if (failure) throw new StackbackError('ARTIFACT_CORRUPT', `the files archive cannot be read: ${(failure as Error).message}`);
  return { entries, problems, tops: [...tops], topEntries };
}

/** What an extraction did beyond writing the entries. */
export interface ExtractResult {
  /** Entries given the owner their user or group name has on this host rather than the archive's numeric id (as root). */
  ownersMappedByName: number;
}

// node-tar's own steps, wrapped below: MKDIR makes the folders on an entry's way down, MAKEFS
// writes the entry itself once its parents exist and whatever was in its place is gone.
const tarStep = (description: string): symbol => {
  const found = Object.getOwnPropertySymbols(Unpack.prototype).find((s) => s.description === description);
  if (!found) throw new StackbackError('RESTORE_FAILED', `this node-tar has no '${description}' step: files restores need the node-tar version package.json names`);
  return found;
};

type TarCallback = (error?: Error | null) => void;
interface TarSteps {
  mkdir(dir: string, mode: number, cb: TarCallback): void;
  makeFs(error: Error | null, entry: ReadEntry, done: TarCallback): void;
}

/** /proc/self/fd/<n>/<name> opens <name> in the folder open as <n> (openat, which node lacks). */
const PROC_FD = '/proc/self/fd';

/**
 * Opens `target`, never following a symlink on the way from `base` (which is trusted) down:
 * each folder is opened through the one above it, the last step with O_NOFOLLOW. Without
 * /proc, only the last step is protected.
 */
function openBelow(base: string, target: string, flags: number): number {
  const parts = path.relative(base, target).split('/').filter(Boolean);
  if (parts.length === 0) return openSync(base, flags);
  if (!existsSync(PROC_FD)) return openSync(target, flags | constants.O_NOFOLLOW);
  let dir = openSync(base, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    for (const part of parts.slice(0, -1)) {
      const next = openSync(`${PROC_FD}/${dir}/${part}`, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
      closeSync(dir);
      dir = next;
    }
    return openSync(`${PROC_FD}/${dir}/${parts.at(-1)!}`, flags | constants.O_NOFOLLOW);
  } finally {
    closeSync(dir);
  }
}

/** Runs `fn` on the folder `parent` of `target`, opened as openBelow does, and the last name. */
function inParentBelow<T>(base: string, target: string, fn: (parentPath: string) => T): T {
  if (!existsSync(PROC_FD)) return fn(path.dirname(target));
  const parent = path.dirname(target);
  const fd = within(base, parent) ? openBelow(base, parent, constants.O_RDONLY | constants.O_DIRECTORY) : openSync(parent, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return fn(`${PROC_FD}/${fd}`);
  } finally {
    closeSync(fd);
  }
}

interface Owner {
  uid: number;
  gid: number;
  /** The archive's numeric ids were replaced by this host's ids of the recorded names. */
  mapped: boolean;
}

interface FolderMeta {
  path: string;
  mode: number;
  owner: Owner | undefined;
  atime: Date;
  mtime: Date | undefined;
}

/**
 * Unpacks the (scanned) archive. Into `/` (in place), one pass per top-level folder with
 * that folder as the working directory: tar refuses `/` itself as an extraction target.
 *
 * Nothing here follows a symlink a user may put in place of a restored entry while the
 * restore runs (a user who owns a folder inside the tree can swap what is in it at any time):
 * - tar opens files with O_NOFOLLOW; owner, mode and time are set on that descriptor before
 *   tar closes it (tar's own chown, chmod and utimes go by path and are turned off);
 * - folders get theirs at the end, each opened through its parent with O_NOFOLLOW;
 * - just before tar makes a folder or writes an entry, its way down is checked for symlinks
 *   again, unless every folder on it is closed to others (FolderChecks).
 * - below such a folder, a file's owner and mode are set only if the file is still where it
 *   should be (checked through its parent, opened as above); otherwise the restore fails.
 * What remains: node has no openat(), so tar's own mkdir/open/symlink/link resolve the path
 * from the top; a user who can write to a folder on that way can swap a folder below it for
 * a symlink between that last check and the call (microseconds; tar may have several
 * entries in flight), and those entries are created or truncated and written through the
 * link, as root, without their owner or mode (for a file, the restore then fails). Only folders such a
 * user can write to are exposed, and no entry is started below them after that.
 */
export async function extractArchive(open: () => AsyncIterable<Uint8Array>, options: ExtractOptions, scan: Pick<ArchiveScan, 'tops' | 'topEntries'>): Promise<ExtractResult> {
  const root = path.resolve(options.root);
  const passes = root === '/' ? scan.tops.map((top) => ({ cwd: `/${top}`, strip: 1, prefix: `${top}/` })) : [{ cwd: root, strip: 0, prefix: '' }];
  const asRoot = process.getuid?.() === 0;
  const users = asRoot ? nameIds('/etc/passwd') : new Map<string, number>();
  const groups = asRoot ? nameIds('/etc/group') : new Map<string, number>();
  let ownersMappedByName = 0;
  /** As root, an entry's owner: by name where this host knows the name (as GNU tar does), else the archive's ids. */
  const ownerOf = (entry: { uid?: number | undefined; gid?: number | undefined; uname?: string | undefined; gname?: string | undefined }): Owner | undefined => {
    if (!asRoot) return undefined;
    const uid = (entry.uname ? users.get(entry.uname) : undefined) ?? entry.uid ?? 0;
    const gid = (entry.gname ? groups.get(entry.gname) : undefined) ?? entry.gid ?? 0;
    return { uid, gid, mapped: uid !== (entry.uid ?? 0) || gid !== (entry.gid ?? 0) };
  };
  // Folders get their mode, owner and time at the end, deepest first: unpacking a folder's
  // children touches its mtime, and a folder closed to its owner must still take them.
  const folders: FolderMeta[] = [];
  const checks = new FolderChecks();
  // Symlinks on disk are looked for below --target-dir; in place, from each entry's recorded path down (none above it).
  const baseOf = (onDisk: string): string | undefined => {
    if (root !== '/') return root;
    const recorded = recordedRoot(onDisk, options.recorded ?? []);
    return recorded === undefined ? undefined : path.dirname(recorded);
  };
  let failure: Error | undefined;
  const refuse = (target: string, link: string) => (failure ??= new Error(`refused to write ${target} through ${link}, a symlink on disk: nothing past it was written`));
  const linkOnTheWay = (target: string, inclusive: boolean) => {
    const base = baseOf(target);
    return base === undefined ? undefined : checks.symlinkOnTheWay(base, target, inclusive);
  };

  /** On the descriptor tar wrote a file through, before tar closes it: owner, then mode (a chown clears setuid/setgid), then times. */
  const settleFile = (fd: number, entry: ReadEntry) => {
    const info = fstatSync(fd);
    const target = String(entry.absolute);
    if (!info.isFile()) throw new Error(`${target} is not a regular file`);
    // Below a folder others can change, tar's open may have raced a swap on the way: owner and mode go only to the file that is where it should be.
    const base = baseOf(target);
    if (base !== undefined && !checks.isStable(path.dirname(target))) {
      let there: Stats | undefined;
      try {
        there = inParentBelow(base, target, (parent) => lstatSync(path.join(parent, path.basename(target))));
      } catch {
        there = undefined;
      }
      if (there?.dev !== info.dev || there.ino !== info.ino) throw new Error(`a folder on its way was swapped while it was written, it is not where it should be`);
    }
    const owner = ownerOf(entry);
    let chowned = false;
    if (owner && (info.uid !== owner.uid || info.gid !== owner.gid)) {
      fchownSync(fd, owner.uid, owner.gid);
      chowned = true;
      if (owner.mapped) ownersMappedByName += 1;
    }
    const mode = entry.mode ?? 0o644;
    if (chowned || (info.mode & 0o7777) !== mode) fchmodSync(fd, mode);
    if (entry.mtime) futimesSync(fd, entry.atime ?? new Date(), entry.mtime);
  };

  /** Tar writes a file by piping its entry into a write stream: that stream's descriptor is where the file's metadata goes. */
  const watchFile = (entry: ReadEntry) => {
    const pipe = entry.pipe.bind(entry);
    entry.pipe = ((stream: NodeJS.EventEmitter & { fd?: number }, pipeOptions?: unknown) => {
      // Before tar's own 'finish' handler, which closes the descriptor.
      stream.prependListener('finish', () => {
        try {
          if (typeof stream.fd === 'number') settleFile(stream.fd, entry);
        } catch (error) {
          failure ??= new Error(`${String(entry.absolute)}: its mode, owner and time could not be set: ${(error as Error).message}`);
        }
      });
      return pipe(stream as never, pipeOptions as never);
    }) as typeof entry.pipe;
    return undefined;
  };

  /** As root, a symlink's owner (tar leaves symlinks to the restoring user): lchown through its parent, opened without following links. */
  const settleSymlink = (entry: ReadEntry) => {
    const owner = ownerOf(entry);
    if (!owner || (owner.uid === process.getuid?.() && owner.gid === process.getgid?.())) return;
    const target = String(entry.absolute);
    inParentBelow(baseOf(target) ?? '/', target, (parent) => {
      const inside = path.join(parent, path.basename(target));
      if (!lstatSync(inside).isSymbolicLink()) return;
      lchownSync(inside, owner.uid, owner.gid);
      if (owner.mapped) ownersMappedByName += 1;
    });
  };

  const MKDIR = tarStep('mkdir');
  const MAKEFS = tarStep('makeFs');
  for (const pass of passes) {
    await mkdir(pass.cwd, { recursive: true });
    const unpack = new Unpack({
      cwd: pass.cwd,
      strip: pass.strip,
      strict: true,
      // The scan already refused absolute paths and '..'; this keeps absolute symlink targets as they were.
      preservePaths: true,
      // tar's chmod, chown and utimes go by path and follow symlinks: all of that is done here.
      chmod: false,
      noMtime: true,
      preserveOwner: false,
      transform: watchFile,
      filter: (entryPath: string, entry: ReadEntry | Stats) => {
        const wanted = normalize(entryPath).startsWith(pass.prefix) && selected(entryPath, options.only);
        if (!wanted || failure) return false;
        const read = entry as ReadEntry;
        if (read.mode !== undefined) read.mode = restorableMode(read.mode & 0o7777);
        if (read.type === 'Directory') {
          const target = path.join(pass.cwd, normalize(entryPath).split('/').slice(pass.strip).join('/'));
          folders.push({ path: target, mode: read.mode ?? 0o755, owner: ownerOf(read), atime: read.atime ?? new Date(), mtime: read.mtime });
        }
        return true;
      },
      onwarn: (code: string, message: string) => {
        if (code !== 'TAR_ENTRY_INFO') failure ??= new Error(message);
      },
    }) as Unpack & Record<symbol, unknown>;
    const steps: TarSteps = { mkdir: (unpack[MKDIR] as TarSteps['mkdir']).bind(unpack), makeFs: (unpack[MAKEFS] as TarSteps['makeFs']).bind(unpack) };
    // Right before tar makes a folder or writes an entry: its way down, checked again (see FolderChecks).
    unpack[MKDIR] = (dir: string, mode: number, cb: TarCallback) => {
      const link = linkOnTheWay(dir, true);
      if (link !== undefined) return cb(refuse(dir, link));
      steps.mkdir(dir, mode, cb);
    };
    unpack[MAKEFS] = (error: Error | null, entry: ReadEntry, done: TarCallback) => {
      if (error || failure) return steps.makeFs(error ?? failure!, entry, done);
      const target = String(entry.absolute);
      const link = linkOnTheWay(target, entry.type === 'Directory') ?? (entry.type === 'Link' ? linkOnTheWay(path.resolve(pass.cwd, entry.linkpath ?? ''), false) : undefined);
      if (link !== undefined) return steps.makeFs(refuse(target, link), entry, done);
      if (entry.type !== 'SymbolicLink') return steps.makeFs(null, entry, done);
      steps.makeFs(null, entry, (doneError) => {
        try {
          if (!doneError) settleSymlink(entry);
        } catch (settleError) {
          failure ??= new Error(`${target}: its owner could not be set: ${(settleError as Error).message}`);
        }
        done(doneError);
      });
    };
    await pipeline(Readable.from(open()), unpack).catch((error: unknown) => {
      failure ??= error as Error;
    });
    if (failure) throw new StackbackError('RESTORE_FAILED', `unpacking failed: ${failure.message}`);
  }
  // In place, a first-segment folder (/data) is each pass's working directory: tar never sees
  // its own entry, so its mode, owner and time are applied here too.
  if (root === '/') {
    for (const top of scan.topEntries.filter((t) => t.type === 'Directory' && selected(t.name, options.only))) {
      folders.push({ path: `/${top.name}`, mode: restorableMode(top.mode & 0o7777), owner: ownerOf(top), atime: new Date(), mtime: top.mtime });
    }
  }
  folders.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const folder of folders) {
    let fd: number;
    try {
      fd = openBelow(baseOf(folder.path) ?? '/', folder.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'ELOOP' || code === 'ENOTDIR' ? 'it, or a folder above it, is a symlink now' : (error as Error).message;
      throw new StackbackError('RESTORE_FAILED', `unpacked, but ${folder.path} did not get its mode, owner and time: ${why}`);
    }
    try {
      const info = fstatSync(fd);
      let chowned = false;
      if (folder.owner && (info.uid !== folder.owner.uid || info.gid !== folder.owner.gid)) {
        fchownSync(fd, folder.owner.uid, folder.owner.gid);
        chowned = true;
        if (folder.owner.mapped) ownersMappedByName += 1;
      }
      if (chowned || (info.mode & 0o7777) !== folder.mode) fchmodSync(fd, folder.mode);
      if (folder.mtime) futimesSync(fd, folder.atime, folder.mtime);
    } finally {
      closeSync(fd);
    }
  }
  return { ownersMappedByName };
}
