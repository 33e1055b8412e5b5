/**
 * The root side of the data disk: `backupd disk scan` and `backupd disk adopt-pending`, run by
 * root oneshot units (udev and a path unit start them), never by the sandboxed daemon. Every
 * command goes through a small adapter (system.ts for real, a fake in the unit tests), and every
 * step that changes a disk is logged before it runs.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { checkAdoption, DiskError } from './checks.js';
import { backupdPartition, buildInventory, parseLsblk, type DiskView } from './inventory.js';
import {
  pendingRequests,
  readAdoption,
  removeRequest,
  spoolPaths,
  writeAdoption,
  writeJsonAtomic,
  type AdoptRequest,
  type AdoptionView,
  type DataDiskView,
  type DisksFile,
} from './spool.js';

/** The commands the helper runs; each one a single program with fixed arguments. */
export interface DiskSystem {
  lsblk(): Promise<unknown>;
  /** Replaces the partition table with one GPT partition over the disk. */
  partition(disk: string): Promise<void>;
  /** Waits for udev to create the new partition's device node. */
  settle(): Promise<void>;
  mkfs(partition: string, owner: { uid: number; gid: number }): Promise<void>;
  fsUuid(partition: string): Promise<string>;
  mount(device: string, dir: string): Promise<void>;
  unmountLazy(dir: string): Promise<void>;
  isMountPoint(dir: string): boolean;
  /** The device mounted at dir, from /proc/self/mountinfo. */
  mountSource(dir: string): string | undefined;
  exists(path: string): boolean;
  userIds(name: string): { uid: number; gid: number };
  mkdirOwned(path: string, owner: { uid: number; gid: number }): void;
}

