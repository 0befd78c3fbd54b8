import { lstatSync, type Stats } from 'node:fs';
import { chmod, lchown, mkdir, utimes } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as extractTar, Parser, type ReadEntry } from 'tar';
import { StackbackError } from '../../errors.ts';
import { type FileEntry, idNames } from './archive.ts';

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
 * The first folder on the way from `base` down to `target` (excluded unless `inclusive`)
 * that is a symlink on disk. Folders not there yet are made by tar as real folders; real
 * folders already checked are remembered in `checked`.
 */
export function symlinkOnTheWay(base: string, target: string, inclusive: boolean, checked: Set<string>): string | undefined {
  const last = inclusive ? target : path.dirname(target);
  let at = base;
  for (const part of path.relative(base, last).split('/').filter(Boolean)) {
    at = path.join(at, part);
    if (checked.has(at)) continue;
    let info: Stats;
    try {
      info = lstatSync(at);
    } catch {
      return undefined;
    }
    if (info.isSymbolicLink()) return at;
    if (info.isDirectory()) checked.add(at);
  }
  return undefined;
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
        topEntries.push({ name: normalize(raw), type: entry.type, mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0, mtime: entry.mtime ?? new Date() });
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

/**
 * Unpacks the (scanned) archive. Into `/` (in place), one pass per top-level folder with
 * that folder as the working directory: tar refuses `/` itself as an extraction target.
 */
export async function extractArchive(open: () => AsyncIterable<Uint8Array>, options: ExtractOptions, scan: Pick<ArchiveScan, 'tops' | 'topEntries'>): Promise<void> {
  const root = path.resolve(options.root);
  const passes = root === '/' ? scan.tops.map((top) => ({ cwd: `/${top}`, strip: 1, prefix: `${top}/` })) : [{ cwd: root, strip: 0, prefix: '' }];
  // Unpacking a folder's children touches its mtime: folders get theirs back at the end, deepest first.
  const directories: { path: string; mtime: Date }[] = [];
  const checked = new Set<string>();
  // tar creates files and folders through the umask and never chmods a new file; writing to a
  // file, or giving it to its owner, clears setuid/setgid. Modes those change are set at the end.
  const umask = process.umask();
  const modes: { path: string; mode: number }[] = [];
  // Symlinks on disk are looked for below --target-dir; in place, from each entry's recorded path down.
  const baseOf = (original: string) => (root === '/' ? path.dirname(recordedRoot(original, options.recorded ?? []) ?? '/') : root);
  let failure: unknown;
  for (const pass of passes) {
    await mkdir(pass.cwd, { recursive: true });
    const extractor = extractTar({
      cwd: pass.cwd,
      strip: pass.strip,
      strict: true,
      // The scan already refused absolute paths and '..'; this keeps absolute symlink targets as they were.
      preservePaths: true,
      chmod: true,
      processUmask: 0,
      preserveOwner: process.getuid?.() === 0,
      filter: (entryPath: string, entry: ReadEntry | Stats) => {
        const wanted = normalize(entryPath).startsWith(pass.prefix) && selected(entryPath, options.only);
        if (!wanted || failure) return false;
        const read = entry as ReadEntry;
        const onDisk = (original: string) => path.join(pass.cwd, normalize(original).split('/').slice(pass.strip).join('/'));
        const target = onDisk(entryPath);
        const base = baseOf(`/${normalize(entryPath)}`);
        // A folder entry where a symlink is would have its children written through it; a hard link reads through its target's folders.
        const link =
          symlinkOnTheWay(base, target, read.type === 'Directory', checked) ??
          (read.type === 'Link' ? symlinkOnTheWay(base, onDisk(read.linkpath ?? ''), false, checked) : undefined);
        if (link !== undefined) {
          failure = new Error(`refused to write ${target} through ${link}, a symlink on disk: nothing past it was written`);
          return false;
        }
        if (read.mode !== undefined) {
          read.mode = restorableMode(read.mode & 0o7777);
          if ((read.type === 'File' || read.type === 'Directory') && read.mode & (0o7000 | umask)) modes.push({ path: target, mode: read.mode });
        }
        if (read.type === 'Directory' && read.mtime) directories.push({ path: target, mtime: read.mtime });
        return true;
      },
      onwarn: (code: string, message: string) => {
        if (code !== 'TAR_ENTRY_INFO') failure ??= new Error(message);
      },
    });
    await pipeline(Readable.from(open()), extractor);
    if (failure) throw new StackbackError('RESTORE_FAILED', `unpacking failed: ${(failure as Error).message}`);
  }
  // In place, a first-segment folder (/data) is each pass's working directory: tar never sees
  // its own entry, so its mode, owner and time are applied here.
  if (root === '/') {
    for (const top of scan.topEntries.filter((t) => t.type === 'Directory' && selected(t.name, options.only))) {
      await chmod(`/${top.name}`, restorableMode(top.mode & 0o7777));
      if (process.getuid?.() === 0) await lchown(`/${top.name}`, top.uid, top.gid);
      directories.push({ path: `/${top.name}`, mtime: top.mtime });
    }
  }
  for (const { path: target, mode } of modes) await chmod(target, mode);
  directories.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
  for (const dir of directories) await utimes(dir.path, dir.mtime, dir.mtime);
}

/**
 * As root, gives restored entries their owners by name where this host knows the name
 * under another id (as GNU tar does); otherwise the numeric ids from the archive stay.
 */
export async function applyOwnerNames(root: string, files: FileEntry[], only: string | undefined): Promise<number> {
  if (process.getuid?.() !== 0) return 0;
  const users = new Map([...idNames('/etc/passwd')].map(([id, name]) => [name, id]));
  const groups = new Map([...idNames('/etc/group')].map(([id, name]) => [name, id]));
  let changed = 0;
  for (const file of files) {
    if (only !== undefined && file.path !== only && !file.path.startsWith(`${only}/`)) continue;
    const uid = (file.user !== undefined ? users.get(file.user) : undefined) ?? file.uid;
    const gid = (file.group !== undefined ? groups.get(file.group) : undefined) ?? file.gid;
    if (uid === file.uid && gid === file.gid) continue;
    await lchown(path.join(root, file.path), uid, gid).catch(() => undefined);
    // A change of owner clears setuid/setgid: root restoring owners keeps them.
    if (file.mode & 0o6000 && file.type !== 'SymbolicLink') await chmod(path.join(root, file.path), file.mode & 0o7777).catch(() => undefined);
    changed += 1;
  }
  return changed;
}
