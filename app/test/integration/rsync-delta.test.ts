// rsync delta transfers to the Storage Box stand-in (OpenSSH + rsync of scripts/test-services.sh).
// The stand-in's files are on this machine under services.json's `root` (the account's home), so
// what arrived, its mtime and the trash are read straight from disk.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RsyncError, sendDelta, type DeltaRequest, type SshTarget } from '../../src/push/rsync.js';
import { waitFor } from '../helpers/daemon.js';
import { loadTestServices, type SftpService } from '../helpers/services.js';
import { tempDirs } from '../helpers/tmp.js';
import { testRclone } from '../helpers/trees.js';

const exec = promisify(execFile);
const tmp = tempDirs('backupd-rsync-', { keep: 'file' });
const MiB = 1024 * 1024;

let sftp: SftpService;
let ssh: SshTarget;
/** This file's own folder at the destination (relative to the login home), removed at the end. */
const box = `rsync-delta-${randomBytes(4).toString('hex')}`;
const day = new Date().toISOString().slice(0, 10);
let mirrorDir: string;

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const shaOf = async (file: string) => sha(await readFile(file));
/** Where a path relative to the login home is on this machine. */
const onBox = (...parts: string[]) => path.join(sftp.root, ...parts);

/** A send of `relPath` from `dir` into `<box>/<basename(dir)>`, the engine's layout. */
function request(dir: string, relPath: string, extra: Partial<DeltaRequest> = {}): DeltaRequest {
  const folder = path.basename(dir);
  return {
    ssh,
    mirrorDir: dir,
    relPath,
    remoteDir: `${box}/${folder}`,
    trashDir: `${box}/.trash/${day}/${folder}`,
    timeoutMs: 30_000,
    ...extra,
  };
}

/** The error a promise rejects with (the test fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<RsyncError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RsyncError);
  return err as RsyncError;
}

/** Processes whose command line contains `text`, with their process group. */
function processesWith(text: string): { pid: number; pgid: number }[] {
  const found: { pid: number; pgid: number }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmd.includes(text)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      found.push({ pid: Number(entry), pgid });
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** Live (non-zombie) processes of a process group. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, , group] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(group) === pgid && state !== 'Z') members.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return members;
}

beforeAll(async () => {
  sftp = loadTestServices().sftp;
  ssh = {
    host: sftp.host,
    port: sftp.port,
    user: sftp.user,
    keyFile: sftp.keyFile,
    knownHostsFile: sftp.knownHostsFile,
  };
  // The destination root exists once something was pushed there (rclone creates it): as here.
  await testRclone('mkdir', `BOX:${box}`);
  mirrorDir = path.join(tmp(), 'google-drive');
  await mkdir(path.join(mirrorDir, 'vm'), { recursive: true });
});

afterAll(async () => {
  await rm(onBox(box), { recursive: true, force: true });
});

