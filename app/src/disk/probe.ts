/**
 * Is the data disk there? A folder is a mount point when it lives on another device than its
 * parent (st_dev differs). The daemon asks every 2 s; it needs no privilege for that.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

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

/**
 * Whether the block device a folder's filesystem lives on still exists. A USB disk pulled out
 * leaves its mount behind (still a mount point, every write failing) until the disk helper
 * detaches it, tens of seconds later on a slow machine; its device leaves /sys/dev/block at once.
 * Asked through sysfs, which the daemon's sandbox shows (PrivateDevices hides /dev, not /sys).
 * Filesystems without a block device (major 0: tmpfs, NFS, btrfs subvolumes) and a machine
 * without sysfs count as present.
 */
export function backingDevicePresent(dir: string, sysfs = '/sys'): boolean {
  try {
    const dev = statSync(dir, { bigint: true }).dev;
    // glibc's major() and minor() of a dev_t.
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    const blocks = join(sysfs, 'dev', 'block');
    if (major === 0n || !existsSync(blocks)) return true;
    return existsSync(join(blocks, `${major}:${minor}`));
  } catch {
    return false;
  }
}

export type MountProbe = (dir: string) => boolean;

/**
 * The probe the daemon uses: a disk is there when it is mounted and its device has not gone.
 * Tests cannot mount a filesystem, so under NODE_ENV=test only, BACKUPD_TEST_MOUNTED_MARKER names
 * a file whose existence stands for "mounted".
 */
export function mountProbe(env: NodeJS.ProcessEnv = process.env): MountProbe {
  const marker = env.NODE_ENV === 'test' ? env.BACKUPD_TEST_MOUNTED_MARKER : undefined;
  if (marker) return () => existsSync(marker);
  return (dir) => isMountPoint(dir) && backingDevicePresent(dir);
}
