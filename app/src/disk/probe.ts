/**
 * Is the data disk there? A folder is a mount point when it lives on another device than its
 * parent (st_dev differs). The daemon asks every 2 s; it needs no privilege for that.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export function isMountPoint(dir: string): boolean {
  try {
    const abs = resolve(dir);
    const parent = dirname(abs);
    if (parent === abs) return true; // "/" is always mounted
    return statSync(abs).dev !== statSync(parent).dev;
  } catch {
    return false; // missing, or unreadable: nothing usable is mounted
  }
}

export type MountProbe = (dir: string) => boolean;

/**
 * The probe the daemon uses. Tests cannot mount a filesystem, so under NODE_ENV=test only,
 * BACKUPD_TEST_MOUNTED_MARKER names a file whose existence stands for "mounted".
 */
export function mountProbe(env: NodeJS.ProcessEnv = process.env): MountProbe {
  const marker = env.NODE_ENV === 'test' ? env.BACKUPD_TEST_MOUNTED_MARKER : undefined;
  if (marker) return () => existsSync(marker);
  return isMountPoint;
}
