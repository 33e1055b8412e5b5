// The data disk: the disk list from real lsblk output (this machine, and an appliance in QEMU
// with a USB disk hot-plugged), which disk is the system one, the checks before an adoption,
// and the root helper's steps in order against a fake system that records every command.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  adopt,
  adoptPending,
  backingDevicePresent,
  buildInventory,
  checkAdoption,
  DiskError,
  DiskService,
  isMountPoint,
  mountProbe,
  parseLsblk,
  pendingRequests,
  readAdoption,
  readDisksFile,
  scan,
  writeRequest,
  type AdoptRequest,
  type DiskSystem,
  type DiskView,
  type HelperOptions,
  type LsblkDevice,
} from '../../src/disk/index.js';
import { mountSourceFrom } from '../../src/disk/system.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-disk-');
const fixture = (name: string) =>
  JSON.parse(
    readFileSync(path.join(import.meta.dirname, '..', 'fixtures', 'lsblk', name), 'utf8'),
  ) as { blockdevices: LsblkDevice[] };

const USB_ID = 'usb-QEMU_HARDDISK_1-0000:00:04.0-1';
const USB_SERIAL = '1-0000:00:04.0-1';
const BACKUPD_UUID = '3d6c2a8e-1f4b-4e7a-9c0d-5b6e7f8a9b0c';

describe('the disk list', () => {
  it('on this machine: the one virtio disk is the system disk (mounted at / without partitions), zram is left out', () => {
    const disks = buildInventory(parseLsblk(fixture('host-vm.json')));
    expect(disks.map((d) => d.path)).toEqual(['/dev/vda']);
    const [vda] = disks as [DiskView];
    expect(vda.system).toBe(true);
    expect(vda.partitions).toEqual([
      expect.objectContaining({ path: '/dev/vda', mountpoint: '/' }),
    ]);
    expect(vda.summary).toContain('the system disk');
    expect(vda.id).toBe('path-dev_vda'); // no serial and no WWN: its path
  });

  it('on the appliance in QEMU: every disk with what is on it, the system disk marked, CD and zram left out', () => {
    const disks = buildInventory(parseLsblk(fixture('appliance-qemu.json')), {
      adoptedUuid: BACKUPD_UUID,
    });
    const by = Object.fromEntries(disks.map((d) => [d.path, d]));
    expect(Object.keys(by)).toEqual(['/dev/vda', '/dev/sda', '/dev/sdb', '/dev/sdc', '/dev/sdd']);
    expect(by['/dev/vda']!.system).toBe(true); // holds / and /boot/efi
    expect(disks.filter((d) => d.system)).toHaveLength(1);

    const usb = by['/dev/sda']!;
    expect(usb).toMatchObject({
      id: USB_ID,
      model: 'QEMU HARDDISK',
      serial: USB_SERIAL,
      size_bytes: 8 * 1024 ** 3,
      transport: 'usb',
      removable: true,
      system: false,
      adopted: false,
      partitions: [],
    });
    expect(usb.summary).toMatch(/^blank/);

    expect(by['/dev/sdb']!.id).toBe('sata-Samsung_SSD_870_EVO_500GB_S62ANJ0R123456X');
    expect(by['/dev/sdb']!.summary).toContain('ntfs "Photos" 500.1 GB');
    expect(by['/dev/sdc']!.summary).toContain('mounted at /media/stick');
    expect(by['/dev/sdd']!.adopted).toBe(true);
    expect(by['/dev/sdd']!.partitions[0]).toMatchObject({
      path: '/dev/sdd1',
      fstype: 'ext4',
      label: 'backupd',
      uuid: BACKUPD_UUID,
      mountpoint: null,
    });
  });

  it('refuses output of another shape instead of guessing', () => {
    expect(() => parseLsblk({ blockdevices: [{ name: 'sda', type: 'disk' }] })).toThrow(
      /lsblk's output is not what backupd expects \(blockdevices\.0\.size/,
    );
    expect(() => parseLsblk({ devices: [] })).toThrow(/nothing was changed/);
  });
});

