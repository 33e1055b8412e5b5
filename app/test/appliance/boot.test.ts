/**
 * The amd64 appliance image, built by image/build.sh and booted in QEMU (software emulation,
 * UEFI), checked as its owner would: the panel on port 80, the daemon running under systemd and
 * its sandbox, the root grown to the disk, backup.local (and backup-2.local beside another
 * appliance), the setup code on the console and in SETUP-CODE.txt, the watchdog, a reboot.
 *
 * The tests share one VM and run in order. The data-disk tests (a blank USB disk hot-plugged over
 * QMP, listed and left untouched, adopted through the API, unplugged and plugged back) come
 * before the watchdog and the reboot, so those also prove the daemon comes back in full mode on
 * the adopted disk.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, waitFor } from '../helpers/daemon.js';
import { buildImage, Vm } from '../helpers/qemu.js';

const MINUTE = 60_000;
// Software emulation of a whole machine on a shared 2-core host: generous, but bounded.
const BOOT_TIMEOUT = 8 * MINUTE;
// A plug or unplug runs backupd-disk-scan, a Node process: 20-50 s of emulated CPU here (1.5 s
// on the x86 build machine); the daemon then sees the mount change within 2 s.
const DISK_EVENT_TIMEOUT = 3 * MINUTE;

let vm: Vm;
let dir: string;
let api: ApiClient;
const timings: Record<string, number> = {};

const run = promisify(execFile);

/** Whether a disk file on the host still reads as nothing but zeros (never written). */
async function allZeros(file: string): Promise<boolean> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(8 * 1024 * 1024);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length);
      if (bytesRead === 0) return true;
      for (let i = 0; i < bytesRead; i++) if (buf[i] !== 0) return false;
    }
  } finally {
    await fh.close();
  }
}

const unit = async (prop: string) =>
  (await vm.sh(`systemctl show -p ${prop} --value backupd.service`)).trim();

/** The name avahi holds now (it renames itself after a conflict), as the banner asks it. */
const avahiName = async () =>
  /^s "(.*)"$/m.exec(
    await vm.sh('busctl call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetHostNameFqdn'),
  )?.[1];

beforeAll(async () => {
  let t0 = Date.now();
  const image = await buildImage('amd64');
  timings.imageBuildMs = Date.now() - t0;
  dir = mkdtempSync(path.join(tmpdir(), 'backupd-boot-'));
  vm = new Vm({ image, dir, diskSize: '6G', settings: { TIMEZONE: 'Europe/Paris' } });
  t0 = Date.now();
  await vm.start();
  timings.bootToPanelMs = await vm.waitForPanel(BOOT_TIMEOUT, t0);
  await vm.waitForSsh(3 * MINUTE);
  api = new ApiClient(vm.panelUrl);
}, 60 * MINUTE);

afterAll(async () => {
  console.log(`appliance boot test timings: ${JSON.stringify(timings)}`);
  await vm?.stop();
  if (dir && !process.env.KEEP_VM_DIR) rmSync(dir, { recursive: true, force: true });
});

