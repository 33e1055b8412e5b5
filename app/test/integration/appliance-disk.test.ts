// The appliance without its data disk: the built daemon with an `appliance` section whose
// data_disk is a plain folder (not a mount point) runs in standby (health, status alert,
// sign-in from the access db, the disks the root helper listed, an adoption request written),
// then leaves standby in-process when the disk "appears" and goes back when it "disappears".
// Tests cannot mount a filesystem: under NODE_ENV=test the mount probe takes the existence of
// BACKUPD_TEST_MOUNTED_MARKER for "mounted" (the real probe compares st_dev; unit-tested).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInventory, parseLsblk, type DisksFile } from '../../src/disk/index.js';
import {
  ApiClient,
  cleanEnv,
  makeHome,
  runCli,
  startDaemon,
  waitFor,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';
import { REPO_ROOT } from '../helpers/services.js';

const PASSWORD = 'a long appliance password';
const CODE = 'K7M2-P9QX-4RTW';
const USB_ID = 'usb-QEMU_HARDDISK_1-0000:00:04.0-1';
const USB_SERIAL = '1-0000:00:04.0-1';

let home: Home;
let daemon: RunningDaemon | undefined;
let dataDisk: string;
let spool: string;
let sd: string;
let marker: string;
let env: NodeJS.ProcessEnv;
// sd_notify as systemd reads it (the fixture of systemd.test.ts).
let receiver: ChildProcess | undefined;
let notified = '';

beforeAll(async () => {
  home = await makeHome((h) => {
    const disk = path.join(h.dir, 'srv-backup');
    const card = path.join(h.dir, 'sd-card');
    return {
      // As appliance/etc/config.yaml: everything of the daemon's on the data disk.
      sources: {
        google_drive: { local_path: `${disk}/google-drive` },
        google_photos: { local_path: `${disk}/google-photos` },
      },
      daemon: { state_dir: `${disk}/.backupd` },
      appliance: {
        data_disk: disk,
        access_db: `${card}/access.db`,
        setup_code_file: `${card}/setup-code`,
        disk_spool: path.join(h.dir, 'spool'),
      },
    };
  });
  dataDisk = path.join(home.dir, 'srv-backup');
  sd = path.join(home.dir, 'sd-card');
  spool = path.join(home.dir, 'spool');
  marker = path.join(home.dir, 'mounted');
  mkdirSync(dataDisk); // the bare mount point, as on the image
  mkdirSync(sd);
  writeFileSync(path.join(sd, 'setup-code'), `${CODE}\n`);
  mkdirSync(path.join(spool, 'requests'), { recursive: true });
  // What `backupd disk scan` lists on the appliance in QEMU with a blank USB disk plugged in.
  const lsblk = JSON.parse(
    readFileSync(
      path.join(REPO_ROOT, 'app', 'test', 'fixtures', 'lsblk', 'appliance-qemu.json'),
      'utf8',
    ),
  ) as unknown;
  const listed: DisksFile = {
    scanned_at: new Date().toISOString(),
    data_disk: { mount_point: dataDisk, mounted: false, uuid: null, device: null },
    disks: buildInventory(parseLsblk(lsblk)),
  };
  writeFileSync(path.join(spool, 'disks.json'), JSON.stringify(listed));
  env = cleanEnv({
    NODE_ENV: 'test',
    BACKUPD_TEST_MOUNTED_MARKER: marker,
    RUNTIME_DIRECTORY: path.join(home.dir, 'run'),
  });
});

afterAll(async () => {
  receiver?.kill();
  await daemon?.stop();
  await home?.cleanup();
});

const health = async (d: RunningDaemon) =>
  (await (await fetch(`${d.url}/api/health`)).json()) as { status: string; mode: string };

describe('the appliance without its data disk', () => {
  let api: ApiClient;

  it('starts in standby, accepts the first-boot setup code, and writes nothing to the bare mount point', async () => {
    daemon = await startDaemon(home, env);
    expect(await health(daemon)).toEqual({ status: 'ok', mode: 'standby' });
    expect(daemon.output()).toContain(CODE); // the code of the file, not a random one
    api = new ApiClient(daemon.url);
    const setup = await api.post('/api/setup', { code: CODE.toLowerCase(), password: PASSWORD });
    expect(setup.status).toBe(200);
    expect(readdirSync(dataDisk)).toEqual([]);
    // The standby state is in the runtime folder, the password on the "SD card".
    expect(existsSync(path.join(home.dir, 'run', 'standby', 'state.db'))).toBe(true);
    expect(readdirSync(sd)).toContain('access.db');
    expect(await daemon.stop()).toBe(0);
    daemon = undefined;
  });

  it('after a restart still in standby: READY to systemd, signing in works, and the status says why nothing runs', async () => {
    const socket = path.join(home.dir, 'notify.sock');
    receiver = spawn(
      'python3',
      [path.join(REPO_ROOT, 'app', 'test', 'fixtures', 'notify-socket.py'), socket],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    receiver.stdout!.on('data', (d: Buffer) => (notified += d));
    await waitFor('the notify socket', () => notified.includes('READY\n') || undefined);
    daemon = await startDaemon(home, { ...env, NOTIFY_SOCKET: socket });
    await waitFor(
      'READY=1 with the standby status',
      () => /READY=1\|STATUS=waiting for the data disk/.test(notified) || undefined,
    );
    expect(daemon.output()).not.toContain(CODE); // a password exists: no setup code any more
    api = new ApiClient(daemon.url);
    expect((await api.post('/api/auth/login', { password: PASSWORD })).status).toBe(200);
    const status = await api.get('/api/status');
    expect(status.status).toBe(200);
    expect(status.json.mode).toBe('standby');
    expect(status.json.state).toBe('paused');
    expect(status.json.alerts).toEqual([
      {
        code: 'data_disk_missing',
        message: expect.stringContaining(`No data disk is mounted at ${dataDisk}`),
        fix: expect.stringContaining('Plug the data disk in'),
      },
    ]);
    expect(readdirSync(dataDisk)).toEqual([]);
  });

  it('lists the disks the root helper saw, and the data disk as not mounted', async () => {
    const r = await api.get('/api/disks');
    expect(r.status).toBe(200);
    expect(r.json.data_disk).toEqual({
      mount_point: dataDisk,
      mounted: false,
      uuid: null,
      device: null,
    });
    expect(r.json.adoption).toBeNull();
    const usb = r.json.disks.find((d: { id: string }) => d.id === USB_ID);
    expect(usb).toMatchObject({
      path: '/dev/sda',
      model: 'QEMU HARDDISK',
      serial: USB_SERIAL,
      transport: 'usb',
      system: false,
      adopted: false,
      partitions: [],
    });
    expect(usb.summary).toMatch(/^blank/);
    expect(r.json.disks.filter((d: { system: boolean }) => d.system)).toHaveLength(1);
    expect((await new ApiClient(daemon!.url).get('/api/disks')).status).toBe(401);
  });

  it('refuses an adoption that does not name the disk, or names the system disk; writes a request for one that does', async () => {
    const wrong = await api.post('/api/disks/adopt', {
      disk: USB_ID,
      confirm: 'yes',
      format: true,
    });
    expect(wrong.status).toBe(409);
    expect(wrong.json.error.code).toBe('confirmation_mismatch');
    expect(wrong.json.error.fix).toMatch(/serial/);
    const system = await api.post('/api/disks/adopt', {
      disk: 'path-dev_vda',
      confirm: '/dev/vda',
      format: true,
    });
    expect(system.status).toBe(409);
    expect(system.json.error.code).toBe('system_disk');
    const missing = await api.post('/api/disks/adopt', { disk: USB_ID, confirm: USB_SERIAL });
    expect(missing.status).toBe(400); // "format" must be said, true or false
    expect(readdirSync(path.join(spool, 'requests'))).toEqual([]);

    const ok = await api.post('/api/disks/adopt', {
      disk: USB_ID,
      confirm: USB_SERIAL,
      format: true,
    });
    expect(ok.status).toBe(202);
    expect(ok.json.adoption).toMatchObject({ disk: USB_ID, state: 'pending' });
    const files = readdirSync(path.join(spool, 'requests'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/\.json$/);
    const req = JSON.parse(readFileSync(path.join(spool, 'requests', files[0]!), 'utf8'));
    expect(req).toMatchObject({
      id: ok.json.adoption.request_id,
      disk: USB_ID,
      confirm: USB_SERIAL,
      format: true,
      path: '/dev/sda',
      serial: USB_SERIAL,
      size_bytes: 8 * 1024 ** 3,
    });
    expect((await api.get('/api/disks')).json.adoption.state).toBe('pending');
    const again = await api.post('/api/disks/adopt', {
      disk: USB_ID,
      confirm: USB_SERIAL,
      format: true,
    });
    expect(again.status).toBe(409);
    expect(again.json.error.code).toBe('adoption_running');
    // The root helper took it and reported (what backupd-disk-adopt.service does).
    rmSync(path.join(spool, 'requests', files[0]!));
    writeFileSync(
      path.join(spool, 'adoption.json'),
      JSON.stringify({
        request_id: req.id,
        disk: USB_ID,
        state: 'done',
        uuid: 'a1b2c3d4-0000-4000-8000-000000000001',
      }),
    );
    expect((await api.get('/api/disks')).json.adoption).toMatchObject({ state: 'done' });
  });

  it('leaves standby in-process when the disk is mounted: the state goes onto the disk, the session stays valid', async () => {
    const before = daemon!.child.pid;
    // The disk's content appears with the mount: a file in the Drive mirror.
    mkdirSync(path.join(dataDisk, 'google-drive'), { recursive: true });
    writeFileSync(path.join(dataDisk, 'google-drive', 'notes.txt'), 'kept on the data disk\n');
    writeFileSync(marker, '');
    await waitFor(
      'health to say running',
      async () => (await health(daemon!).catch(() => undefined))?.mode === 'running' || undefined,
      15_000,
      200,
    );
    expect(daemon!.child.pid).toBe(before);
    // systemd is told the new status, never that the service stops.
    await waitFor('READY=1 running', () => /STATUS=running/.test(notified) || undefined);
    expect(notified).not.toContain('STOPPING=1');
    const status = await api.get('/api/status');
    expect(status.status).toBe(200); // the same session: the access db did not change
    expect(status.json.mode).toBe('running');
    expect(status.json.alerts).toEqual([]);
    expect(existsSync(path.join(dataDisk, '.backupd', 'state.db'))).toBe(true);
    // The push half runs: the mirror's file reaches the destination.
    const pushed = path.join(home.secondDisk, 'google-drive', 'notes.txt');
    await waitFor(`${pushed} to be pushed`, () =>
      existsSync(pushed)
        ? readFileSync(pushed, 'utf8') === 'kept on the data disk\n' || undefined
        : undefined,
    );
  });

  it('goes back to standby, with the alert logged as an error, when the disk disappears', async () => {
    rmSync(marker);
    await waitFor(
      'health to say standby',
      async () => (await health(daemon!).catch(() => undefined))?.mode === 'standby' || undefined,
      15_000,
      200,
    );
    const status = await api.get('/api/status');
    expect(status.json.alerts.map((a: { code: string }) => a.code)).toEqual(['data_disk_missing']);
    const line = daemon!
      .output()
      .split('\n')
      .find((l) => l.includes('is gone: stopping the sync'));
    expect(line).toBeDefined();
    expect(line).toMatch(/ ERROR \[disk\] /);
    expect(await daemon!.stop()).toBe(0);
    daemon = undefined;
  });

  it('reset-password acts on the access db: the next start offers the setup code again', async () => {
    const r = await runCli(['reset-password', '--config', home.config], { env });
    expect(r.code).toBe(0);
    daemon = await startDaemon(home, env);
    expect(daemon.output()).toContain(CODE);
    expect(
      (await new ApiClient(daemon.url).post('/api/auth/login', { password: PASSWORD })).status,
    ).toBe(409);
    // Untouched in standby; google-photos was made when the disk was used (an empty mirror
    // folder, so that its watcher has something to watch).
    expect(readdirSync(dataDisk).sort()).toEqual(['.backupd', 'google-drive', 'google-photos']);
  });
});