describe('the checks before an adoption', () => {
  const disks = buildInventory(parseLsblk(fixture('appliance-qemu.json')));
  const ok = { dataDiskMounted: false, adoptionRunning: false };
  const refused = (ask: { disk: string; confirm: string; format: boolean }, ctx = ok) => {
    try {
      checkAdoption(disks, ask, ctx);
    } catch (err) {
      expect(err).toBeInstanceOf(DiskError);
      return err as DiskError;
    }
    throw new Error('accepted');
  };

  it('accepts the blank USB disk confirmed by its serial', () => {
    expect(checkAdoption(disks, { disk: USB_ID, confirm: USB_SERIAL, format: true }, ok).path).toBe(
      '/dev/sda',
    );
  });

  it('refuses a confirmation that does not name the disk', () => {
    for (const confirm of ['', 'yes', '/dev/sda', 'S62ANJ0R123456X', `${USB_SERIAL}x`]) {
      const e = refused({ disk: USB_ID, confirm, format: true });
      expect(e.code).toBe('confirmation_mismatch');
      expect(e.status).toBe(409);
      expect(e.fix).toMatch(/serial/);
    }
  });

  it('accepts the path as the confirmation of a disk without a serial, and only then', () => {
    const e = refused({ disk: 'path-dev_vda', confirm: '/dev/vda', format: true });
    expect(e.code).toBe('system_disk'); // vda has no serial, but it is the system disk anyway
  });

  it('refuses the system disk, a mounted disk, an unknown one, a second adoption, a second data disk', () => {
    expect(refused({ disk: 'path-dev_vda', confirm: '/dev/vda', format: true }).code).toBe(
      'system_disk',
    );
    const stick = disks.find((d) => d.path === '/dev/sdc')!;
    const m = refused({ disk: stick.id, confirm: stick.serial!, format: true });
    expect(m.code).toBe('disk_mounted');
    expect(m.message).toContain('/media/stick');
    expect(refused({ disk: 'usb-nothing_1', confirm: '1', format: true }).code).toBe(
      'unknown_disk',
    );
    expect(
      refused({ disk: USB_ID, confirm: USB_SERIAL, format: true }, { ...ok, adoptionRunning: true })
        .code,
    ).toBe('adoption_running');
    expect(
      refused({ disk: USB_ID, confirm: USB_SERIAL, format: true }, { ...ok, dataDiskMounted: true })
        .code,
    ).toBe('data_disk_present');
  });

  it('adopts without formatting only a disk that carries a backupd filesystem', () => {
    expect(refused({ disk: USB_ID, confirm: USB_SERIAL, format: false }).code).toBe(
      'not_a_backupd_disk',
    );
    const wd = disks.find((d) => d.path === '/dev/sdd')!;
    expect(
      checkAdoption(disks, { disk: wd.id, confirm: '575836314131', format: false }, ok).id,
    ).toBe(wd.id);
  });
});

/** A machine of disks in memory: lsblk answers from it, the commands change it and are recorded. */
function fakeSystem(dataDisk: string) {
  const tree = structuredClone(fixture('appliance-qemu.json'));
  const calls: string[] = [];
  const mounts = new Map<string, string>(); // dir -> device
  const gone = new Set<string>();
  const find = (p: string) =>
    tree.blockdevices
      .flatMap((d) => [d, ...(d.children ?? [])])
      .find((d) => d.path === p) as LsblkDevice;
  const sys: DiskSystem = {
    lsblk: async () => structuredClone(tree),
    partition: async (disk) => {
      calls.push(`partition ${disk}`);
      const d = find(disk);
      d.pttype = 'gpt';
      d.children = [
        { name: `${d.name}1`, path: `${disk}1`, type: 'part', size: d.size - 2 * 1024 ** 2 },
      ];
    },
    settle: async () => void calls.push('settle'),
    mkfs: async (part, o) => {
      calls.push(`mkfs ${part} ${o.uid}:${o.gid}`);
      Object.assign(find(part), {
        fstype: 'ext4',
        label: 'backupd',
        uuid: 'a1b2c3d4-0000-4000-8000-000000000001',
      });
    },
    fsUuid: async (part) => {
      calls.push(`uuid ${part}`);
      return find(part).uuid!;
    },
    mount: async (dev, dir) => {
      calls.push(`mount ${dev} ${dir}`);
      mounts.set(dir, dev);
      Object.assign(find(dev), { mountpoint: dir, mountpoints: [dir] });
    },
    unmountLazy: async (dir) => {
      calls.push(`umount -l ${dir}`);
      mounts.delete(dir);
    },
    isMountPoint: (dir) => mounts.has(dir),
    mountSource: (dir) => mounts.get(dir),
    exists: (p) => (p.startsWith('/dev/') ? !gone.has(p) : existsSync(p)),
    userIds: () => ({ uid: 990, gid: 990 }),
    mkdirOwned: (p, o) => {
      calls.push(`mkdir ${p} ${o.uid}:${o.gid}`);
      mkdirSync(p, { recursive: true });
    },
  };
  return { sys, calls, mounts, gone, tree, dataDisk };
}

