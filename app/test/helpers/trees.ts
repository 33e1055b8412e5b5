// Folder trees as { relative path: SHA-256 }, to compare a mirror with what a destination holds.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadTestServices, rcloneEnv, s3RemoteEnv, sftpRemoteEnv } from './services.js';

const exec = promisify(execFile);

/** Every file below `dir`; a file that vanishes while being read (the daemon is at work) is left out. */
export async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    const data = await readFile(p).catch(() => undefined);
    if (data) out[path.relative(dir, p)] = createHash('sha256').update(data).digest('hex');
  }
  return out;
}

/** rclone run against the test services, as `S3:` (Ceph) and `BOX:` (the SFTP server). */
export function testRclone(...args: string[]) {
  const svc = loadTestServices();
  return exec('rclone', args, {
    env: rcloneEnv({
      RCLONE_CONFIG: '/dev/null',
      ...s3RemoteEnv('S3', svc.s3),
      ...sftpRemoteEnv('BOX', svc.sftp),
    }),
  });
}

/** What a test service holds below `remotePath` (e.g. `S3:bucket/google-drive`), copied back and hashed. */
export async function remoteTree(remotePath: string): Promise<Record<string, string>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'backupd-readback-'));
  try {
    await testRclone('copy', remotePath, dir);
    return await hashTree(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
