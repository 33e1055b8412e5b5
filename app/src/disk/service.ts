/**
 * The daemon's side of the data disk, behind GET /api/disks and POST /api/disks/adopt: it reads
 * what the root helper listed and writes an adoption request for it. It never touches a disk.
 */
import { z } from 'zod';
import { checkAdoption, DiskError, type AdoptAsk } from './checks.js';
import { diskView } from './inventory.js';
import type { MountProbe } from './probe.js';
import {
  adoptionView,
  dataDiskView,
  pendingRequests,
  readAdoption,
  readDisksFile,
  writeRequest,
  type AdoptionView,
} from './spool.js';

export const disksReport = z
  .object({
    data_disk: dataDiskView,
    disks: z.array(diskView),
    adoption: adoptionView.nullable(),
    scanned_at: z
      .string()
      .nullable()
      .describe('When the disk helper last listed the disks (null: it has not run yet).'),
  })
  .meta({ id: 'Disks' });
export type DisksReport = z.infer<typeof disksReport>;

export class DiskService {
  constructor(
    private readonly o: {
      dataDisk: string;
      spool: string;
      probe: MountProbe;
      log?: (message: string) => void;
    },
  ) {}

  mounted(): boolean {
    return this.o.probe(this.o.dataDisk);
  }

  adoption(): AdoptionView | null {
    const waiting = pendingRequests(this.o.spool).find((r) => !(r.request instanceof Error));
    if (waiting && !(waiting.request instanceof Error))
      return { request_id: waiting.request.id, disk: waiting.request.disk, state: 'pending' };
    return readAdoption(this.o.spool) ?? null;
  }

  report(): DisksReport {
    const listed = readDisksFile(this.o.spool);
    const mounted = this.mounted();
    return {
      data_disk: {
        mount_point: this.o.dataDisk,
        uuid: listed?.data_disk.uuid ?? null,
        // The probe is fresher than the helper's listing.
        mounted,
        device: mounted ? (listed?.data_disk.device ?? null) : null,
      },
      disks: listed?.disks ?? [],
      adoption: this.adoption(),
      scanned_at: listed?.scanned_at ?? null,
    };
  }

  /** Checks the owner's choice against the listing and hands it to the root helper. */
  adopt(ask: AdoptAsk): AdoptionView {
    const listed = readDisksFile(this.o.spool);
    if (!listed)
      throw new DiskError(
        409,
        'no_disk_listing',
        'The disk helper has not listed the disks yet.',
        'Check that backupd-disk-scan.service ran (systemctl status backupd-disk-scan); plugging a disk in runs it.',
      );
    const a = this.adoption();
    const disk = checkAdoption(listed.disks, ask, {
      dataDiskMounted: this.mounted(),
      adoptionRunning: a?.state === 'pending' || a?.state === 'formatting',
    });
    const r = writeRequest(this.o.spool, {
      disk: disk.id,
      confirm: ask.confirm.trim(),
      format: ask.format,
      path: disk.path,
      serial: disk.serial,
      size_bytes: disk.size_bytes,
    });
    this.o.log?.(
      `adoption of ${disk.id} (${disk.path}, ${ask.format ? 'format' : 'keep its filesystem'}) requested: request ${r.id}`,
    );
    return { request_id: r.id, disk: disk.id, state: 'pending' };
  }
}