function helperOptions(): HelperOptions & { lines: string[] } {
  const dir = tmp();
  const lines: string[] = [];
  return {
    dataDisk: path.join(dir, 'srv-backup'),
    spool: path.join(dir, 'spool'),
    uuidFile: path.join(dir, 'etc', 'data-disk.uuid'),
    user: 'backupd',
    log: (level, m) => lines.push(`${level}: ${m}`),
    lines,
  };
}

const request = (over: Partial<AdoptRequest> = {}): AdoptRequest => ({
  id: 'req-00000001',
  disk: USB_ID,
  confirm: USB_SERIAL,
  format: true,
  path: '/dev/sda',
  serial: USB_SERIAL,
  size_bytes: 8 * 1024 ** 3,
  requested_at: new Date().toISOString(),
  ...over,
});

describe('the root helper', () => {
  it('adopts a confirmed disk: partition, format, UUID, mount, in that order, each step logged', async () => {
    const o = helperOptions();
    const f = fakeSystem(o.dataDisk);
    const r = await adopt(f.sys, o, request());
    expect(r).toMatchObject({
      state: 'done',
      disk: USB_ID,
      uuid: 'a1b2c3d4-0000-4000-8000-000000000001',
    });
    expect(f.calls).toEqual([
      'partition /dev/sda',
      'settle',
      'mkfs /dev/sda1 990:990',
      'uuid /dev/sda1',
      `mount /dev/sda1 ${o.dataDisk}`,
      `mkdir ${o.dataDisk}/.backupd 990:990`,
    ]);
    expect(readFileSync(o.uuidFile, 'utf8')).toBe('a1b2c3d4-0000-4000-8000-000000000001\n');
    expect(readAdoption(o.spool)).toMatchObject({ state: 'done', request_id: 'req-00000001' });
    expect(o.lines.join('\n')).toMatch(/ERASING \/dev\/sda .*serial 1-0000:00:04.0-1/);
    expect(o.lines.join('\n')).toMatch(/formatting \/dev\/sda1 as ext4 labelled backupd/);
    // The listing was refreshed: the panel sees the new data disk mounted.
    const listed = readDisksFile(o.spool)!;
    expect(listed.data_disk).toMatchObject({
      mounted: true,
      uuid: 'a1b2c3d4-0000-4000-8000-000000000001',
      device: '/dev/sda1',
    });
    expect(listed.disks.find((d) => d.id === USB_ID)!.adopted).toBe(true);
  });

  it('touches nothing when the disk changed since it was listed (size, serial), or is the wrong one', async () => {
    const cases: [Partial<AdoptRequest>, string][] = [
      [{ size_bytes: 16 * 1024 ** 3 }, 'disk_changed'],
      [{ serial: 'OTHER' }, 'disk_changed'],
      [{ confirm: 'OTHER' }, 'confirmation_mismatch'],
      [{ disk: 'path-dev_vda', confirm: '/dev/vda', serial: null }, 'system_disk'],
    ];
    for (const [over, code] of cases) {
      const o = helperOptions();
      const f = fakeSystem(o.dataDisk);
      const r = await adopt(f.sys, o, request(over));
      expect(r).toMatchObject({ state: 'failed', code });
      expect(f.calls).toEqual([]);
      expect(existsSync(o.uuidFile)).toBe(false);
      expect(readAdoption(o.spool)).toMatchObject({ state: 'failed' });
      expect(o.lines.some((l) => l.startsWith('error:'))).toBe(true);
      expect(r.fix).toBeTruthy();
    }
  });

  it('adopts a backupd disk without writing it when format is false', async () => {
    const o = helperOptions();
    const f = fakeSystem(o.dataDisk);
    // The existing filesystem holds .backupd/ (as the fake mount shows the folder).
    mkdirSync(path.join(o.dataDisk, '.backupd'), { recursive: true });
    const r = await adopt(
      f.sys,
      o,
      request({
        disk: 'usb-WD_Elements_25A2_575836314131',
        confirm: '575836314131',
        serial: '575836314131',
        path: '/dev/sdd',
        size_bytes: 1000204886016,
        format: false,
      }),
    );
    expect(r).toMatchObject({ state: 'done', uuid: BACKUPD_UUID });
    expect(f.calls).toEqual(['uuid /dev/sdd1', `mount /dev/sdd1 ${o.dataDisk}`]);
  });

  it('scan mounts the adopted disk when it is there, and lazily unmounts it when its device is gone', async () => {
    const o = helperOptions();
    const f = fakeSystem(o.dataDisk);
    mkdirSync(path.dirname(o.uuidFile), { recursive: true });
    writeFileSync(o.uuidFile, `${BACKUPD_UUID}\n`);
    const first = await scan(f.sys, o);
    expect(f.calls).toEqual([`mount /dev/sdd1 ${o.dataDisk}`]);
    expect(first.data_disk).toMatchObject({
      mounted: true,
      device: '/dev/sdd1',
      uuid: BACKUPD_UUID,
    });
    await scan(f.sys, o); // nothing to do
    expect(f.calls).toHaveLength(1);
    // Unplugged: lsblk no longer lists it, the mount points at a device node that is gone.
    f.tree.blockdevices = f.tree.blockdevices.filter((d) => d.name !== 'sdd');
    f.gone.add('/dev/sdd1');
    const after = await scan(f.sys, o);
    expect(f.calls).toEqual([`mount /dev/sdd1 ${o.dataDisk}`, `umount -l ${o.dataDisk}`]);
    expect(after.data_disk).toMatchObject({ mounted: false, device: null });
    expect(o.lines.join('\n')).toMatch(/device \/dev\/sdd1 is gone/);
  });

  it('scan without an adopted disk only lists', async () => {
    const o = helperOptions();
    const f = fakeSystem(o.dataDisk);
    const r = await scan(f.sys, o);
    expect(f.calls).toEqual([]);
    expect(r.disks).toHaveLength(5);
    expect(readDisksFile(o.spool)!.disks).toHaveLength(5);
  });

  it('adopt-pending takes each request once (removed before it runs), malformed ones included', async () => {
    const o = helperOptions();
    const f = fakeSystem(o.dataDisk);
    const { id: _id, requested_at: _at, ...rest } = request();
    writeRequest(o.spool, rest);
    writeFileSync(path.join(o.spool, 'requests', '0-bad.json'), '{"disk": "x"}');
    const results = await adoptPending(f.sys, o);
    expect(results.map((r) => r.state)).toEqual(['done']);
    expect(readdirSync(path.join(o.spool, 'requests'))).toEqual([]);
    expect(o.lines.join('\n')).toMatch(/ignoring the malformed request/);
    expect(await adoptPending(f.sys, o)).toEqual([]);
  });
});

