import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StackbackError } from '../errors.ts';
import { currentProcessIdentity, type ProcessIdentity, processAlive } from '../process-identity.ts';

/**
 * Repository locks, as files in <repo>/locks:
 * - one exclusive writer lock (`writer.lock`), taken by anything that adds or removes data;
 * - any number of reader locks (`read-*.lock`), taken by restore and verify, so that a
 *   command that removes chunks (delete, prune) waits until no reader is using them.
 * A lock names its holder (pid, boot id, process start time, host). A lock whose holder is
 * gone — a dead pid, a pid reused by another process, or a boot that has ended (a power
 * loss, a disaster recovery onto another machine) — is stale and is taken over safely: it is
 * renamed away first (only one taker's rename can succeed), then recreated with O_EXCL.
 */
export interface LockInfo extends ProcessIdentity {
  host: string;
  started_at: string;
  command: string;
  /** Set on a writer lock whose holder removes chunks (delete, prune): readers wait for it. */
  removes?: boolean;
}

const POLL_MS = 200;

function describe(info: LockInfo): string {
  return `pid ${info.pid} on ${info.host} since ${info.started_at} (${info.command})`;
}

function isStale(info: LockInfo): boolean {
  // pid 0: an unreadable lock file. Locks are created whole (tryCreate), so that is debris.
  return !processAlive(info, info.host === os.hostname());
}

async function readLock(file: string): Promise<LockInfo | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as LockInfo;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    // Lock files appear whole (written aside, then linked), so an unreadable one is debris.
    return { pid: 0, host: os.hostname(), started_at: 'unknown', command: 'unreadable lock file' };
  }
}

/**
 * Creates the lock file whole or not at all: the content is written to a temp file and
 * hard-linked to the lock name, which fails if the name exists. A crash can never leave a
 * half-written lock behind.
 */
async function tryCreate(file: string, info: LockInfo): Promise<boolean> {
  const temp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}.new`;
  await fs.writeFile(temp, JSON.stringify(info), { mode: 0o640 });
  try {
    await fs.link(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/**
 * Removes the lock `stale` describes. It is renamed aside first (one taker wins the
 * rename); if what was renamed is no longer that stale lock (another taker replaced it
 * with a live one in between), it is put back.
 */
async function removeStale(file: string, stale: LockInfo): Promise<void> {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await fs.rename(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  const moved = await readLock(aside);
  if (moved && (moved.pid !== stale.pid || moved.started_at !== stale.started_at)) {
    await fs.link(aside, file).catch(() => undefined);
  }
  await fs.rm(aside, { force: true });
}

export interface Lock {
  readonly file: string;
  release(): Promise<void>;
}

function newInfo(command: string): LockInfo {
  return { ...currentProcessIdentity(), host: os.hostname(), started_at: new Date().toISOString(), command };
}

function releaser(file: string): Lock {
  let released = false;
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      await fs.rm(file, { force: true });
    },
  };
}

/** Live reader locks (stale ones are removed on the way). */
async function liveReaders(locksDir: string): Promise<LockInfo[]> {
  const live: LockInfo[] = [];
  for (const name of await fs.readdir(locksDir)) {
    if (!name.startsWith('read-') || !name.endsWith('.lock')) continue;
    const file = path.join(locksDir, name);
    const info = await readLock(file);
    if (!info) continue;
    if (isStale(info)) await removeStale(file, info);
    else live.push(info);
  }
  return live;
}

export interface WriterLockOptions {
  command: string;
  timeoutMs: number;
  /** Also wait until no reader holds the repository (for commands that remove chunks). */
  exclusiveOfReaders?: boolean;
  signal?: AbortSignal;
}

export async function acquireWriterLock(locksDir: string, options: WriterLockOptions): Promise<Lock> {
  const file = path.join(locksDir, 'writer.lock');
  const deadline = Date.now() + options.timeoutMs;
  const info = { ...newInfo(options.command), ...(options.exclusiveOfReaders ? { removes: true } : {}) };
  for (;;) {
    options.signal?.throwIfAborted();
    if (await tryCreate(file, info)) break;
    const holder = await readLock(file);
    if (holder && isStale(holder)) {
      await removeStale(file, holder);
      continue;
    }
    if (Date.now() >= deadline) {
      throw new StackbackError(
        'REPO_LOCKED',
        holder ? `repository locked by ${describe(holder)}` : 'repository locked by another process',
        'wait for that command to finish, or raise lock_timeout; a lock left by a process that is gone (or by an earlier boot) is taken over automatically',
      );
    }
    await sleep(POLL_MS);
  }
  const lock = releaser(file);
  if (!options.exclusiveOfReaders) return lock;
  for (;;) {
    const readers = await liveReaders(locksDir);
    if (readers.length === 0) return lock;
    if (Date.now() >= deadline || options.signal?.aborted) {
      await lock.release();
      throw new StackbackError('REPO_LOCKED', `repository is being read by ${readers.map(describe).join(', ')}`, 'wait for the restore or verify to finish, or raise lock_timeout');
    }
    await sleep(POLL_MS);
  }
}

/**
 * A reader lock (restore, verify). Writers that only add (backups) never conflict with it;
 * a writer that removes chunks waits for the readers present when it starts, and a reader
 * arriving while such a writer works waits for it, up to `timeoutMs`.
 */
export async function acquireReaderLock(locksDir: string, command: string, timeoutMs: number): Promise<Lock> {
  const file = path.join(locksDir, `read-${process.pid}-${randomBytes(4).toString('hex')}.lock`);
  const writer = path.join(locksDir, 'writer.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await tryCreate(file, newInfo(command));
    const holder = await readLock(writer);
    if (!holder?.removes || isStale(holder)) return releaser(file);
    // Step back so the remover is not kept waiting for us, then try again.
    await fs.rm(file, { force: true });
    if (Date.now() >= deadline) {
      throw new StackbackError('REPO_LOCKED', `repository is having backups removed by ${describe(holder)}`, 'wait for that delete or prune to finish, or raise lock_timeout');
    }
    await sleep(POLL_MS);
  }
}

/**
 * The daemon's lock (`daemon.lock`): one daemon per repository. Never waits; a lock left by
 * a daemon that is gone is taken over.
 */
export async function acquireDaemonLock(locksDir: string): Promise<Lock> {
  const file = path.join(locksDir, 'daemon.lock');
  for (;;) {
    if (await tryCreate(file, newInfo('daemon'))) return releaser(file);
    const holder = await readLock(file);
    if (holder && isStale(holder)) {
      await removeStale(file, holder);
      continue;
    }
    throw new StackbackError('DAEMON_RUNNING', holder ? `another stackback daemon uses this repository: ${describe(holder)}` : 'another stackback daemon uses this repository', 'stop it first (systemctl stop stackback), or point this one at another repository');
  }
}
