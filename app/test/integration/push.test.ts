// `backupd sync --once` pushing one mirror to three destinations at once: a local second disk,
// S3 (the Ceph gateway) and a Storage Box (OpenSSH), through rclone. Creations, overwrites,
// moves and deletions end up the same everywhere, old versions under .trash/, metadata under
// .backupd/, and a destination that fails does not stop the others.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, makeHome, runCli, syncOnce, type Home } from '../helpers/daemon.js';
import { hashTree, remoteTree, testRclone } from '../helpers/trees.js';
import { loadTestServices, storageBoxConfig, type TestServices } from '../helpers/services.js';

let svc: TestServices;
let home: Home;
let env: NodeJS.ProcessEnv;
const bucket = `push-${randomBytes(4).toString('hex')}`;
const boxPath = `box-${randomBytes(4).toString('hex')}`;
const today = new Date().toISOString().slice(0, 10);

const sync = (extraArgs: string[] = [], e = env) => syncOnce(home, e, extraArgs);

beforeAll(async () => {
  svc = loadTestServices();
  home = await makeHome(() => ({
    destinations: {
      aws_s3: {
        enabled: true,
        bucket,
        endpoint: svc.s3.endpoint,
        region: svc.s3.region,
        storage_class: 'STANDARD',
        server_side_encryption: 'none',
      },
      eu_provider: storageBoxConfig(svc.sftp, boxPath),
    },
  }));
  env = cleanEnv({
    AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
  });
  const acct = path.join(home.drive, 'someone@example.com', 'My Drive');
  await mkdir(path.join(acct, 'Taxes', '2025'), { recursive: true });
  await writeFile(path.join(acct, 'notes.txt'), 'first version\n');
  await writeFile(path.join(acct, 'Taxes', '2025', 'return.pdf'), randomBytes(3 * 1024 * 1024));
  await writeFile(path.join(acct, 'Été à Zürich — photos.txt'), 'unicode names survive\n');
  await writeFile(path.join(acct, 'scratch.tmp'), 'excluded by exclude_patterns\n');
  await writeFile(path.join(acct, 'half-downloaded.pdf.backupd-partial'), 'never pushed\n');
  await mkdir(path.join(home.photos, 'someone@example.com', '2024', '07', '14'), {
    recursive: true,
  });
  await writeFile(
    path.join(home.photos, 'someone@example.com', '2024', '07', '14', 'IMG_0001.jpg'),
    randomBytes(200_000),
  );
});

afterAll(async () => {
  await testRclone('purge', `S3:${bucket}`).catch(() => {});
  await home?.cleanup();
});

const pushed = (t: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(t).filter(([p]) => !p.endsWith('.tmp') && !p.endsWith('.backupd-partial')),
  );