describe("the daemon's side", () => {
  it('checks the choice against the listing, then writes a request for the helper', async () => {
    const o = helperOptions();
    const f = fakeSystem(o.dataDisk);
    const disks = new DiskService({ dataDisk: o.dataDisk, spool: o.spool, probe: () => false });
    expect(() => disks.adopt({ disk: USB_ID, confirm: USB_SERIAL, format: true })).toThrow(
      /has not listed the disks yet/,
    );
    await scan(f.sys, o);
    expect(() => disks.adopt({ disk: USB_ID, confirm: 'nope', format: true })).toThrow(
      /does not name disk/,
    );
    expect(pendingRequests(o.spool)).toEqual([]);
    const a = disks.adopt({ disk: USB_ID, confirm: ` ${USB_SERIAL} `, format: true });
    expect(a).toMatchObject({ state: 'pending', disk: USB_ID });
    const [req] = pendingRequests(o.spool);
    expect(req!.request).toMatchObject({
      disk: USB_ID,
      confirm: USB_SERIAL,
      serial: USB_SERIAL,
      path: '/dev/sda',
      size_bytes: 8 * 1024 ** 3,
      format: true,
    });
    expect(disks.report().adoption).toMatchObject({ state: 'pending' });
    // A second one while the first waits is refused.
    expect(() => disks.adopt({ disk: USB_ID, confirm: USB_SERIAL, format: true })).toThrow(
      /already under way/,
    );
    await adoptPending(f.sys, o);
    expect(disks.report().adoption).toMatchObject({ state: 'done', disk: USB_ID });
  });
});