describe('sendDelta', () => {
  it('sends a large file changed in part as a small delta and keeps the old version in the trash', async () => {
    const rel = 'vm/disk.img';
    const file = path.join(mirrorDir, rel);
    const v1 = randomBytes(8 * MiB);
    await writeFile(file, v1);
    const t1 = new Date('2024-05-01T10:00:00.250Z');
    await utimes(file, t1, t1);

    const first = await sendDelta(request(mirrorDir, rel));
    // Nothing to match against yet: the whole file went.
    expect(first.literalBytes).toBe(8 * MiB);
    expect(first.matchedBytes).toBe(0);
    const dest = onBox(box, 'google-drive', rel);
    expect(await shaOf(dest)).toBe(sha(v1));
    expect((await stat(dest)).mtime.getTime()).toBe(t1.getTime());

    // 4 KiB changed in the middle, as a VM writing a block.
    const v2 = Buffer.from(v1);
    randomBytes(4096).copy(v2, 4 * MiB + 1000);
    await writeFile(file, v2);
    const t2 = new Date('2024-05-02T11:30:00.750Z');
    await utimes(file, t2, t2);

    const delta = await sendDelta(request(mirrorDir, rel));
    const share = (n: number) => ((100 * n) / v2.length).toFixed(2);
    console.log(
      `rsync delta of 8 MiB with 4 KiB changed: sent ${delta.bytesSent} B (${share(delta.bytesSent)}%), ` +
        `received ${delta.bytesReceived} B, literal ${delta.literalBytes} B (${share(delta.literalBytes)}%), ` +
        `matched ${delta.matchedBytes} B, ${delta.seconds.toFixed(2)} s ` +
        `(first, whole: sent ${first.bytesSent} B in ${first.seconds.toFixed(2)} s)`,
    );
    expect(delta.fileSize).toBe(8 * MiB);
    expect(delta.bytesSent).toBeLessThan(0.05 * v2.length);
    expect(delta.literalBytes).toBeLessThan(0.05 * v2.length);
    expect(delta.literalBytes + delta.matchedBytes).toBe(v2.length);

    expect(await shaOf(dest)).toBe(sha(v2));
    expect((await stat(dest)).mtime.getTime()).toBe(t2.getTime());
    // The replaced version, where rclone's BackupDir puts it: .trash/DAY/<folder>/<path>.
    const trashed = onBox(box, '.trash', day, 'google-drive', rel);
    expect(await shaOf(trashed)).toBe(sha(v1));
    // No temporary file left beside it.
    expect(await readdir(onBox(box, 'google-drive', 'vm'))).toEqual(['disk.img']);
  });

  it('takes names with spaces, quotes, newlines, * and a leading dash as they are', async () => {
    // The mirror folder's name is the destination folder's, so it is tested too.
    const dir = path.join(tmp(), `My "Drive" it's *`);
    const sub = `-rf $(touch pwned) 'a' "b"`;
    const name = `-n it's a "test" *\nline two.bin`;
    await mkdir(path.join(dir, sub), { recursive: true });
    // A decoy a shell glob would pick up.
    await writeFile(path.join(dir, sub, 'decoy.bin'), 'decoy');
    const file = path.join(dir, sub, name);
    const v1 = randomBytes(64 * 1024);
    await writeFile(file, v1);
    await sendDelta(request(dir, `${sub}/${name}`));
    const v2 = Buffer.concat([v1.subarray(0, 32 * 1024), randomBytes(32 * 1024)]);
    await writeFile(file, v2);
    await sendDelta(request(dir, `${sub}/${name}`));

    const folder = path.basename(dir);
    expect(await readdir(onBox(box, folder))).toEqual([sub]);
    expect(await readdir(onBox(box, folder, sub))).toEqual([name]);
    expect(await shaOf(onBox(box, folder, sub, name))).toBe(sha(v2));
    expect(await shaOf(onBox(box, '.trash', day, folder, sub, name))).toBe(sha(v1));
    // Nothing ran a shell on the names.
    expect(await readdir(sftp.root)).not.toContain('pwned');
  });

  it('refuses a wrong key and an unknown or changed host key, saying what to do', async () => {
    const dir = tmp();
    const file = path.join(mirrorDir, 'vm', 'keys.bin');
    await writeFile(file, randomBytes(1024));
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'other')]);
    const other = (await readFile(path.join(dir, 'other.pub'), 'utf8')).split(' ');

    const wrongKey = await rejection(
      sendDelta(
        request(mirrorDir, 'vm/keys.bin', { ssh: { ...ssh, keyFile: path.join(dir, 'other') } }),
      ),
    );
    expect(wrongKey.kind).toBe('auth');
    expect(wrongKey.message).toContain(
      `refused the key ${path.join(dir, 'other')} for user ${sftp.user}`,
    );
    expect(wrongKey.fix).toContain('ssh-copy-id');

    const empty = path.join(dir, 'known_hosts_empty');
    await writeFile(empty, '');
    const unknown = await rejection(
      sendDelta(request(mirrorDir, 'vm/keys.bin', { ssh: { ...ssh, knownHostsFile: empty } })),
    );
    expect(unknown.kind).toBe('host-key-unknown');
    expect(unknown.message).toContain(`is not in ${empty}`);
    expect(unknown.fix).toContain(`ssh-keyscan -p ${sftp.port} ${sftp.host} >> ${empty}`);

    // The pinned line names the stand-in but holds another key: what an impostor looks like.
    const pinned = (await readFile(sftp.knownHostsFile, 'utf8')).split(' ')[0];
    const changed = path.join(dir, 'known_hosts_changed');
    await writeFile(changed, `${pinned} ${other[0]} ${other[1]}\n`);
    const impostor = await rejection(
      sendDelta(request(mirrorDir, 'vm/keys.bin', { ssh: { ...ssh, knownHostsFile: changed } })),
    );
    expect(impostor.kind).toBe('host-key-changed');
    expect(impostor.fix).toContain('Hetzner Console');

    for (const err of [wrongKey, unknown, impostor]) {
      expect(err.retryable).toBe(false);
      expect(err.fallback).toBe(false);
    }
    // Nothing reached the destination.
    expect(await readdir(onBox(box, 'google-drive', 'vm'))).not.toContain('keys.bin');
  });

  it('says when the destination folder is missing, and never follows a symlink', async () => {
    const missing = await rejection(
      sendDelta(
        request(mirrorDir, 'vm/disk.img', {
          remoteDir: `${box}/not-there/google-drive`,
          trashDir: `${box}/.trash/${day}/google-drive`,
        }),
      ),
    );
    expect(missing.kind).toBe('no-folder');
    expect(missing.fallback).toBe(true);

    const outside = path.join(tmp(), 'secret.txt');
    await writeFile(outside, 'not part of the mirror');
    await symlink(outside, path.join(mirrorDir, 'vm', 'link.txt'));
    const link = await rejection(sendDelta(request(mirrorDir, 'vm/link.txt')));
    expect(link.kind).toBe('unsafe-path');
    await symlink(path.dirname(outside), path.join(mirrorDir, 'linked-dir'));
    const viaDir = await rejection(
      sendDelta(request(mirrorDir, `linked-dir/${path.basename(outside)}`)),
    );
    expect(viaDir.kind).toBe('unsafe-path');
    expect(await readdir(onBox(box, 'google-drive'))).toEqual(['vm']);
  });

  it('leaves the previous version intact at the final name when aborted', async () => {
    const rel = 'vm/abort.img';
    const file = path.join(mirrorDir, rel);
    const v1 = randomBytes(8 * MiB);
    await writeFile(file, v1);
    await sendDelta(request(mirrorDir, rel));
    // Entirely new content at 256 KiB/s: some 30 s of sending, far more than the test waits.
    const v2 = randomBytes(8 * MiB);
    await writeFile(file, v2);

    const controller = new AbortController();
    const sending = sendDelta(
      request(mirrorDir, rel, { bwlimitKiBps: 256, signal: controller.signal }),
    );
    sending.catch(() => undefined);
    // rsync builds the new version in a temporary file beside the old one: wait for data there.
    const vm = onBox(box, 'google-drive', 'vm');
    const temp = await waitFor(
      'the new version to be arriving in a temporary file',
      async () => {
        for (const f of await readdir(vm)) {
          if (!f.startsWith('.abort.img.')) continue;
          const s = await stat(path.join(vm, f)).catch(() => undefined);
          if (s && s.size > 0) return f;
        }
        return undefined;
      },
      20_000,
      50,
    );
    // Its command line names the file as `<mirror>/./<path>` (see rsyncArgs).
    const [rsync] = processesWith(`${mirrorDir}/./${rel}`);
    expect(rsync).toBeDefined();
    const members = groupMembers(rsync!.pgid);
    expect(members.length).toBeGreaterThanOrEqual(2); // rsync and its ssh

    const aborted = Date.now();
    controller.abort();
    const err = await rejection(sending);
    expect(err.kind).toBe('aborted');
    expect(Date.now() - aborted).toBeLessThan(6_000);
    // rsync and its ssh are gone.
    await waitFor(
      `rsync's process group ${rsync!.pgid} to end`,
      () => (groupMembers(rsync!.pgid).length === 0 ? true : undefined),
      10_000,
    );

    expect(await shaOf(path.join(vm, 'abort.img'))).toBe(sha(v1));
    // The server's rsync removes its temporary file once the connection is gone.
    await waitFor(
      `the temporary file ${temp} to be removed`,
      async () => ((await readdir(vm)).includes(temp) ? undefined : true),
      10_000,
    );
    // Nothing was replaced, so nothing went to the trash.
    await expect(stat(onBox(box, '.trash', day, 'google-drive', rel))).rejects.toThrow();
    // A later send completes normally.
    const done = await sendDelta(request(mirrorDir, rel));
    expect(done.fileSize).toBe(8 * MiB);
    expect(await shaOf(path.join(vm, 'abort.img'))).toBe(sha(v2));
    expect(await shaOf(onBox(box, '.trash', day, 'google-drive', rel))).toBe(sha(v1));
  });
});