export interface HelperOptions {
  dataDisk: string;
  spool: string;
  /** Where the adopted filesystem's UUID is kept (on the system disk). */
  uuidFile: string;
  /** The daemon's user, owner of the new filesystem. */
  user: string;
  log: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export const DEFAULT_UUID_FILE = '/etc/backupd/data-disk.uuid';
const MOUNT_OPTIONS = 'noatime,nodev,nosuid';

export function readUuidFile(file: string): string | null {
  try {
    const v = readFileSync(file, 'utf8').trim();
    return /^[0-9A-Fa-f-]{8,64}$/.test(v) ? v : null;
  } catch {
    return null;
  }
}

async function inventory(sys: DiskSystem, uuid: string | null): Promise<DiskView[]> {
  return buildInventory(parseLsblk(await sys.lsblk()), { adoptedUuid: uuid });
}

function dataDiskState(sys: DiskSystem, o: HelperOptions, uuid: string | null): DataDiskView {
  const mounted = sys.isMountPoint(o.dataDisk);
  return {
    mount_point: o.dataDisk,
    mounted,
    uuid,
    device: mounted ? (sys.mountSource(o.dataDisk) ?? null) : null,
  };
}

/**
 * `backupd disk scan`: mounts the adopted disk when it is there and not mounted, lazily
 * unmounts it when its device is gone, and writes what it sees to disks.json.
 */
export async function scan(sys: DiskSystem, o: HelperOptions): Promise<DisksFile> {
  const uuid = readUuidFile(o.uuidFile);
  let disks = await inventory(sys, uuid);
  let changed = false;
  if (sys.isMountPoint(o.dataDisk)) {
    const source = sys.mountSource(o.dataDisk);
    if (source && source.startsWith('/dev/') && !sys.exists(source)) {
      // The disk was unplugged: the mount is dead. A lazy unmount detaches it now and lets the
      // daemon close its files; it has already gone to standby (it checks every 2 s).
      o.log(
        'warn',
        `the data disk's device ${source} is gone: unmounting ${o.dataDisk} (umount -l)`,
      );
      await sys.unmountLazy(o.dataDisk);
      changed = true;
    }
  } else if (uuid) {
    const part = disks.flatMap((d) => d.partitions).find((p) => p.uuid === uuid);
    if (part && !part.mountpoint) {
      o.log('info', `mounting the data disk ${part.path} (UUID ${uuid}) at ${o.dataDisk}`);
      mkdirSync(o.dataDisk, { recursive: true });
      await sys.mount(part.path, o.dataDisk);
      changed = true;
    }
  }
  if (changed) disks = await inventory(sys, uuid);
  const file: DisksFile = {
    scanned_at: new Date().toISOString(),
    data_disk: dataDiskState(sys, o, uuid),
    disks,
  };
  mkdirSync(o.spool, { recursive: true });
  writeJsonAtomic(spoolPaths(o.spool).disks, file);
  return file;
}

/** One adoption request, checked again against a fresh lsblk, then carried out. */
export async function adopt(
  sys: DiskSystem,
  o: HelperOptions,
  req: AdoptRequest,
): Promise<AdoptionView> {
  const base = { request_id: req.id, disk: req.disk };
  const fail = (err: unknown): AdoptionView => {
    const e =
      err instanceof DiskError
        ? err
        : new DiskError(
            500,
            'adoption_failed',
            (err as Error).message,
            'See `journalctl -u backupd-disk-adopt` for the step that failed; the disk can be adopted again.',
          );
    o.log('error', `adoption of ${req.disk} refused or failed: ${e.message}`);
    const v: AdoptionView = {
      ...base,
      state: 'failed',
      code: e.code,
      error: e.message,
      fix: e.fix,
    };
    writeAdoption(o.spool, v);
    return v;
  };
  let disk: DiskView;
  try {
    const uuid = readUuidFile(o.uuidFile);
    const disks = await inventory(sys, uuid);
    disk = checkAdoption(disks, req, {
      dataDiskMounted: sys.isMountPoint(o.dataDisk),
      adoptionRunning: false,
    });
    if (disk.serial !== req.serial || disk.size_bytes !== req.size_bytes)
      throw new DiskError(
        409,
        'disk_changed',
        `Disk ${req.disk} is not the one listed when the adoption was asked (serial ${disk.serial ?? 'none'} and ${disk.size_bytes} bytes now, ${req.serial ?? 'none'} and ${req.size_bytes} bytes then); nothing was changed.`,
        'Look at the list of disks again and confirm the disk you mean.',
      );
  } catch (err) {
    return fail(err);
  }

  try {
    const owner = sys.userIds(o.user);
    let device: string;
    if (req.format) {
      writeAdoption(o.spool, { ...base, state: 'formatting' });
      o.log(
        'warn',
        `ERASING ${disk.path} (${disk.id}, serial ${disk.serial ?? 'none'}, ${disk.size_bytes} bytes) as the owner confirmed: new GPT partition table`,
      );
      await sys.partition(disk.path);
      await sys.settle();
      const after = (await inventory(sys, null)).find((d) => d.id === disk.id);
      const part = after?.partitions.find((p) => p.path !== disk.path);
      if (!after || after.partitions.length !== 1 || !part)
        throw new Error(`the new partition of ${disk.path} did not appear after partitioning`);
      o.log(
        'warn',
        `formatting ${part.path} as ext4 labelled backupd, owned by ${o.user} (${owner.uid}:${owner.gid})`,
      );
      await sys.mkfs(part.path, owner);
      device = part.path;
    } else {
      device = backupdPartition(disk)!.path;
      o.log('info', `adopting the existing backupd filesystem on ${device} without writing it`);
    }
    const uuid = await sys.fsUuid(device);
    o.log('info', `mounting ${device} (UUID ${uuid}) at ${o.dataDisk} with ${MOUNT_OPTIONS}`);
    mkdirSync(o.dataDisk, { recursive: true });
    await sys.mount(device, o.dataDisk);
    const marker = `${o.dataDisk}/.backupd`;
    if (req.format) sys.mkdirOwned(marker, owner);
    else if (!sys.exists(marker)) {
      await sys.unmountLazy(o.dataDisk);
      throw new DiskError(
        409,
        'not_a_backupd_disk',
        `${device} is labelled backupd but holds no .backupd folder; it was unmounted and left as it was.`,
        'Adopt it with "format": true, which ERASES it, or choose the disk that holds your backups.',
      );
    }
    // Recorded last: scan mounts only a disk whose adoption went through.
    mkdirSync(dirname(o.uuidFile), { recursive: true });
    writeFileSync(o.uuidFile, `${uuid}\n`, { mode: 0o644 });
    o.log('info', `data disk adopted: ${disk.id}, UUID ${uuid} recorded in ${o.uuidFile}`);
    const v: AdoptionView = { ...base, state: 'done', uuid };
    writeAdoption(o.spool, v);
    await scan(sys, o).catch((err: Error) =>
      o.log('warn', `listing the disks again failed: ${err.message}`),
    );
    return v;
  } catch (err) {
    return fail(err);
  }
}

/** `backupd disk adopt-pending`: each request in the spool, oldest first, then removed. */
export async function adoptPending(sys: DiskSystem, o: HelperOptions): Promise<AdoptionView[]> {
  const out: AdoptionView[] = [];
  for (const { file, request } of pendingRequests(o.spool)) {
    removeRequest(file); // taken: a crash half-way must not replay a format at the next start
    if (request instanceof Error) {
      o.log('error', `ignoring the malformed request ${file}: ${request.message}`);
      continue;
    }
    out.push(await adopt(sys, o, request));
  }
  return out;
}

export { readAdoption };