describe('the mount probe', () => {
  it('tells a mount point by its device: /proc is one, a plain folder is not, a missing one is not', () => {
    expect(isMountPoint('/proc')).toBe(true);
    expect(isMountPoint(tmp())).toBe(false);
    expect(isMountPoint('/no/such/folder')).toBe(false);
  });

  it('tells a disk pulled out from a live one by its device in sysfs, before the mount is gone', () => {
    // The root filesystem's device is in this machine's sysfs; in a copy of sysfs without it,
    // the same mount reads as a disk whose device has gone (a USB disk pulled out).
    // The device's major:minor as coreutils' stat tells them.
    const device = execFileSync('stat', ['-c', '%Hd:%Ld', '/'], { encoding: 'utf8' }).trim();
    expect(existsSync(`/sys/dev/block/${device}`)).toBe(true);
    expect(backingDevicePresent('/')).toBe(true);
    const sysfs = tmp();
    mkdirSync(path.join(sysfs, 'dev', 'block'), { recursive: true });
    expect(backingDevicePresent('/', sysfs)).toBe(false);
    mkdirSync(path.join(sysfs, 'dev', 'block', device));
    expect(backingDevicePresent('/', sysfs)).toBe(true);
    // No block device behind /proc (major 0), and no sysfs at all: nothing to tell, present.
    expect(backingDevicePresent('/proc', sysfs)).toBe(true);
    expect(backingDevicePresent('/', path.join(sysfs, 'none'))).toBe(true);
    expect(backingDevicePresent('/no/such/folder')).toBe(false);
  });

  it('honours the test marker only under NODE_ENV=test', () => {
    const marker = path.join(tmp(), 'mounted');
    const dir = tmp();
    const asTest = mountProbe({ NODE_ENV: 'test', BACKUPD_TEST_MOUNTED_MARKER: marker });
    expect(asTest(dir)).toBe(false);
    writeFileSync(marker, '');
    expect(asTest(dir)).toBe(true);
    expect(mountProbe({ NODE_ENV: 'production', BACKUPD_TEST_MOUNTED_MARKER: marker })(dir)).toBe(
      false,
    );
  });

  it('reads the source of a mount from mountinfo, the last mount on top', () => {
    const info = [
      '25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw',
      '90 25 8:49 / /srv/backup rw,nosuid,nodev,noatime shared:50 - ext4 /dev/sdd1 rw',
      '91 25 8:1 / /srv/backup rw - ext4 /dev/sda1 rw',
      '92 25 8:2 / /media/my\\040stick rw - exfat /dev/sdc1 rw',
    ].join('\n');
    expect(mountSourceFrom(info, '/srv/backup')).toBe('/dev/sda1');
    expect(mountSourceFrom(info, '/media/my stick')).toBe('/dev/sdc1');
    expect(mountSourceFrom(info, '/mnt')).toBeUndefined();
  });
});
