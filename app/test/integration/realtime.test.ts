// `backupd start` keeping the destinations current on its own: files written on the mirror
// reach a local second disk and the Ceph gateway through inotify, the queue and rclone rcd;
// a file still being written is never pushed; a rename is a rename; a deletion goes to the trash.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanEnv,
  makeHome,
  setUp,
  startDaemon,
  waitFor,
  type ApiClient,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';
import { loadTestServices } from '../helpers/services.js';
import { hashTree, remoteTree, testRclone } from '../helpers/trees.js';

let home: Home;
let daemon: RunningDaemon;
let bucket: string;
let admin: ApiClient | undefined;

const today = () => new Date().toISOString().slice(0, 10);

const same = async () =>
  JSON.stringify(await hashTree(path.join(home.secondDisk, 'google-drive'))) ===
    JSON.stringify(await hashTree(home.drive)) || undefined;

beforeAll(async () => {
  const svc = loadTestServices();
  bucket = `rt-${randomBytes(4).toString('hex')}`;
  home = await makeHome(() => ({
    // A transient S3 error on a loaded machine is retried in seconds, not the default minute.
    sync: { watch_delay_seconds: 0.2, retry_delay_seconds: 2 },
    destinations: {
      aws_s3: { enabled: true, bucket, endpoint: svc.s3.endpoint, region: svc.s3.region },
    },
  }));
  await writeFile(path.join(home.drive, 'before-start.txt'), 'written while the daemon was down\n');
  daemon = await startDaemon(
    home,
    cleanEnv({
      AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
    }),
  );
});
afterAll(async () => {
  await daemon?.stop();
  await testRclone('purge', `S3:${bucket}`).catch(() => {});
  await home?.cleanup();
});

