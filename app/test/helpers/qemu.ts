/**
 * The appliance image booted in QEMU for the boot tests: software emulation (no KVM here),
 * UEFI (OVMF), a qcow2 overlay bigger than the image (so the first boot's grow is exercised),
 * the serial console captured to a file, QMP for the machine (USB hot-plug), and SSH into the
 * guest with a key pre-seeded on the FAT partition through the product's own backup-settings.txt.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitFor } from './daemon.js';
import { REPO_ROOT } from './services.js';

const run = promisify(execFile);

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/** Builds image/out/backupd-<arch>.img, or reuses it when its inputs did not change. */
export async function buildImage(arch: 'amd64' | 'arm64'): Promise<string> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'building the appliance image needs root (mmdebstrap makes root-owned files): run the tests as root, or `sudo bash image/build.sh amd64` first',
    );
  }
  // app/dist is built by the test command already; the .deb is made from it.
  await run('bash', [path.join(REPO_ROOT, 'image', 'build.sh'), arch], {
    env: { ...process.env, BACKUPD_DEB_SKIP_BUILD: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });
  return path.join(REPO_ROOT, 'image', 'out', `backupd-${arch}.img`);
}

/** One QMP connection: commands answered in order, events kept for whoever waits for them. */
export class QmpClient {
  private buffer = '';
  private pending: Array<{ resolve: (v: any) => void; reject: (e: Error) => void }> = [];
  readonly events: Array<{ event: string; data?: any }> = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.onMessage(JSON.parse(line));
      }
    });
  }

  static async connect(socketPath: string): Promise<QmpClient> {
    const socket = await waitFor(
      `QMP socket ${socketPath}`,
      () =>
        new Promise<Socket | undefined>((resolve) => {
          const s = connect(socketPath);
          s.once('connect', () => resolve(s));
          s.once('error', () => resolve(undefined));
        }),
      30_000,
      200,
    );
    const client = new QmpClient(socket);
    // The greeting arrives first and is answered by the first pending slot.
    await new Promise((resolve, reject) => client.pending.push({ resolve, reject }));
    await client.execute('qmp_capabilities');
    return client;
  }

  private onMessage(msg: any): void {
    if (msg.event) {
      this.events.push({ event: msg.event, data: msg.data });
      return;
    }
    const waiter = this.pending.shift();
    if (!waiter) return;
    if (msg.error) waiter.reject(new Error(`QMP: ${msg.error.class}: ${msg.error.desc}`));
    else waiter.resolve(msg.return ?? msg.QMP);
  }

  execute(command: string, args?: Record<string, unknown>): Promise<any> {
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(
        JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n',
      );
    });
  }

  /** Waits for an event seen after `since` (an index into events). */
  waitForEvent(
    name: string,
    since: number,
    test: (data: any) => boolean = () => true,
    timeoutMs = 30_000,
  ) {
    return waitFor(
      `QMP event ${name}`,
      () => this.events.slice(since).find((e) => e.event === name && test(e.data)),
      timeoutMs,
      100,
    );
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface VmOptions {
  /** The raw image; it is never written (the VM writes to a qcow2 overlay). */
  image: string;
  /** Working folder: overlay, UEFI variables, serial log, QMP socket, SSH key. */
  dir: string;
  /** Size of the VM's disk, bigger than the image so the first boot grows the root. */
  diskSize?: string;
  memoryMb?: number;
  /** More lines for backup-settings.txt on the FAT partition (the SSH key is always added). */
  settings?: Record<string, string>;
}

export interface SshResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The appliance in QEMU. */
export class Vm {
  private qemu: ChildProcess | undefined;
  qmp!: QmpClient;
  httpPort = 0;
  sshPort = 0;
  startedAt = 0;
  readonly serialLog: string;
  readonly key: string;

  constructor(readonly opts: VmOptions) {
    this.serialLog = path.join(opts.dir, 'serial.log');
    this.key = path.join(opts.dir, 'id_ed25519');
  }

  get panelUrl(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** Makes the overlay, pre-seeds backup-settings.txt, starts QEMU. */
  async start(): Promise<void> {
    const { dir, image } = this.opts;
    if (!existsSync(image)) throw new Error(`${image} is missing: run bash image/build.sh amd64`);
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'boot-test', '-f', this.key]);
    const overlay = path.join(dir, 'disk.qcow2');
    await run('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      'raw',
      '-b',
      image,
      overlay,
      this.opts.diskSize ?? '6G',
    ]);
    await this.preseed(overlay);
    const vars = path.join(dir, 'OVMF_VARS.fd');
    copyFileSync(OVMF_VARS, vars);
    writeFileSync(this.serialLog, '');
    this.httpPort = await freePort();
    this.sshPort = await freePort();
    const qmpSocket = path.join(dir, 'qmp.sock');
    const args = [
      ...['-machine', 'q35', '-accel', 'tcg', '-cpu', 'max', '-smp', '2'],
      ...['-m', String(this.opts.memoryMb ?? 1536)],
      ...['-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`],
      ...['-drive', `if=pflash,format=raw,unit=1,file=${vars}`],
      ...['-drive', `if=virtio,format=qcow2,file=${overlay},discard=unmap`],
      ...[
        '-netdev',
        `user,id=net0,hostfwd=tcp:127.0.0.1:${this.httpPort}-:80,hostfwd=tcp:127.0.0.1:${this.sshPort}-:22`,
      ],
      ...['-device', 'virtio-net-pci,netdev=net0'],
      // USB 3 controller for the data-disk tests' hot-plugged disks.
      ...['-device', 'qemu-xhci,id=xhci'],
      ...['-device', 'virtio-rng-pci'],
      ...['-display', 'none', '-monitor', 'none', '-serial', `file:${this.serialLog}`],
      ...['-qmp', `unix:${qmpSocket},server=on,wait=off`],
    ];
    this.startedAt = Date.now();
    this.qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    this.qemu.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    this.qemu.once('exit', (code) => {
      if (code) console.error(`qemu exited with ${code}: ${stderr}`);
    });
    this.qmp = await QmpClient.connect(qmpSocket);
  }

  /**
   * Writes backup-settings.txt onto the image's FAT partition inside the overlay: the partition
   * is copied out, changed with mtools and written back with qemu-io (no mount, no loop device).
   */
  private async preseed(overlay: string): Promise<void> {
    const { stdout } = await run('sfdisk', ['--json', this.opts.image]);
    const fat = JSON.parse(stdout).partitiontable.partitions[0] as { start: number; size: number };
    const offset = fat.start * 512;
    const length = fat.size * 512;
    const esp = path.join(this.opts.dir, 'fat.img');
    await run('dd', [
      `if=${this.opts.image}`,
      `of=${esp}`,
      'bs=1M',
      `skip=${offset}`,
      `count=${length}`,
      'iflag=skip_bytes,count_bytes',
      'conv=sparse',
      'status=none',
    ]);
    const settings = {
      ...this.opts.settings,
      SSH_AUTHORIZED_KEY: readFileSync(`${this.key}.pub`, 'utf8').trim(),
    };
    const file = path.join(this.opts.dir, 'backup-settings.txt');
    writeFileSync(
      file,
      Object.entries(settings)
        .map(([k, v]) => `${k}=${v}\r\n`)
        .join(''),
    );
    await run('mcopy', ['-o', '-i', esp, file, '::/backup-settings.txt'], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
    });
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -q -s ${esp} ${offset} ${length}`, overlay]);
  }

  serial(): string {
    return readFileSync(this.serialLog, 'utf8');
  }

  /** Waits for the serial console to show a match after `from` (a character offset). */
  waitForSerial(re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    return waitFor(
      () => `${re} on the serial console; it ends with:\n${this.serial().slice(-2000)}`,
      () => re.exec(this.serial().slice(from)) ?? undefined,
      timeoutMs,
      500,
    );
  }

  async ssh(command: string, timeoutMs = 60_000): Promise<SshResult> {
    const args = [
      ...['-i', this.key, '-p', String(this.sshPort)],
      ...['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null'],
      ...['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=15', '-o', 'LogLevel=ERROR'],
      'root@127.0.0.1',
      command,
    ];
    return new Promise((resolve) => {
      execFile('ssh', args, { timeout: timeoutMs }, (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 255) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** Runs a command in the guest and fails with its output when it exits non-zero. */
  async sh(command: string, timeoutMs = 60_000): Promise<string> {
    const r = await this.ssh(command, timeoutMs);
    if (r.code !== 0) throw new Error(`guest: ${command} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Waits until SSH answers (first boot done, sshd started). */
  waitForSsh(timeoutMs: number): Promise<string> {
    return waitFor(
      'SSH into the guest',
      async () => ((await this.ssh('true', 20_000)).code === 0 ? 'up' : undefined),
      timeoutMs,
      2000,
    );
  }

  /** Waits until the panel answers through the forwarded port 80; returns the ms since `since`. */
  async waitForPanel(timeoutMs: number, since = this.startedAt): Promise<number> {
    await waitFor(
      'the panel on the forwarded port 80',
      async () => {
        const r = await fetch(`${this.panelUrl}/api/health`, { signal: AbortSignal.timeout(5000) });
        return r.ok ? true : undefined;
      },
      timeoutMs,
      1000,
    );
    return Date.now() - since;
  }

  /** Plugs a raw disk file in as a USB mass-storage device on the xhci controller. */
  async qmpHotplugUsb(file: string, id: string, serial = id): Promise<void> {
    await this.qmp.execute('blockdev-add', {
      driver: 'raw',
      'node-name': id,
      file: { driver: 'file', filename: file },
    });
    await this.qmp.execute('device_add', {
      driver: 'usb-storage',
      bus: 'xhci.0',
      drive: id,
      id,
      serial,
    });
  }

  /** Unplugs a device added by qmpHotplugUsb, and frees its disk file. */
  async qmpUnplug(id: string): Promise<void> {
    const since = this.qmp.events.length;
    await this.qmp.execute('device_del', { id });
    await this.qmp.waitForEvent('DEVICE_DELETED', since, (d) => d?.device === id);
    await this.qmp.execute('blockdev-del', { 'node-name': id });
  }

  async stop(): Promise<void> {
    if (!this.qemu || this.qemu.exitCode !== null) return;
    const exited = new Promise((r) => this.qemu!.once('exit', r));
    try {
      await this.qmp.execute('quit');
    } catch {
      this.qemu.kill('SIGKILL');
    }
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (this.qemu.exitCode === null) this.qemu.kill('SIGKILL');
    this.qmp.close();
  }
}
