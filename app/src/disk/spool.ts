/**
 * The files the sandboxed daemon and the root disk helper exchange in `appliance.disk_spool`
 * (/run/backupd-disk): the helper writes disks.json (what lsblk saw) and adoption.json (how the
 * last adoption went); the daemon writes one request per adoption into requests/, which a
 * systemd path unit watches. The daemon never runs lsblk, sfdisk, mkfs or mount itself.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { diskView } from './inventory.js';

export const dataDiskView = z
  .object({
    mount_point: z.string(),
    mounted: z.boolean(),
    uuid: z
      .string()
      .nullable()
      .describe('Filesystem UUID of the adopted disk, once one is adopted.'),
    device: z.string().nullable().describe('Device mounted there now, e.g. /dev/sda1.'),
  })
  .meta({ id: 'DataDisk' });
export type DataDiskView = z.infer<typeof dataDiskView>;

export const disksFile = z.object({
  scanned_at: z.string(),
  data_disk: dataDiskView,
  disks: z.array(diskView),
});
export type DisksFile = z.infer<typeof disksFile>;

export const adoptRequest = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9-]{8,64}$/),
  disk: z.string().min(1).max(300),
  /** What the owner typed: the serial (or the path of a disk without one). */
  confirm: z.string().max(300),
  format: z.boolean(),
  /** As listed when the owner chose: the helper refuses the disk if these changed since. */
  path: z.string().min(1),
  serial: z.string().nullable(),
  size_bytes: z.number().int().positive(),
  requested_at: z.string(),
});
export type AdoptRequest = z.infer<typeof adoptRequest>;

export const adoptionView = z
  .object({
    request_id: z.string().optional(),
    disk: z.string(),
    state: z.enum(['pending', 'formatting', 'done', 'failed']),
    code: z.string().optional().describe('Why it failed, as a stable code (e.g. disk_changed).'),
    error: z.string().optional(),
    fix: z.string().optional(),
    uuid: z.string().optional(),
    updated_at: z.string().optional(),
  })
  .meta({ id: 'Adoption' });
export type AdoptionView = z.infer<typeof adoptionView>;

export const spoolPaths = (spool: string) => ({
  disks: join(spool, 'disks.json'),
  adoption: join(spool, 'adoption.json'),
  requests: join(spool, 'requests'),
});

/** Written beside, then renamed: a reader never sees half a file, and the path unit's *.json glob never fires on one. */
export function writeJsonAtomic(file: string, value: unknown, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode });
  renameSync(tmp, file);
}

function readJson<T>(file: string, schema: z.ZodType<T>): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const r = schema.safeParse(JSON.parse(text));
  if (!r.success) throw new Error(`${file} is not valid: ${r.error.issues[0]?.message ?? ''}`);
  return r.data;
}

export const readDisksFile = (spool: string) => readJson(spoolPaths(spool).disks, disksFile);
export const readAdoption = (spool: string) => readJson(spoolPaths(spool).adoption, adoptionView);
export const writeAdoption = (spool: string, a: AdoptionView) =>
  writeJsonAtomic(spoolPaths(spool).adoption, { ...a, updated_at: new Date().toISOString() });

/** The request files waiting, oldest first. */
export function pendingRequests(spool: string): { file: string; request: AdoptRequest | Error }[] {
  const dir = spoolPaths(spool).requests;
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    return [];
  }
  return names.sort().map((n) => {
    const file = join(dir, n);
    try {
      return { file, request: adoptRequest.parse(JSON.parse(readFileSync(file, 'utf8'))) };
    } catch (err) {
      return { file, request: err as Error };
    }
  });
}

/** Writes a request for the root helper; its name sorts by time. */
export function writeRequest(
  spool: string,
  r: Omit<AdoptRequest, 'id' | 'requested_at'>,
): AdoptRequest {
  const dir = spoolPaths(spool).requests;
  mkdirSync(dir, { recursive: true });
  const request: AdoptRequest = { ...r, id: randomUUID(), requested_at: new Date().toISOString() };
  writeJsonAtomic(join(dir, `${Date.now()}-${request.id}.json`), request, 0o640);
  return request;
}

export const removeRequest = (file: string) => rmSync(file, { force: true });
