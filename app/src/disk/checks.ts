/**
 * Whether a disk may be adopted. The same rules run twice: in the daemon when the owner asks
 * (against the helper's last listing, for a quick clear answer) and in the root helper right
 * before it writes (against a fresh lsblk), because only the second one protects the disk.
 */
import { backupdPartition, mountedAt, type DiskView } from './inventory.js';

export class DiskError extends Error {
  override name = 'DiskError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** What the owner must type to confirm: the serial, or the path of a disk that has none. */
export const confirmationOf = (d: DiskView) => d.serial ?? d.path;

export interface AdoptAsk {
  disk: string;
  confirm: string;
  format: boolean;
}

export function checkAdoption(
  disks: DiskView[],
  ask: AdoptAsk,
  ctx: { dataDiskMounted: boolean; adoptionRunning: boolean },
): DiskView {
  if (ctx.adoptionRunning)
    throw new DiskError(
      409,
      'adoption_running',
      'An adoption is already under way.',
      'Wait for it to finish (GET /api/disks shows its state), then try again.',
    );
  const disk = disks.find((d) => d.id === ask.disk);
  if (!disk)
    throw new DiskError(
      409,
      'unknown_disk',
      `No disk with id "${ask.disk}" is connected.`,
      'GET /api/disks lists the disks by id; a disk plugged in a moment ago appears within a few seconds.',
    );
  if (disk.system)
    throw new DiskError(
      409,
      'system_disk',
      `${disk.path} (${disk.id}) holds the running system; it cannot be the data disk.`,
      'Choose another disk: plug in the USB or SATA disk meant for the backups.',
    );
  if (ask.confirm.trim() !== confirmationOf(disk))
    throw new DiskError(
      409,
      'confirmation_mismatch',
      `The confirmation does not name disk ${disk.id}: nothing was changed.`,
      disk.serial
        ? `Type the serial of the disk you mean exactly as listed (check it on the disk's label); it proves which disk is ${ask.format ? 'erased' : 'adopted'}.`
        : `This disk reports no serial: type its path exactly as listed (${disk.path}).`,
    );
  const mounted = mountedAt(disk);
  if (mounted.length)
    throw new DiskError(
      409,
      'disk_mounted',
      `${disk.path} is in use (mounted at ${mounted.join(', ')}); it cannot be adopted.`,
      'Unmount it first, or choose another disk.',
    );
  if (ctx.dataDiskMounted)
    throw new DiskError(
      409,
      'data_disk_present',
      'A data disk is already mounted; the appliance uses one data disk.',
      'To replace it, shut the appliance down, unplug the old disk, start it again and adopt the new one.',
    );
  if (!ask.format && !backupdPartition(disk))
    throw new DiskError(
      409,
      'not_a_backupd_disk',
      `${disk.path} carries no backupd filesystem (ext4 labelled "backupd"), so it cannot be adopted as it is.`,
      'Adopt it with "format": true, which ERASES everything on it, or choose the disk that holds your backups.',
    );
  return disk;
}
