import { getPriority, setPriority } from 'node:os';

/**
 * Lowers the calling thread's CPU priority to `nice`, never raises it: on Linux,
 * setpriority() of "process 0" changes the calling thread only (elsewhere it would change the
 * whole process, so the priority is left alone there), and a process already running nicer
 * (`nice -n 15 stackback backup`) has no right to go back up — asking would fail with EACCES.
 */
export function lowerThreadPriority(nice: number): void {
  if (process.platform !== 'linux' || nice <= 0) return;
  try {
    if (getPriority() < nice) setPriority(nice);
  } catch {
    // Priority is a courtesy to the other work on the machine: never a reason to fail.
  }
}