describe('sync --once to three destinations', () => {
  it('sends the whole mirror to each, verified, with the metadata under .backupd/', async () => {
    const { code, summary, stderr } = await sync();
    expect(stderr).toBe('');
    expect(summary.destinations.local.error).toBeUndefined();
    expect(summary.destinations.aws_s3.error).toBeUndefined();
    expect(summary.destinations.eu_provider.error).toBeUndefined();
    expect(code).toBe(0);
    for (const name of ['local', 'aws_s3', 'eu_provider']) {
      expect(summary.destinations[name]).toMatchObject({ ok: true, transferred: 4, verified: 4 });
    }
    const drive = pushed(await hashTree(home.drive));
    const photos = await hashTree(home.photos);
    expect(Object.keys(drive)).toHaveLength(3);
    expect(await hashTree(path.join(home.secondDisk, 'google-drive'))).toEqual(drive);
    expect(await hashTree(path.join(home.secondDisk, 'google-photos'))).toEqual(photos);
    expect(await remoteTree(`S3:${bucket}/google-drive`)).toEqual(drive);
    expect(await remoteTree(`S3:${bucket}/google-photos`)).toEqual(photos);
    expect(await remoteTree(`BOX:${boxPath}/google-drive`)).toEqual(drive);
    const meta = await remoteTree(`BOX:${boxPath}/.backupd`);
    expect(Object.keys(meta).sort()).toEqual(['config.yaml', 'state.db']);
    const s3Meta = await remoteTree(`S3:${bucket}/.backupd`);
    expect(Object.keys(s3Meta).sort()).toEqual(['config.yaml', 'state.db']);
  });

  it('sends nothing the second time', async () => {
    const { code, summary } = await sync();
    expect(code).toBe(0);
    for (const name of ['local', 'aws_s3', 'eu_provider'])
      expect(summary.destinations[name]).toMatchObject({ ok: true, transferred: 0, trashed: 0 });
  });

  it('mirrors overwrites, moves and deletions, keeping every old version under .trash/', async () => {
    const acct = path.join(home.drive, 'someone@example.com', 'My Drive');
    const oldNotes = await readFile(path.join(acct, 'notes.txt'));
    const oldReturn = await readFile(path.join(acct, 'Taxes', '2025', 'return.pdf'));
    await writeFile(path.join(acct, 'notes.txt'), 'second version, longer than the first\n');
    await mkdir(path.join(acct, 'Archive'), { recursive: true });
    await rename(
      path.join(acct, 'Taxes', '2025', 'return.pdf'),
      path.join(acct, 'Archive', 'return-2025.pdf'),
    );
    await rm(path.join(acct, 'Été à Zürich — photos.txt'));
    await writeFile(path.join(acct, 'new.txt'), 'a new file\n');

    const dry = await sync(['--dry-run']);
    expect(dry.code).toBe(0);
    const mine = (f: string) => `google-drive/someone@example.com/My Drive/${f}`;
    for (const name of ['local', 'aws_s3', 'eu_provider']) {
      const plan = dry.summary.destinations[name];
      expect(plan.would_send).toEqual([mine('new.txt'), mine('notes.txt')]);
      expect(plan.would_move).toEqual([
        { from: mine('Taxes/2025/return.pdf'), to: mine('Archive/return-2025.pdf') },
      ]);
      expect(plan.would_trash).toEqual([mine('Été à Zürich — photos.txt')]);
    }
    expect(await hashTree(path.join(home.secondDisk, '.trash'))).toEqual({});

    const { code, summary } = await sync();
    expect(code).toBe(0);
    const drive = pushed(await hashTree(home.drive));
    expect(await hashTree(path.join(home.secondDisk, 'google-drive'))).toEqual(drive);
    expect(await remoteTree(`S3:${bucket}/google-drive`)).toEqual(drive);
    expect(await remoteTree(`BOX:${boxPath}/google-drive`)).toEqual(drive);

    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    // The moved file was moved at each destination, not sent again and not trashed.
    const expectedTrash = {
      'someone@example.com/My Drive/notes.txt': sha(oldNotes),
      'someone@example.com/My Drive/Été à Zürich — photos.txt': expect.any(String),
    };
    expect(await hashTree(path.join(home.secondDisk, '.trash', today, 'google-drive'))).toEqual(
      expectedTrash,
    );
    expect(await remoteTree(`S3:${bucket}/.trash/${today}/google-drive`)).toEqual(expectedTrash);
    expect(await remoteTree(`BOX:${boxPath}/.trash/${today}/google-drive`)).toEqual(expectedTrash);
    expect(drive['someone@example.com/My Drive/Archive/return-2025.pdf']).toBe(sha(oldReturn));
    for (const name of ['local', 'aws_s3', 'eu_provider'])
      expect(summary.destinations[name]).toMatchObject({
        ok: true,
        transferred: 2,
        moved: 1,
        trashed: 2,
        verified: 2,
        left: 0,
      });
  });

  it('keeps pushing to the healthy destinations when one fails, and says how to fix the other', async () => {
    await writeFile(
      path.join(home.drive, 'someone@example.com', 'My Drive', 'after-failure.txt'),
      'x\n',
    );
    const bad = cleanEnv({
      AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: 'wrong-secret-wrong-secret-wrong',
    });
    const { code, summary } = await sync([], bad);
    expect(code).toBe(1);
    expect(summary.ok).toBe(false);
    expect(summary.destinations.aws_s3.ok).toBe(false);
    expect(summary.destinations.aws_s3.error.fix).toMatch(/access key/i);
    expect(summary.destinations.eu_provider).toMatchObject({ ok: true, transferred: 1 });
    expect(summary.destinations.local).toMatchObject({ ok: true, transferred: 1 });

    const status = await runCli(['status', '--json', '--config', home.config], { env });
    const dests = JSON.parse(status.stdout).destinations as {
      name: string;
      health: string;
      error: unknown;
    }[];
    expect(dests.find((d) => d.name === 'aws_s3')).toMatchObject({
      health: 'failing',
      error: { fix: expect.stringMatching(/access key/i) },
    });
    expect(dests.find((d) => d.name === 'local')).toMatchObject({ health: 'ok', error: null });

    const healed = await sync();
    expect(healed.code).toBe(0);
    expect(healed.summary.destinations.aws_s3).toMatchObject({ ok: true, transferred: 1 });
  });

  it('refuses to push an empty mirror folder over a full destination (an unmounted disk)', async () => {
    const moved = `${home.drive}-elsewhere`;
    await rename(home.drive, moved);
    await mkdir(home.drive);
    try {
      const { code, summary } = await sync();
      expect(code).toBe(1);
      expect(summary.destinations.local.error.message).toContain('is empty');
      expect(summary.destinations.local.error.fix).toContain('--allow-empty-source');
      expect(
        Object.keys(await hashTree(path.join(home.secondDisk, 'google-drive'))).length,
      ).toBeGreaterThan(0);
      await rm(home.drive, { recursive: true });
      const missing = await sync();
      expect(missing.code).toBe(1);
      expect(missing.summary.destinations.local.error.message).toContain('does not exist');
    } finally {
      await rm(home.drive, { recursive: true, force: true });
      await rename(moved, home.drive);
    }
  });
});