describe('the amd64 appliance image in QEMU', () => {
  it('answers the panel on port 80 (redirected to the daemon, which holds no capability)', async () => {
    const health = await api.get('/api/health');
    expect(health.status).toBe(200);
    expect(health.json.status).toBe('ok');
    const page = await fetch(`${vm.panelUrl}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    // The daemon runs as backupd with no capability at all.
    const pid = await unit('MainPID');
    const status = await vm.sh(`grep -E '^(Uid|CapEff|CapBnd):' /proc/${pid}/status`);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^CapBnd:\s+0+$/m);
    expect(status).not.toMatch(/^Uid:\s+0\s/m);
  });

  it('runs backupd.service after it reported READY', async () => {
    // Type=notify: "active" only once the daemon sent READY=1.
    const shown = await vm.sh('systemctl show -p ActiveState,SubState backupd.service');
    expect(shown).toMatch(/^ActiveState=active$/m);
    expect(shown).toMatch(/^SubState=running$/m);
    expect(await unit('Type')).toBe('notify');
    // No data disk yet: standby, so no push half (its rclone rcd is checked once the disk is
    // adopted, in the data-disk block).
    expect(await vm.sh('journalctl -b -u backupd.service --no-pager -o cat')).not.toMatch(
      /did not start|Operation not permitted/,
    );
  });

  it('rates backupd.service below 2.0 in systemd-analyze security, inside the guest', async () => {
    const out = await vm.sh('systemd-analyze security --no-pager backupd.service');
    const m = /Overall exposure level for backupd\.service: ([\d.]+)/.exec(out);
    expect(m, out.slice(-500)).not.toBeNull();
    timings.securityExposure = Number(m![1]);
    expect(Number(m![1])).toBeLessThan(2.0);
  });

  it('grew the root filesystem to the disk at first boot', async () => {
    const disk = Number(await vm.sh('lsblk -bdno SIZE /dev/vda'));
    const root = Number(await vm.sh('df -B1 --output=size / | tail -1'));
    // 6 GiB disk, 256 MiB FAT partition; the image's root was about 1.5 GB.
    expect(disk).toBe(6 * 1024 ** 3);
    expect(root).toBeGreaterThan(disk * 0.85);
    expect(await vm.sh('findmnt -no OPTIONS /')).toMatch(/noatime/);
  });

  it('applied backup-settings.txt once: time zone, SSH key-only, the Wi-Fi password blanked', async () => {
    expect((await vm.sh('readlink /etc/localtime')).trim()).toBe(
      '/usr/share/zoneinfo/Europe/Paris',
    );
    expect(await vm.sh('ls /boot/firmware')).toMatch(/backup-settings\.applied\.txt/);
    expect(await vm.sh('ls /boot/firmware')).not.toMatch(/backup-settings\.txt/);
    expect(await vm.sh('sshd -T | grep -iE "^(passwordauthentication|permitrootlogin)"')).toMatch(
      /passwordauthentication no[\s\S]*permitrootlogin without-password|permitrootlogin without-password[\s\S]*passwordauthentication no/,
    );
    // A fresh identity: made on this machine, not shipped in the image.
    expect((await vm.sh('cat /etc/machine-id')).trim()).toMatch(/^[0-9a-f]{32}$/);
  });

  it('answers backup.local over mDNS inside the guest, and advertises the panel', async () => {
    // On failure, say what avahi itself believes (its name after a conflict, its state, its log).
    const avahiState = async () =>
      (
        await vm.ssh(
          '{ busctl call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetHostNameFqdn; busctl call org.freedesktop.Avahi / org.freedesktop.Avahi.Server GetState; avahi-resolve -4 -n backup.local; journalctl -b -u avahi-daemon --no-pager -o cat | tail -20; } 2>&1',
        )
      ).stdout;
    let lastState = '';
    const resolved = await waitFor(
      () => `avahi to resolve backup.local; avahi said:\n${lastState}`,
      async () => {
        const r = await vm.ssh('avahi-resolve -4 -n backup.local');
        if (r.code === 0 && /^backup\.local\s+\d+\.\d+\.\d+\.\d+/m.test(r.stdout)) return r.stdout;
        lastState = await avahiState();
        return undefined;
      },
      2 * MINUTE,
      3000,
    );
    expect(resolved).toMatch(/backup\.local/);
    expect(await vm.sh('getent hosts backup.local')).toMatch(/backup\.local/);
    expect(await vm.sh('avahi-browse -rtp _http._tcp')).toMatch(/;80;/);
  });

  it('takes backup-2.local beside another appliance already called backup, and shows it on the console', async () => {
    // The other appliance: a network namespace of the guest joined to it by a veth pair (a link
    // of its own, with link-local addresses), running an avahi-daemon of its own named backup.
    // It claims backup.local first; the appliance's avahi then starts as the second one there.
    const peerConf = [
      '[server]',
      'host-name=backup',
      'use-ipv6=no',
      'allow-interfaces=vpeer1',
      'enable-dbus=no',
    ].join('\\n');
    const stoppedAt = (await vm.sh('date +%s')).trim();
    await vm.sh(
      [
        'set -e',
        // networkd would run DHCP on the veth and drop the address given here.
        'mkdir -p /run/systemd/network /run/mdns-peer',
        "printf '[Match]\\nName=vpeer0\\n[Link]\\nUnmanaged=yes\\n' > /run/systemd/network/10-mdns-peer.network",
        'networkctl reload',
        'systemctl stop avahi-daemon.socket avahi-daemon.service',
        'ip netns add mdnspeer',
        'ip link add vpeer0 type veth peer name vpeer1 netns mdnspeer',
        'ip addr add 169.254.77.1/24 dev vpeer0',
        'ip link set vpeer0 up',
        'ip -n mdnspeer addr add 169.254.77.2/24 dev vpeer1',
        'ip -n mdnspeer link set vpeer1 up',
        `printf '${peerConf}\\n' > /run/mdns-peer/avahi-daemon.conf`,
        // Its own /run/avahi-daemon (pid file, socket) in a mount namespace of its own.
        "ip netns exec mdnspeer unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run/avahi-daemon && exec avahi-daemon -D -f /run/mdns-peer/avahi-daemon.conf --no-chroot --no-drop-root --no-rlimits'",
      ].join('\n'),
    );
    try {
      // Only the peer runs avahi-daemon since stoppedAt: its startup line means it holds the name.
      await waitFor(
        'the other appliance to hold backup.local',
        async () =>
          /Host name is backup\.local\./.test(
            await vm.sh(
              `journalctl -b --no-pager -o cat SYSLOG_IDENTIFIER=avahi-daemon --since @${stoppedAt}`,
            ),
          ) || undefined,
        MINUTE,
        2000,
      );
      const serialFrom = vm.serial().length;
      await vm.sh('systemctl start avahi-daemon.socket avahi-daemon.service');
      await waitFor(
        'avahi to take backup-2.local after the conflict',
        async () => ((await avahiName()) === 'backup-2.local' ? true : undefined),
        2 * MINUTE,
        2000,
      );
      // Both names work on the link: backup.local is the other appliance, backup-2.local is this one.
      expect(await vm.sh('avahi-resolve -4 -n backup.local')).toMatch(
        /^backup\.local\s+169\.254\.77\.2$/m,
      );
      const own = (await vm.sh("ip -4 -o addr show scope global | awk '{print $4}'"))
        .split('\n')
        .map((a) => a.split('/')[0])
        .filter(Boolean);
      const second = /^backup-2\.local\s+(\S+)$/m.exec(
        await vm.sh('avahi-resolve -4 -n backup-2.local'),
      );
      expect(own).toContain(second?.[1]);
      expect(await vm.sh('getent hosts backup-2.local')).toMatch(/backup-2\.local/);
      // The console banner follows avahi's name (redrawn within 10 s).
      await vm.waitForSerial(/Panel: http:\/\/backup-2\.local/, 2 * MINUTE, serialFrom);
    } finally {
      await vm.sh(
        [
          'ip netns pids mdnspeer | xargs -r kill',
          'ip netns del mdnspeer',
          'rm -rf /run/systemd/network/10-mdns-peer.network /run/mdns-peer',
          'networkctl reload',
          'systemctl restart avahi-daemon.service',
        ].join('; '),
      );
    }
    // Alone again, it is backup.local after a restart of avahi.
    await waitFor(
      'avahi back to backup.local',
      async () => ((await avahiName()) === 'backup.local' ? true : undefined),
      MINUTE,
      2000,
    );
  });

  it('drops what is not served: input policy drop, SSH open only because a key was given', async () => {
    const rules = await vm.sh('nft list ruleset');
    expect(rules).toMatch(/hook input priority filter; policy drop;/);
    expect(rules).toMatch(/tcp dport 22 accept/);
    expect(rules).toMatch(/tcp dport 80 redirect to :8080/);
    // The daemon's own port is reached only through the redirect.
    expect(rules).toMatch(/tcp dport 8080 ct status dnat accept/);
  });

  it('shows the setup code of SETUP-CODE.txt on the console, and the code sets the password', async () => {
    const file = await vm.sh('cat /boot/firmware/SETUP-CODE.txt');
    const code = /\b([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4})\b/.exec(file)?.[1];
    expect(code, file).toBeDefined();
    const onConsole = await vm.waitForSerial(/Setup code: (\S+)/, 2 * MINUTE);
    expect(onConsole[1]).toBe(code);
    expect((await vm.sh('stat -c %U:%G:%a /etc/backupd/setup-code')).trim()).toBe(
      'root:backupd:640',
    );

    // The daemon takes that code (appliance.setup_code_file) instead of a random one.
    const setup = await api.post('/api/setup', { code, password: 'correct horse battery staple' });
    expect(setup.status, setup.text).toBe(200);
    expect((await api.get('/api/setup')).json.needed).toBe(false);
  });

  describe('data disk', () => {
    // A blank 1 GiB USB disk, hot-plugged over QMP with a serial of its own: the serial is what
    // the owner types to confirm, so it must come through the USB descriptors into lsblk.
    const SERIAL = 'BKD0BOOT0001';
    const DISK_ID = `usb-QEMU_HARDDISK_${SERIAL}`;
    const USB_ID = 'datadisk';
    let diskFile: string;
    let mirrorFile: string;
    let pidBeforeUnplug: string;

    const health = async () => (await api.get('/api/health')).json as { mode?: string };
    const waitForMode = (mode: 'running' | 'standby', ms = DISK_EVENT_TIMEOUT) =>
      waitFor(
        `GET /api/health to say mode ${mode}`,
        async () => {
          const h = await health().catch(() => undefined);
          return h?.mode === mode ? true : undefined;
        },
        ms,
        1000,
      );
    const listed = async () =>
      ((await api.get('/api/disks')).json.disks as any[]).find((d) => d.id === DISK_ID);

    it('waits in standby with no data disk, and writes nothing under the bare /srv/backup', async () => {
      expect(await health()).toEqual({ status: 'ok', mode: 'standby' });
      const status = await api.get('/api/status');
      expect(status.status, status.text).toBe(200);
      expect(status.json.mode).toBe('standby');
      expect(status.json.alerts.map((a: { code: string }) => a.code)).toEqual([
        'data_disk_missing',
      ]);
      expect(status.json.alerts[0].fix).toMatch(/Plug the data disk in/);
      // The mount point is root's and empty: no state, no mirror folder on the SD card.
      expect((await vm.sh('stat -c %U:%a /srv/backup')).trim()).toBe('root:755');
      expect((await vm.sh('ls -A /srv/backup')).trim()).toBe('');
      expect(await vm.sh('systemctl show -p StatusText --value backupd.service')).toMatch(
        /waiting for the data disk/,
      );
    });

    it('lists a hot-plugged blank USB disk and does not touch it', async () => {
      diskFile = path.join(dir, 'data-disk.raw');
      await run('qemu-img', ['create', '-q', '-f', 'raw', diskFile, '1G']);
      const t0 = Date.now();
      await vm.qmpHotplugUsb(diskFile, USB_ID, SERIAL);
      const disk = await waitFor(
        'the USB disk in GET /api/disks',
        listed,
        DISK_EVENT_TIMEOUT,
        1000,
      );
      timings.hotplugToListedMs = Date.now() - t0;
      expect(disk).toMatchObject({
        model: 'QEMU HARDDISK',
        serial: SERIAL,
        size_bytes: 1024 ** 3,
        transport: 'usb',
        system: false,
        adopted: false,
        partitions: [],
      });
      expect(disk.summary).toMatch(/^blank/);
      // Listed, not written: no partition appeared in the guest, the file is still all zeros.
      expect((await vm.sh(`lsblk -nro TYPE ${disk.path}`)).trim()).toBe('disk');
      expect(await allZeros(diskFile)).toBe(true);
    });

    it('refuses a confirmation that does not name the disk, then adopts it with its serial', async () => {
      const wrong = await api.post('/api/disks/adopt', {
        disk: DISK_ID,
        confirm: 'QEMU HARDDISK',
        format: true,
      });
      expect(wrong.status, wrong.text).toBe(409);
      expect(wrong.json.error.code).toBe('confirmation_mismatch');
      expect(wrong.json.error.fix).toMatch(/serial/);
      expect(await allZeros(diskFile)).toBe(true);

      const t0 = Date.now();
      const ok = await api.post('/api/disks/adopt', {
        disk: DISK_ID,
        confirm: SERIAL,
        format: true,
      });
      expect(ok.status, ok.text).toBe(202);
      expect(ok.json.adoption).toMatchObject({ disk: DISK_ID, state: 'pending' });
      const adoption = await waitFor(
        'the adoption to finish',
        async () => {
          const a = (await api.get('/api/disks')).json.adoption;
          return a?.state === 'done' || a?.state === 'failed' ? a : undefined;
        },
        3 * MINUTE,
        1000,
      );
      expect(adoption, JSON.stringify(adoption)).toMatchObject({ state: 'done' });
      await waitForMode('running');
      timings.adoptToRunningMs = Date.now() - t0;

      // One ext4 partition labelled backupd, mounted at /srv/backup with noatime.
      const mount = (await vm.sh('findmnt -no SOURCE,FSTYPE,OPTIONS /srv/backup')).trim();
      const disk = await listed();
      expect(disk.partitions).toHaveLength(1);
      expect(disk.partitions[0]).toMatchObject({ fstype: 'ext4', label: 'backupd' });
      expect(disk.adopted).toBe(true);
      expect(mount).toMatch(new RegExp(`^${disk.partitions[0].path} ext4 \\S*noatime`));
      expect((await vm.sh('cat /etc/backupd/data-disk.uuid')).trim()).toBe(adoption.uuid);
      // The daemon's state now lives on the disk, and is the daemon's.
      await waitFor(
        'the state database on the data disk',
        async () =>
          (await vm.ssh('test -f /srv/backup/.backupd/state.db')).code === 0 ? true : undefined,
        MINUTE,
        1000,
      );
      expect((await vm.sh('stat -c %U /srv/backup/.backupd/state.db')).trim()).toBe('backupd');
      const status = await api.get('/api/status');
      expect(status.json.mode).toBe('running');
      expect(status.json.alerts).toEqual([]);
      expect(await vm.sh('systemctl show -p StatusText --value backupd.service')).not.toMatch(
        /waiting for the data disk/,
      ); // The push half runs inside the sandbox: its rclone rcd (started through setpriv) is up.
      await waitFor(
        'rclone rcd running as backupd',
        async () =>
          (await vm.ssh("pgrep -u backupd -f 'rclone rcd'")).code === 0 ? true : undefined,
        MINUTE,
        2000,
      );
    });

    it('pushes a file put into the mirror on the disk (to a local copy on the same disk)', async () => {
      const put = await api.put('/api/config', {
        destinations: { local: { enabled: true, path: '/srv/backup/second-copy' } },
      });
      expect(put.status, put.text).toBe(200);
      // Restarted with the disk already mounted, as after a reboot: the unplug below then proves
      // that the daemon's sandbox follows a disk that was there when it started.
      // Bounded by the unit's own stop and start timeouts (60 s + 120 s).
      await vm.sh('systemctl restart backupd.service', 4 * MINUTE);
      await waitForMode('running', 4 * MINUTE);
      mirrorFile = `written on the appliance ${Date.now()}\n`;
      await vm.sh(
        `runuser -u backupd -- sh -c 'printf %s "${mirrorFile.trim()}" > /srv/backup/google-drive/hello.txt'`,
      );
      const t0 = Date.now();
      await waitFor(
        'hello.txt pushed to /srv/backup/second-copy',
        async () => {
          const r = await vm.ssh('cat /srv/backup/second-copy/google-drive/hello.txt');
          return r.code === 0 && r.stdout === mirrorFile.trim() ? true : undefined;
        },
        2 * MINUTE,
        1000,
      );
      timings.mirrorToPushedMs = Date.now() - t0;
    });

    it('pauses with an alert when the disk is unplugged, and resumes when it is back, losing nothing', async () => {
      pidBeforeUnplug = await unit('MainPID');
      const journalFrom = (await vm.sh('date +%s')).trim();
      let t0 = Date.now();
      await vm.qmpUnplug(USB_ID);
      await waitForMode('standby');
      timings.unplugToStandbyMs = Date.now() - t0;
      const status = await api.get('/api/status');
      expect(status.json.mode).toBe('standby');
      expect(status.json.alerts.map((a: { code: string }) => a.code)).toEqual([
        'data_disk_missing',
      ]);
      // The same process went to standby: a crash would also end in standby (systemd restarts
      // the daemon) but counts against the unit's start limit, so a few unplugs would stop it.
      const journal = await vm.sh(
        `journalctl -u backupd.service --since @${journalFrom} --no-pager -o cat`,
      );
      expect(await unit('MainPID'), journal).toBe(pidBeforeUnplug);
      expect(journal).toMatch(/ERROR \[disk\] the data disk at \/srv\/backup is gone/);
      // The helper detached the dead mount: nothing is left at /srv/backup.
      await waitFor(
        '/srv/backup unmounted',
        async () => ((await vm.ssh('mountpoint -q /srv/backup')).code !== 0 ? true : undefined),
        MINUTE,
        1000,
      );

      t0 = Date.now();
      await vm.qmpHotplugUsb(diskFile, USB_ID, SERIAL);
      await waitForMode('running');
      timings.replugToRunningMs = Date.now() - t0;
      expect((await api.get('/api/status')).json.alerts).toEqual([]);
      // Nothing lost: the mirror and the pushed copy are on the disk, the state is the same one.
      expect(await vm.sh('cat /srv/backup/google-drive/hello.txt')).toBe(mirrorFile.trim());
      expect(await vm.sh('cat /srv/backup/second-copy/google-drive/hello.txt')).toBe(
        mirrorFile.trim(),
      );
      expect((await api.get('/api/config')).json.config.destinations.local.enabled).toBe(true);
    });
  });

  it('restarts a frozen daemon through the watchdog (SIGSTOP)', async () => {
    const pid = await unit('MainPID');
    expect(Number(pid)).toBeGreaterThan(1);
    const t0 = Date.now();
    await vm.sh(`kill -STOP ${pid}`);
    const newPid = await waitFor(
      'a new backupd process after the watchdog fired',
      async () => {
        const now = await unit('MainPID');
        return now !== pid && now !== '0' && (await unit('SubState')) === 'running'
          ? now
          : undefined;
      },
      4 * MINUTE,
      2000,
    );
    timings.watchdogRestartMs = Date.now() - t0;
    expect(newPid).not.toBe(pid);
    expect(await vm.sh('journalctl -u backupd.service --no-pager -o cat')).toMatch(
      /[Ww]atchdog timeout/,
    );
    await vm.waitForPanel(2 * MINUTE, t0);
  });

  it('comes back after a reboot, without running the first boot again', async () => {
    const stamp = await vm.sh('cat /var/lib/backupd-appliance/firstboot.done');
    const code = await vm.sh('cat /etc/backupd/setup-code');
    const bootId = (await vm.sh('cat /proc/sys/kernel/random/boot_id')).trim();
    const t0 = Date.now();
    await vm.ssh('systemctl reboot', 20_000);
    await waitFor(
      'the guest to reboot',
      async () => {
        const r = await vm.ssh('cat /proc/sys/kernel/random/boot_id', 20_000);
        return r.code === 0 && r.stdout.trim() !== bootId ? true : undefined;
      },
      BOOT_TIMEOUT,
      3000,
    );
    timings.rebootToPanelMs = await vm.waitForPanel(BOOT_TIMEOUT, t0);
    await waitFor(
      'backupd running again',
      async () => ((await unit('SubState')) === 'running' ? true : undefined),
      2 * MINUTE,
      2000,
    );
    expect(await vm.sh('cat /var/lib/backupd-appliance/firstboot.done')).toBe(stamp);
    expect(await vm.sh('cat /etc/backupd/setup-code')).toBe(code);
    expect(await vm.sh('systemctl is-active avahi-daemon nftables ssh')).toMatch(
      /^active\nactive\nactive\n$/,
    );
    // The adopted disk is mounted again at boot (by its UUID, before the daemon) and the daemon
    // runs on it, with its state and mirror from before the reboot.
    const uuid = (await vm.sh('cat /etc/backupd/data-disk.uuid')).trim();
    expect((await vm.sh('findmnt -no UUID,OPTIONS /srv/backup')).trim()).toMatch(
      new RegExp(`^${uuid} \\S*noatime`),
    );
    await waitFor(
      'mode running after the reboot',
      async () => ((await api.get('/api/health')).json?.mode === 'running' ? true : undefined),
      MINUTE,
      1000,
    );
    expect((await api.get('/api/status')).json.alerts).toEqual([]);
    expect(
      await vm.sh(
        'test -f /srv/backup/.backupd/state.db && cat /srv/backup/google-drive/hello.txt',
      ),
    ).toMatch(/^written on the appliance/);
  });
});
