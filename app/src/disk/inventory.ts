/**
 * The disks of the machine, from `lsblk --json --bytes -O` (util-linux 2.38 and later): what the
 * owner sees in the panel before choosing a data disk, and what the root helper checks again
 * before it writes anything. The output is validated: a field that changed shape must stop the
 * helper, not make it guess which disk is which.
 */
import { z } from 'zod';

const str = z.string().nullish();

export interface LsblkDevice {
  name: string;
  kname?: string | null;
  path?: string | null;
  type: string;
  size: number;
  model?: string | null;
  serial?: string | null;
  wwn?: string | null;
  vendor?: string | null;
  tran?: string | null;
  rm?: boolean | null;
  hotplug?: boolean | null;
  ro?: boolean | null;
  fstype?: string | null;
  label?: string | null;
  uuid?: string | null;
  pttype?: string | null;
  mountpoint?: string | null;
  mountpoints?: (string | null)[] | null;
  children?: LsblkDevice[] | undefined;
}

// Only the fields used; lsblk -O prints many more and adds some in each release.
export const lsblkDevice: z.ZodType<LsblkDevice> = z.looseObject({
  name: z.string().min(1),
  kname: str,
  path: str,
  type: z.string(),
  // --bytes gives numbers; very old lsblk gave strings.
  size: z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]),
  model: str,
  serial: str,
  wwn: str,
  vendor: str,
  tran: str,
  rm: z
    .union([z.boolean(), z.literal('1'), z.literal('0')])
    .transform((v) => v === true || v === '1')
    .nullish(),
  hotplug: z
    .union([z.boolean(), z.literal('1'), z.literal('0')])
    .transform((v) => v === true || v === '1')
    .nullish(),
  ro: z
    .union([z.boolean(), z.literal('1'), z.literal('0')])
    .transform((v) => v === true || v === '1')
    .nullish(),
  fstype: str,
  label: str,
  uuid: str,
  pttype: str,
  mountpoint: str,
  mountpoints: z.array(z.string().nullable()).nullish(),
  get children() {
    return z.array(lsblkDevice).optional();
  },
}) as unknown as z.ZodType<LsblkDevice>;

export const lsblkOutput = z.object({ blockdevices: z.array(lsblkDevice) });

export class LsblkError extends Error {
  override name = 'LsblkError';
}

export function parseLsblk(json: unknown): LsblkDevice[] {
  const r = lsblkOutput.safeParse(json);
  if (!r.success)
    throw new LsblkError(
      `lsblk's output is not what backupd expects (${r.error.issues
        .slice(0, 3)
        .map((i) => `${i.path.join('.')}: ${i.message}`)
        .join('; ')}); nothing was changed`,
    );
  return r.data.blockdevices;
}

export const partitionView = z.object({
  path: z.string(),
  fstype: z.string().nullable(),
  label: z.string().nullable(),
  uuid: z.string().nullable(),
  size_bytes: z.number(),
  mountpoint: z.string().nullable(),
});
export type PartitionView = z.infer<typeof partitionView>;

export const diskView = z
  .object({
    id: z
      .string()
      .describe(
        'Stable name of the disk, from its transport, model and serial (or its WWN); the same after a replug.',
      ),
    path: z.string().describe('Device node now, e.g. /dev/sda (may change after a replug).'),
    model: z.string().nullable(),
    serial: z.string().nullable(),
    size_bytes: z.number(),
    transport: z.string().nullable().describe('usb, sata, nvme, mmc, virtio (null), ...'),
    removable: z.boolean(),
    system: z.boolean().describe('Holds the running system (/ or /boot): never offered.'),
    adopted: z
      .boolean()
      .describe('Carries the filesystem this appliance adopted as its data disk.'),
    partitions: z.array(partitionView),
    summary: z.string().describe('What is on it, in words.'),
  })
  .meta({ id: 'Disk' });
export type DiskView = z.infer<typeof diskView>;

/** Mount points that make a disk the system disk. */
const isSystemMount = (m: string) => m === '/' || m === '/boot' || m.startsWith('/boot/');

const mountsOf = (d: LsblkDevice): string[] =>
  [...(d.mountpoints ?? []), d.mountpoint].filter((m): m is string => !!m);

function descendants(d: LsblkDevice): LsblkDevice[] {
  return (d.children ?? []).flatMap((c) => [c, ...descendants(c)]);
}

const clean = (s: string | null | undefined) => (s ?? '').trim().replace(/[^A-Za-z0-9._:-]+/g, '_');

