// The push half under trouble: the daemon killed with SIGKILL in the middle of pushing many
// files, and S3 unreachable for a while. Nothing is lost, nothing verified is sent again, and the
// healthy destination never waits for the sick one.
import Database from 'better-sqlite3';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  freePort,
  makeHome,
  startDaemon,
  waitFor,
  type Home,
} from '../helpers/daemon.js';
import { loadTestServices, rcloneEnv, s3RemoteEnv, storageBoxConfig } from '../helpers/services.js';
import { hashTree, testRclone } from '../helpers/trees.js';

const exec = promisify(execFile);
const homes: Home[] = [];
const buckets: string[] = [];
const boxes: string[] = [];
afterAll(async () => {
  for (const b of buckets) await testRclone('purge', `S3:${b}`).catch(() => {});
  for (const b of boxes)
    await rm(path.join(loadTestServices().sftp.root, b), { recursive: true, force: true });
  for (const h of homes) await h.cleanup();
});

/** A TCP relay to the S3 gateway that the test can cut and restore: S3 unreachable, for this daemon only. */
async function relay(target: { host: string; port: number }) {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const up = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = connect(target.port, target.host);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => resolve());
    });
  const down = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server?.close(() => resolve());
    });
  await up();
  return { url: `http://127.0.0.1:${port}`, up, down };
}

function counts(dbPath: string) {
  const db = new Database(dbPath, { readonly: true });
  try {
    const q = (sql: string) => db.prepare(sql).all() as Record<string, number | string>[];
    return {
      verified: Object.fromEntries(
        q(
          "SELECT destination, COUNT(*) AS n FROM destination_files WHERE state = 'verified' GROUP BY destination",
        ).map((r) => [r.destination, r.n]),
      ),
      pending: Object.fromEntries(
        q(
          "SELECT destination, COUNT(*) AS n FROM queue WHERE state IN ('pending','running','failed') GROUP BY destination",
        ).map((r) => [r.destination, r.n]),
      ),
      stamps: new Map(
        q(
          "SELECT file_id || '/' || destination AS k, verified_at FROM destination_files WHERE state = 'verified'",
        ).map((r) => [r.k as string, r.verified_at as number]),
      ),
    };
  } finally {
    db.close();
  }
}

describe('the push half under trouble', () => {
  it('after a SIGKILL mid-push, finishes without sending again what was verified', async () => {
    const svc = loadTestServices();
    const bucket = `kill-${randomBytes(4).toString('hex')}`;
    const box = `kill-${randomBytes(4).toString('hex')}`;
    buckets.push(bucket);
    boxes.push(box);
    const home = await makeHome(() => ({
      sync: { watch_delay_seconds: 0.2 },
      destinations: {
        aws_s3: { enabled: true, bucket, endpoint: svc.s3.endpoint, region: svc.s3.region },
        eu_provider: storageBoxConfig(svc.sftp, box),
      },
    }));
    homes.push(home);
    const dir = path.join(home.drive, 'many');
    await mkdir(dir);
    for (let i = 0; i < 400; i++)
      await writeFile(path.join(dir, `f${String(i).padStart(3, '0')}.bin`), randomBytes(20_000));
    const env = cleanEnv({
      AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
    });
    const db = path.join(home.dir, 'data', 'mirror', '.backupd', 'state.db');

    let daemon = await startDaemon(home, env);
    await waitFor(
      'a part of the push to be verified',
      () => {
        const c = counts(db);
        return (c.verified.aws_s3 ?? 0) > 50 && (c.verified.aws_s3 ?? 0) < 400 ? true : undefined;
      },
      60_000,
      20,
    );
    await daemon.kill9();
    const before = counts(db);

    daemon = await startDaemon(home, env);
    await waitFor(
      'every file verified at both destinations',
      () => {
        const c = counts(db);
        return c.verified.aws_s3 === 400 &&
          c.verified.eu_provider === 400 &&
          c.verified.local === 400 &&
          !c.pending.aws_s3 &&
          !c.pending.eu_provider &&
          !c.pending.local
          ? true
          : undefined;
      },
      120_000,
      200,
    );
    const after = counts(db);
    // Whatever was verified before the kill was not touched again (same verification time).
    for (const [k, t] of before.stamps) expect(after.stamps.get(k), k).toBe(t);
    const listed = await exec(
      'rclone',
      ['lsf', '-R', '--files-only', `S3:${bucket}/google-drive`],
      { env: rcloneEnv({ RCLONE_CONFIG: '/dev/null', ...s3RemoteEnv('S3', svc.s3) }) },
    );
    const names = listed.stdout.trim().split('\n');
    expect(names).toHaveLength(400);
    expect(new Set(names).size).toBe(400);
    // The Storage Box too: every file once, each the same bytes as on the mirror.
    expect(await hashTree(path.join(svc.sftp.root, box, 'google-drive'))).toEqual(
      await hashTree(home.drive),
    );
    expect(await daemon.stop()).toBe(0);
  });

  it('keeps the Storage Box current while S3 is unreachable, and drains the S3 backlog when it is back', async () => {
    const svc = loadTestServices();
    const bucket = `outage-${randomBytes(4).toString('hex')}`;
    const box = `outage-${randomBytes(4).toString('hex')}`;
    buckets.push(bucket);
    boxes.push(box);
    const s3 = await relay({ host: svc.s3.host, port: svc.s3.port });
    const home = await makeHome(() => ({
      sync: { watch_delay_seconds: 0.2, retry_delay_seconds: 1 },
      destinations: {
        aws_s3: { enabled: true, bucket, endpoint: s3.url, region: svc.s3.region },
        eu_provider: storageBoxConfig(svc.sftp, box),
      },
    }));
    homes.push(home);
    const env = cleanEnv({
      AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
    });
    const db = path.join(home.dir, 'data', 'mirror', '.backupd', 'state.db');
    const daemon = await startDaemon(home, env);
    await writeFile(path.join(home.drive, 'first.txt'), 'before the outage\n');
    await waitFor(
      'the first file at both',
      () =>
        counts(db).verified.aws_s3 === 1 &&
        counts(db).verified.eu_provider === 1 &&
        counts(db).verified.local === 1
          ? true
          : undefined,
      60_000,
    );

    await s3.down();
    for (let i = 0; i < 30; i++)
      await writeFile(path.join(home.drive, `during-${i}.txt`), `written during the outage ${i}\n`);
    await waitFor(
      'the Storage Box and the local copy to keep up during the outage',
      () =>
        counts(db).verified.local === 31 && counts(db).verified.eu_provider === 31
          ? true
          : undefined,
      60_000,
    );
    expect(counts(db).verified.aws_s3).toBe(1);
    expect(counts(db).pending.aws_s3).toBe(30);

    await s3.up();
    await waitFor(
      'the S3 backlog to drain',
      () => {
        const c = counts(db);
        return c.verified.aws_s3 === 31 && !c.pending.aws_s3 ? true : undefined;
      },
      180_000,
      250,
    );
    expect(await daemon.stop()).toBe(0);
    await s3.down();
  });
});
