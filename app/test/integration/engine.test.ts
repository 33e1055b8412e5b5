// The queue-driven push engine against the real servers, both at once: the Ceph gateway (S3) and
// the SSH Storage Box stand-in (SFTP), through one long-lived `rclone rcd`. Whatever the mirror
// does ends up the same at both, old versions under .trash/, and a renamed folder is moved at
// the destinations, not sent again.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '../../src/mirror/reconcile.js';
import { PushEngine } from '../../src/push/engine.js';
import { Intake } from '../../src/push/intake.js';
import { RcloneDaemon } from '../../src/push/rcd.js';
import { hashTree, remoteTree, testRclone } from '../helpers/trees.js';
import { openState, type State } from '../../src/state/index.js';
import {
  loadTestServices,
  s3RemoteEnv,
  sftpRemoteEnv,
  type TestServices,
} from '../helpers/services.js';

const logger = pino({ level: process.env.TEST_LOG ?? 'silent' });
const bucket = `engine-${randomBytes(4).toString('hex')}`;
const boxPath = `engine-${randomBytes(4).toString('hex')}`;
const today = () => new Date().toISOString().slice(0, 10);
let svc: TestServices;
let dir: string;
let root: string;
let state: State;
let rcd: RcloneDaemon;
let engine: PushEngine;
let intake: Intake;

/** What the watcher will do: find the changes and queue them; then wait until both are done. */
async function pushChanges() {
  await reconcile({
    source: 'google_drive',
    root,
    state,
    exclude: () => false,
    onChanges: (c) => intake.submit(c),
  });
  expect(await engine.drained({ timeoutMs: 120_000 })).toBe(true);
  expect(await state.queue.counts()).toMatchObject({ pending: 0, running: 0, failed: 0 });
}

beforeAll(async () => {
  svc = loadTestServices();
  dir = await mkdtemp(path.join(tmpdir(), 'backupd-engine-'));
  root = path.join(dir, 'google-drive');
  await mkdir(root);
  state = openState({ kind: 'sqlite', path: path.join(dir, 'state.db') });
  const s3 = s3RemoteEnv('BKP_S3', svc.s3);
  const box = sftpRemoteEnv('BKP_BOX', svc.sftp);
  await testRclone('mkdir', `S3:${bucket}`);
  rcd = await RcloneDaemon.start({ remotes: { ...s3, ...box }, logger });
  engine = new PushEngine({
    state,
    rc: rcd,
    logger,
    destinations: [
      { name: 'aws_s3', remote: { remote: 'BKP_S3', backend: 's3', root: bucket, env: s3 } },
      {
        name: 'eu_provider',
        remote: { remote: 'BKP_BOX', backend: 'sftp', root: boxPath, env: box },
        sftp: svc.sftp,
      },
    ],
    sources: { google_drive: root },
    batchSize: 100,
    retryAttempts: 3,
    retryDelayMs: 500,
  });
  intake = await new Intake({
    state,
    destinations: () => ['aws_s3', 'eu_provider'],
    logger,
    onQueued: () => engine.wake(),
  }).init();
  await engine.start();
});

