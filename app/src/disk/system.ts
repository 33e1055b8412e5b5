/**
 * The real commands behind DiskSystem (helper.ts), run as root by the disk units. Each is one
 * program with fixed arguments (no shell); a non-zero exit throws with the program's stderr.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import type { DiskSystem } from './helper.js';
import { isMountPoint } from './probe.js';

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { timeout: 10 * 60_000, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (err)
          reject(new Error(`${cmd} ${args.join(' ')} failed: ${(stderr || err.message).trim()}`));
        else resolve(stdout);
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

/** The source of the mount at dir (the last one, as mounts stack), octal escapes decoded. */
export function mountSourceFrom(mountinfo: string, dir: string): string | undefined {
  const un = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let found: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    if (un(left.split(' ')[4] ?? '') === dir) found = un(right.split(' ')[1] ?? '');
  }
  return found;
}

export const realDiskSystem: DiskSystem = {
  lsblk: async () => JSON.parse(await run('lsblk', ['--json', '--bytes', '-O'])) as unknown,
  // One GPT partition of type "Linux filesystem" over the whole disk; --wipe removes the old
  // signatures so no stale filesystem shows through.
  partition: async (disk) =>
    void (await run(
      'sfdisk',
      ['--wipe', 'always', '--wipe-partitions', 'always', disk],
      'label: gpt\n,,L\n',
    )),
  settle: async () => void (await run('udevadm', ['settle', '--timeout=30'])),
  mkfs: async (part, o) =>
    void (await run('mkfs.ext4', [
      '-F',
      '-L',
      'backupd',
      '-E',
      `root_owner=${o.uid}:${o.gid}`,
      part,
    ])),
  fsUuid: async (part) => {
    const uuid = (await run('blkid', ['-s', 'UUID', '-o', 'value', part])).trim();
    if (!uuid) throw new Error(`blkid found no filesystem UUID on ${part}`);
    return uuid;
  },
  mount: async (dev, dir) =>
    void (await run('mount', ['-t', 'ext4', '-o', 'noatime,nodev,nosuid', dev, dir])),
  unmountLazy: async (dir) => void (await run('umount', ['-l', dir])),
  isMountPoint: (dir) => isMountPoint(dir),
  mountSource: (dir) => mountSourceFrom(readFileSync('/proc/self/mountinfo', 'utf8'), dir),
  exists: (p) => existsSync(p),
  userIds: (name) => {
    const line = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${name}:`));
    if (!line) throw new Error(`no user "${name}" on this system: is backupd installed?`);
    const [, , uid, gid] = line.split(':');
    return { uid: Number(uid), gid: Number(gid) };
  },
  mkdirOwned: (p, o) => {
    mkdirSync(p, { recursive: true, mode: 0o750 });
    if (statSync(p).uid !== o.uid) chownSync(p, o.uid, o.gid);
  },
};
