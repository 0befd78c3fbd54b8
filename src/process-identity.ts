import { readFileSync } from 'node:fs';

/**
 * Who a process is, in a way that survives pid reuse and reboots: the pid, the kernel's boot
 * id, and the process's start time (clock ticks since boot, /proc/<pid>/stat field 22). A
 * pid alone lies after a power loss (the number is soon given to an unrelated process) and a
 * host name alone lies after a disaster recovery to a machine with another name.
 */
export interface ProcessIdentity {
  pid: number;
  /** /proc/sys/kernel/random/boot_id; absent in records written before it was kept. */
  boot_id?: string;
  /** Start time of the process in clock ticks since boot; absent where /proc is not readable. */
  start_time?: string;
}

let bootIdCache: string | undefined;

export function currentBootId(): string | undefined {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      bootIdCache = '';
    }
  }
  return bootIdCache || undefined;
}

/** Start time of a process (undefined if it does not exist or /proc cannot tell). */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function currentProcessIdentity(): ProcessIdentity {
  const bootId = currentBootId();
  const startTime = processStartTime(process.pid);
  return { pid: process.pid, ...(bootId ? { boot_id: bootId } : {}), ...(startTime ? { start_time: startTime } : {}) };
}

/** Whether a process with this pid exists on this machine (EPERM: it exists but is not ours). */
export function pidExists(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process a record names is still running. A record from another boot is dead
 * (its boot ended, or it was written on another machine: a repository is never shared live
 * between hosts). Within this boot the pid must exist with the recorded start time (when both
 * can be read).
 * `legacySameHost` decides for records without a boot id (written by older versions): only
 * then does the pid alone count, and only on the host that wrote it.
 */
export function processAlive(record: ProcessIdentity, legacySameHost: boolean): boolean {
  if (record.boot_id === undefined) return legacySameHost ? pidExists(record.pid) : true;
  if (record.boot_id !== currentBootId()) return false;
  if (!pidExists(record.pid)) return false;
  // A start time that cannot be read (/proc mounted with hidepid) proves nothing: the pid lives.
  const startTime = processStartTime(record.pid);
  return record.start_time === undefined || startTime === undefined || record.start_time === startTime;
}