/** A disk's stable id: transport, model and serial as in /dev/disk/by-id, else WWN, else path. */
export function diskId(d: LsblkDevice): string {
  const serial = d.serial?.trim();
  if (serial) return `${d.tran || 'disk'}-${clean(d.model) || 'disk'}_${clean(serial)}`;
  if (d.wwn?.trim()) return `wwn-${clean(d.wwn)}`;
  return `path-${clean(d.path ?? `/dev/${d.name}`).replace(/^_/, '')}`;
}

const gb = (n: number) =>
  n >= 1e12
    ? `${(n / 1e12).toFixed(1)} TB`
    : n >= 1e9
      ? `${(n / 1e9).toFixed(1)} GB`
      : `${Math.round(n / 1e6)} MB`;

function summarize(
  d: LsblkDevice,
  parts: PartitionView[],
  system: boolean,
  adopted: boolean,
): string {
  const bits: string[] = [];
  if (system) bits.push('the system disk (holds the running system)');
  if (adopted) bits.push("this appliance's data disk");
  const fsOf = (p: { fstype: string | null; label: string | null; size_bytes: number }) =>
    `${p.fstype ?? 'unknown data'}${p.label ? ` "${p.label}"` : ''} ${gb(p.size_bytes)}`;
  const whole = parts.length === 1 && parts[0]!.path === (d.path ?? `/dev/${d.name}`);
  if (whole) bits.push(`one filesystem over the whole disk: ${fsOf(parts[0]!)}`);
  else if (parts.length === 0) {
    if (d.pttype) bits.push('an empty partition table');
    else bits.push('blank: no partition table and no filesystem found');
  } else {
    bits.push(
      `${parts.length} partition${parts.length > 1 ? 's' : ''}: ${parts.map(fsOf).join(', ')}`,
    );
    const backupd = parts.find((p) => p.fstype === 'ext4' && p.label === 'backupd');
    if (backupd && !adopted)
      bits.push('carries a backupd filesystem (can be adopted without formatting)');
  }
  const mounted = parts.filter((p) => p.mountpoint).map((p) => p.mountpoint);
  if (mounted.length) bits.push(`mounted at ${mounted.join(', ')}`);
  return bits.join('; ');
}

/**
 * The disks worth showing: whole disks (not partitions, loop, zram, CD drives or the SD card's
 * boot partitions), each with its partitions and whether it holds the system.
 */
export function buildInventory(
  devices: LsblkDevice[],
  opts: { adoptedUuid?: string | null } = {},
): DiskView[] {
  const out: DiskView[] = [];
  for (const d of devices) {
    if (d.type !== 'disk') continue;
    if (/^(zram|loop|ram|sr|mmcblk\d+boot|mmcblk\d+rpmb)/.test(d.name)) continue;
    if (d.size <= 0) continue;
    const all = [d, ...descendants(d)];
    const system = all.some((x) => mountsOf(x).some(isSystemMount));
    // A filesystem straight on the disk (no partition table) is listed as its one "partition";
    // a partition's mount point includes what is mounted from inside it (LVM, LUKS).
    const view = (c: LsblkDevice): PartitionView => ({
      path: c.path ?? `/dev/${c.name}`,
      fstype: c.fstype ?? null,
      label: c.label ?? null,
      uuid: c.uuid ?? null,
      size_bytes: c.size,
      mountpoint: [c, ...descendants(c)].flatMap(mountsOf)[0] ?? null,
    });
    const parts = (d.children ?? []).filter((c) => c.type === 'part');
    const partitions: PartitionView[] =
      parts.length > 0
        ? parts.map(view)
        : d.fstype || mountsOf(d).length
          ? [{ ...view({ ...d, children: [] }) }]
          : [];
    const adopted = !!opts.adoptedUuid && all.some((x) => x.uuid === opts.adoptedUuid);
    out.push({
      id: diskId(d),
      path: d.path ?? `/dev/${d.name}`,
      model: d.model?.trim() || null,
      serial: d.serial?.trim() || null,
      size_bytes: d.size,
      transport: d.tran ?? null,
      removable: !!(d.rm || d.hotplug),
      system,
      adopted,
      partitions,
      summary: summarize(d, partitions, system, adopted),
    });
  }
  return out;
}

/** Whether anything on the disk (itself or a partition) is mounted now. */
export function mountedAt(d: DiskView): string[] {
  return d.partitions.map((p) => p.mountpoint).filter((m): m is string => !!m);
}

/** The partition of a disk carrying an existing backupd filesystem, if any. */
export const backupdPartition = (d: DiskView) =>
  d.partitions.find((p) => p.fstype === 'ext4' && p.label === 'backupd' && p.uuid);
