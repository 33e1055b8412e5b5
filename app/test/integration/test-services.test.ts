// Proves that the real servers started by `bash scripts/test-services.sh start` answer the way
// the product will use them: rclone to the Ceph S3 gateway and to the SFTP server, rsync over
// ssh to the same server, and authenticated mail over STARTTLS delivered into the Maildir.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import nodemailer from 'nodemailer';
import {
  loadTestServices,
  rcloneEnv,
  s3RemoteEnv,
  sftpRemoteEnv,
  sshCommand,
} from '../helpers/services.js';

const services = loadTestServices();
const token = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
const work = mkdtempSync(path.join(tmpdir(), 'test-services-'));

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { env, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(err);
          return;
        }
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr: stderr.toString('utf8') });
      },
    );
  });
}

async function ok(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Buffer> {
  const r = await run(cmd, args, env);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  }
  return r.stdout;
}

// rclone remotes defined only by environment variables; RCLONE_CONFIG=/dev/null keeps any
// rclone.conf of the machine out of the picture.
const env = rcloneEnv({
  RCLONE_CONFIG: '/dev/null',
  ...s3RemoteEnv('ts3', services.s3),
  ...sftpRemoteEnv('tsftp', services.sftp),
});
const rclone = (...args: string[]) => ok('rclone', ['--retries', '1', ...args], env);

/** Polls `probe` until it returns a value, at most `limitMs`. */
async function pollFor<T>(what: string, limitMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${limitMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function randomFile(dir: string, name: string, size: number): { path: string; bytes: Buffer } {
  mkdirSync(dir, { recursive: true });
  const bytes = randomBytes(size);
  const file = path.join(dir, name);
  writeFileSync(file, bytes);
  return { path: file, bytes };
}

describe('test services', () => {
  it('S3 (Ceph RADOS Gateway): rclone writes to a fresh bucket and reads back the same bytes', async () => {
    const bucket = `ts-${token}`;
    const local = path.join(work, 's3');
    const { path: file, bytes } = randomFile(local, 'object.bin', 3 * 1024 * 1024 + 17);
    try {
      await rclone('mkdir', `ts3:${bucket}`);
      await rclone('copyto', file, `ts3:${bucket}/dir/object.bin`);
      const back = await rclone('cat', `ts3:${bucket}/dir/object.bin`);
      expect(back.length).toBe(bytes.length);
      expect(back.equals(bytes)).toBe(true);
      // Sizes and MD5 hashes (the gateway's ETag) agree.
      await rclone('check', local, `ts3:${bucket}/dir`);
      const listing = (await rclone('lsf', `ts3:${bucket}/dir`)).toString('utf8');
      expect(listing.trim()).toBe('object.bin');
    } finally {
      await run('rclone', ['purge', `ts3:${bucket}`], env);
    }
  });

  it('S3 refuses a wrong secret key', async () => {
    const r = await run(
      'rclone',
      ['--retries', '1', '--low-level-retries', '1', 'lsd', 'bad:'],
      rcloneEnv({
        RCLONE_CONFIG: '/dev/null',
        ...s3RemoteEnv('bad', { ...services.s3, secretAccessKey: 'not-the-secret' }),
      }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/SignatureDoesNotMatch|403/);
  });

  it('SFTP (OpenSSH): rclone writes a file and reads back the same bytes', async () => {
    const remoteDir = `${services.sftp.root}/ts-${token}/sftp`;
    const local = path.join(work, 'sftp');
    const { path: file, bytes } = randomFile(local, 'file.bin', 1024 * 1024 + 5);
    await rclone('copyto', file, `tsftp:${remoteDir}/file.bin`);
    const back = await rclone('cat', `tsftp:${remoteDir}/file.bin`);
    expect(back.equals(bytes)).toBe(true);
    // MD5 computed on the server over ssh.
    await rclone('check', local, `tsftp:${remoteDir}`);
  });

  it('rsync over ssh: a first run copies, a second transfers nothing', async () => {
    const src = path.join(work, 'rsync-src');
    randomFile(src, 'a.bin', 200_000);
    randomFile(path.join(src, 'sub'), 'b.txt', 1234);
    const ssh = sshCommand(services.sftp)
      .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a}'`))
      .join(' ');
    const dest = `${services.sftp.user}@${services.sftp.host}:${services.sftp.root}/ts-${token}/rsync/`;
    const rsync = () =>
      ok('rsync', ['-a', '--itemize-changes', '--stats', '-e', ssh, `${src}/`, dest]);
    const transferred = (out: Buffer) => {
      const m = /Number of regular files transferred: (\d+)/.exec(out.toString('utf8'));
      if (!m?.[1]) throw new Error(`no rsync stats in:\n${out.toString('utf8')}`);
      return Number(m[1]);
    };
    expect(transferred(await rsync())).toBe(2);
    const second = await rsync();
    expect(transferred(second)).toBe(0);
    // --itemize-changes prints a line per changed item: none on the second run.
    expect(second.toString('utf8')).not.toMatch(/^[<>ch.*][fdLDS]/m);
    // And what rsync wrote is what rclone sees over SFTP.
    const listing = (await rclone('lsf', '-R', `tsftp:${services.sftp.root}/ts-${token}/rsync`))
      .toString('utf8')
      .split('\n')
      .filter(Boolean)
      .sort();
    expect(listing).toEqual(['a.bin', 'sub/', 'sub/b.txt']);
  });

  it('SMTP (Exim): AUTH over STARTTLS delivers into the Maildir', async () => {
    const { smtp } = services;
    const transport = nodemailer.createTransport({
      host: smtp.host,
      port: smtp.port,
      secure: smtp.secure,
      requireTLS: smtp.starttls,
      auth: { user: smtp.user, pass: smtp.password },
      tls: { ca: readFileSync(smtp.caFile) },
    });
    const subject = `test-services ${token}`;
    try {
      const info = await transport.sendMail({
        from: 'backupd@backup.local',
        to: 'owner@example.com',
        subject,
        text: `Hello from the test services check ${token}.\n`,
      });
      expect(info.accepted).toEqual(['owner@example.com']);
    } finally {
      transport.close();
    }
    const newDir = path.join(smtp.maildir, 'new');
    const message = await pollFor('the message in the Maildir', 10_000, () => {
      for (const name of readdirSync(newDir)) {
        const text = readFileSync(path.join(newDir, name), 'utf8');
        if (text.includes(subject)) return text;
      }
      return undefined;
    });
    expect(message).toMatch(/^Envelope-to: owner@example\.com$/m);
    expect(message).toMatch(/^Return-path: <backupd@backup\.local>$/m);
    expect(message).toContain(`Hello from the test services check ${token}.`);
  });

  it('SMTP refuses a wrong password and mail without AUTH', async () => {
    const { smtp } = services;
    const base = {
      host: smtp.host,
      port: smtp.port,
      secure: smtp.secure,
      requireTLS: true,
      tls: { ca: readFileSync(smtp.caFile) },
    };
    const mail = { from: 'backupd@backup.local', to: 'owner@example.com', subject: 'x', text: 'x' };
    const wrong = nodemailer.createTransport({ ...base, auth: { user: smtp.user, pass: 'wrong' } });
    await expect(wrong.sendMail(mail)).rejects.toMatchObject({ responseCode: 535 });
    wrong.close();
    const anonymous = nodemailer.createTransport(base);
    await expect(anonymous.sendMail(mail)).rejects.toMatchObject({ responseCode: 530 });
    anonymous.close();
  });
});