afterAll(async () => {
  await engine?.stop();
  await rcd?.stop();
  await state?.close();
  await testRclone('purge', `S3:${bucket}`).catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

describe('the push engine, to S3 and a Storage Box at once', () => {
  it('sends new files to both, verified', async () => {
    await mkdir(path.join(root, 'me', 'Docs'), { recursive: true });
    await writeFile(path.join(root, 'me', 'Docs', 'a.txt'), 'first version\n');
    await writeFile(path.join(root, 'me', 'Docs', 'b.bin'), randomBytes(300_000));
    await writeFile(
      path.join(root, 'me', 'Docs', 'copy of b.bin'),
      await readFile(path.join(root, 'me', 'Docs', 'b.bin')),
    );
    await pushChanges();
    const mirror = await hashTree(root);
    expect(await remoteTree(`S3:${bucket}/google-drive`)).toEqual(mirror);
    expect(await remoteTree(`BOX:${boxPath}/google-drive`)).toEqual(mirror);
    expect((await state.destinationFiles.totals()).map((t) => [t.destination, t.files])).toEqual([
      ['aws_s3', 3],
      ['eu_provider', 3],
    ]);
  });

  it('mirrors an overwrite, a rename and a deletion, old versions under .trash/', async () => {
    const docs = path.join(root, 'me', 'Docs');
    const oldA = await readFile(path.join(docs, 'a.txt'));
    await writeFile(path.join(docs, 'a.txt'), 'second version, longer\n');
    await rename(path.join(docs, 'b.bin'), path.join(docs, 'renamed.bin'));
    const gone = await readFile(path.join(docs, 'copy of b.bin'));
    await rm(path.join(docs, 'copy of b.bin'));
    await pushChanges();
    const mirror = await hashTree(root);
    expect(await remoteTree(`S3:${bucket}/google-drive`)).toEqual(mirror);
    expect(await remoteTree(`BOX:${boxPath}/google-drive`)).toEqual(mirror);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const trash = { 'me/Docs/a.txt': sha(oldA), 'me/Docs/copy of b.bin': sha(gone) };
    expect(await remoteTree(`S3:${bucket}/.trash/${today()}/google-drive`)).toEqual(trash);
    expect(await remoteTree(`BOX:${boxPath}/.trash/${today()}/google-drive`)).toEqual(trash);
  });

  it('moves a renamed folder of 100 MB at the destinations, uploading under 1 MB', async () => {
    const big = path.join(root, 'me', 'Big');
    await mkdir(big);
    await writeFile(path.join(big, 'one.bin'), randomBytes(50 * 1024 * 1024));
    // rclone 1.60 counts a server-side copy in its transferred bytes, so what really left the
    // machine is read from the kernel: the bytes the rclone process wrote, sockets included.
    const written = async () =>
      Number(/wchar: (\d+)/.exec(await readFile(`/proc/${rcd.pid}/io`, 'utf8'))![1]);
    const start = await written();
    await writeFile(path.join(big, 'two.bin'), randomBytes(50 * 1024 * 1024));
    await pushChanges();
    const before = await written();
    // The measure sees an upload: 100 MB to each of the two destinations.
    expect(before - start).toBeGreaterThan(200 * 1024 * 1024);

    await mkdir(path.join(root, 'me', 'Archive'));
    await rename(big, path.join(root, 'me', 'Archive', 'Big 2025'));
    // What the watcher reports for a folder rename: one move.
    await state.files.move('google_drive', 'me/Big', 'me/Archive/Big 2025', true, Date.now());
    await intake.submit([
      {
        source: 'google_drive',
        op: 'move',
        from_path: 'me/Big',
        rel_path: 'me/Archive/Big 2025',
        is_dir: true,
      },
    ]);
    expect(await engine.drained({ timeoutMs: 120_000 })).toBe(true);
    const sent = (await written()) - before;
    expect(sent).toBeLessThan(1024 * 1024);
    const mirror = await hashTree(root);
    expect(await remoteTree(`S3:${bucket}/google-drive`)).toEqual(mirror);
    expect(await remoteTree(`BOX:${boxPath}/google-drive`)).toEqual(mirror);
    // And the state follows: nothing to do on the next pass.
    await pushChanges();
    expect(await state.queue.counts()).toMatchObject({ pending: 0 });
  });

  it('sends a large file changed in part to the Storage Box as an rsync delta, to S3 whole', async () => {
    const file = path.join(root, 'me', 'Docs', 'mailbox.mbox');
    const first = randomBytes(8 * 1024 * 1024);
    await writeFile(file, first);
    await pushChanges();
    const before = { s3: engine.countersOf('aws_s3')!, box: engine.countersOf('eu_provider')! };

    const second = Buffer.from(first);
    randomBytes(4096).copy(second, 4 * 1024 * 1024);
    await writeFile(file, second);
    await pushChanges();
    const s3 = engine.countersOf('aws_s3')!;
    const box = engine.countersOf('eu_provider')!;
    // S3 has no deltas: the whole file again. The Storage Box: a few blocks and the checksums.
    expect(s3.bytes - before.s3.bytes).toBe(second.length);
    const boxSent = box.bytes - before.box.bytes;
    expect(boxSent).toBeGreaterThan(4096);
    expect(boxSent).toBeLessThan(second.length * 0.05);
    console.log(`rsync delta through the engine: ${boxSent} B for 4 KiB changed in 8 MiB`);
    const mirror = await hashTree(root);
    expect(await remoteTree(`S3:${bucket}/google-drive`)).toEqual(mirror);
    expect(await remoteTree(`BOX:${boxPath}/google-drive`)).toEqual(mirror);
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    for (const trash of [`S3:${bucket}`, `BOX:${boxPath}`])
      expect(
        (await remoteTree(`${trash}/.trash/${today()}/google-drive`))['me/Docs/mailbox.mbox'],
      ).toBe(sha(first));
  });
});