describe('backupd start, watching the mirror', () => {
  it('pushes what was written while it was down, then every new file, to both destinations', async () => {
    await waitFor('the file from before the start at the second disk', same, 60_000);
    const acct = path.join(home.drive, 'me@example.com', 'My Drive', 'New folder');
    await mkdir(acct, { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(path.join(acct, `note-${i}.txt`), `note ${i}\n`);
    await waitFor('20 new files at the second disk', same, 60_000);
    await waitFor(
      'the S3 destination to hold the same',
      async () =>
        JSON.stringify(await remoteTree(`S3:${bucket}/google-drive`)) ===
          JSON.stringify(await hashTree(home.drive)) || undefined,
      60_000,
    );
  });

  it('copies its state and configuration (without secrets) to .backupd/ at each destination', async () => {
    const meta = await waitFor(
      'state.db and config.yaml under .backupd/ at the second disk and S3',
      async () => {
        const disk = await hashTree(path.join(home.secondDisk, '.backupd'));
        const s3 = await remoteTree(`S3:${bucket}/.backupd`);
        return disk['state.db'] && disk['config.yaml'] && s3['state.db'] ? { disk, s3 } : undefined;
      },
      60_000,
    );
    expect(Object.keys(meta.s3).sort()).toEqual(['config.yaml', 'state.db']);
    const config = await readFile(path.join(home.secondDisk, '.backupd', 'config.yaml'), 'utf8');
    expect(config).toContain('destinations:');
    expect(config).not.toContain(loadTestServices().s3.secretAccessKey);
  });

  it('never pushes a file that is still being written', async () => {
    const half = path.join(home.drive, 'video.mp4');
    const fh = await open(half, 'w');
    await fh.write(randomBytes(1024 * 1024));
    await writeFile(path.join(home.drive, 'marker.txt'), 'after the half-written file\n');
    await waitFor(
      'the marker at the second disk',
      async () => (await hashTree(path.join(home.secondDisk, 'google-drive')))['marker.txt'],
      30_000,
    );
    expect(
      (await hashTree(path.join(home.secondDisk, 'google-drive')))['video.mp4'],
    ).toBeUndefined();
    await fh.write(randomBytes(1024 * 1024));
    await fh.close();
    await waitFor('the finished file at the second disk', same, 30_000);
  });

  it('moves a renamed folder and keeps a deleted file in the trash', async () => {
    await rename(
      path.join(home.drive, 'me@example.com', 'My Drive', 'New folder'),
      path.join(home.drive, 'me@example.com', 'My Drive', 'Notes'),
    );
    const gone = await readFile(path.join(home.drive, 'marker.txt'));
    await rm(path.join(home.drive, 'marker.txt'));
    await waitFor('the rename and the deletion at the second disk', same, 30_000);
    const trash = await hashTree(path.join(home.secondDisk, '.trash', today(), 'google-drive'));
    expect(trash['marker.txt']).toBe(createHash('sha256').update(gone).digest('hex'));
  });

  it('holds a mass deletion until the owner confirms it', async () => {
    admin ??= await setUp(daemon);
    const dir = path.join(home.drive, 'Bulk');
    await mkdir(dir);
    for (let i = 0; i < 60; i++) await writeFile(path.join(dir, `f${i}.txt`), `file ${i}\n`);
    await waitFor('60 files at the second disk', same, 60_000);
    for (let i = 0; i < 40; i++) await rm(path.join(dir, `f${i}.txt`));
    const held = await waitFor('the deletions to be held', async () => {
      const r = await admin!.get('/api/sync/deletions');
      return r.json.held > 0 ? r.json : undefined;
    });
    expect(held.alert.message).toContain('held');
    // Deletions below the guard's minimum (20) may have gone through before it closed.
    const atDisk = await hashTree(path.join(home.secondDisk, 'google-drive'));
    expect(Object.keys(atDisk).filter((p) => p.startsWith('Bulk/')).length).toBeGreaterThan(40);
    const confirm = await admin!.post('/api/sync/deletions/confirm');
    expect(confirm.json.released).toBeGreaterThan(0);
    await waitFor('the confirmed deletions at the second disk', same, 60_000);
    const trash = await hashTree(
      path.join(home.secondDisk, '.trash', today(), 'google-drive', 'Bulk'),
    );
    expect(Object.keys(trash)).toHaveLength(40);
  });

  it('reports each destination, and pauses and resumes a source', async () => {
    admin ??= await setUp(daemon);
    let last = '';
    const d = await waitFor(
      () => `both destinations to have caught up (last answer: ${last})`,
      async () => {
        const r = await admin!.get('/api/destinations');
        last = r.text;
        return r.json.destinations.every(
          (x: { backlog: { pending: number; running: number } }) =>
            x.backlog.pending + x.backlog.running === 0,
        )
          ? r
          : undefined;
      },
      60_000,
    );
    expect(d.json.destinations.map((x: { name: string }) => x.name)).toEqual(['aws_s3', 'local']);
    for (const x of d.json.destinations) {
      expect(x).toMatchObject({ health: 'ok', error: null, backlog: { pending: 0, failed: 0 } });
      expect(x.files).toBeGreaterThan(20);
    }
    expect((await admin.post('/api/sync/pause/google_drive')).json).toEqual({
      source: 'google_drive',
      paused: true,
    });
    await writeFile(path.join(home.drive, 'while-paused.txt'), 'written while paused\n');
    await writeFile(path.join(home.photos, 'photos-still-watched.jpg'), 'photos go on\n');
    await waitFor(
      'the photos source, still watched, at the second disk',
      async () =>
        (await hashTree(path.join(home.secondDisk, 'google-photos')))['photos-still-watched.jpg'],
      30_000,
    );
    expect(
      (await hashTree(path.join(home.secondDisk, 'google-drive')))['while-paused.txt'],
    ).toBeUndefined();
    expect((await admin.post('/api/sync/resume/google_drive')).json.paused).toBe(false);
    await waitFor('the file written while paused at the second disk', same, 30_000);
    expect((await admin.post('/api/sync/pause/dropbox')).status).toBe(404);
  });

  it('fills a destination added through the API with everything the mirror holds', async () => {
    admin ??= await setUp(daemon);
    const third = path.join(home.dir, 'data', 'third-disk');
    const r = await admin.put('/api/config', {
      destinations: { eu_provider: { enabled: true, type: 'local', path: './data/third-disk' } },
    });
    expect(r.status).toBe(200);
    await waitFor(
      'the new destination to hold the whole mirror',
      async () =>
        JSON.stringify(await hashTree(path.join(third, 'google-drive'))) ===
          JSON.stringify(await hashTree(home.drive)) || undefined,
      90_000,
      250,
    );
  });

  it('stops and starts pushing on request, and reports storage per source and destination', async () => {
    admin ??= await setUp(daemon);
    expect((await admin.post('/api/sync/stop')).json).toEqual({ running: false });
    await writeFile(path.join(home.drive, 'while-stopped.txt'), 'written while stopped\n');
    // A bounded look: with the watcher stopped nothing may arrive in two seconds.
    await new Promise((r) => setTimeout(r, 2000));
    expect(
      (await hashTree(path.join(home.secondDisk, 'google-drive')))['while-stopped.txt'],
    ).toBeUndefined();
    expect((await admin.post('/api/sync/start')).json).toEqual({ running: true });
    await waitFor('the file written while stopped at the second disk', same, 60_000);
    const storage = (await admin.get('/api/metrics/storage')).json;
    const mirrorFiles = Object.keys(await hashTree(home.drive)).length;
    expect(storage.sources.find((s: { source: string }) => s.source === 'google_drive').files).toBe(
      mirrorFiles,
    );
    expect(
      storage.destinations.find((d: { destination: string }) => d.destination === 'local').files,
    ).toBeGreaterThanOrEqual(mirrorFiles);
    expect((await admin.get('/api/metrics/bandwidth')).status).toBe(200);
  });
});
