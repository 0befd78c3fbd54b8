import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

/**
 * Crash-safe writes: the bytes go to a temp file in the same filesystem, are fsynced, and
 * only then renamed into place, so a reader sees the whole file or none of it. The rename
 * itself is made durable by fsyncing the folder (syncFolder), which callers batch.
 */
export async function writeFileDurably(tempDir: string, target: string, data: Uint8Array, options: { mode?: number } = {}): Promise<void> {
  const temp = path.join(tempDir, `${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(temp, 'wx', options.mode ?? 0o640);
  try {
    // An explicit mode holds past the umask (a file another user's service must read).
    if (options.mode !== undefined) await handle.chmod(options.mode);
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await fs.rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await fs.rename(temp, target);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
}

export async function syncFolder(folder: string): Promise<void> {
  const handle = await fs.open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** writeFileDurably plus the folder fsync: for single files such as manifests. */
export async function replaceFileDurably(tempDir: string, target: string, data: Uint8Array): Promise<void> {
  await writeFileDurably(tempDir, target, data);
  await syncFolder(path.dirname(target));
}
