// `POST /api/config/test` against the real servers, through the built daemon: the Ceph gateway
// (S3), the SSH Storage Box stand-in and a folder. Checks report what the owner would see in the
// provider's console, nothing changes on a bucket until a fix is named in `apply`, wrong
// credentials, a missing bucket, foreign keys and host keys are named for what they are, and the
// probe objects never stay behind. Bucket state is asserted with the S3 SDK, not the daemon.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketVersioningCommand,
  ListObjectVersionsCommand,
  PutBucketLifecycleConfigurationCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText, resolveRuntime } from '../../src/config/index.js';
import { probeDestinations } from '../../src/push/probe.js';
import {
  ApiClient,
  cleanEnv,
  makeHome,
  runCli,
  setUp,
  startDaemon,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';
import {
  loadTestServices,
  sshCommand,
  storageBoxConfig,
  type TestServices,
} from '../helpers/services.js';
import { testRclone } from '../helpers/trees.js';

const exec = promisify(execFile);
const tag = randomBytes(4).toString('hex');
const bucket = `cfgtest-${tag}`;
const boxPath = `cfgtest-${tag}`;
const readOnly = `cfgtest-ro-${tag}`;
let svc: TestServices;
let s3: S3Client;
let home: Home;
let daemon: RunningDaemon;
let api: ApiClient;
let keys: string;

const test = (body: unknown = {}) => api.post('/api/config/test', body);
const dest = (json: any, name: string) => json.destinations.find((d: any) => d.name === name);
const check = (json: any, name: string, id: string) =>
  dest(json, name).checks.find((c: any) => c.id === id);

/** Every object version and delete marker in the bucket: what the probe must not leave. */
async function everything(b = bucket) {
  const v = await s3.send(new ListObjectVersionsCommand({ Bucket: b }));
  return [...(v.Versions ?? []), ...(v.DeleteMarkers ?? [])].map((o) => o.Key);
}

const ssh = (cmd: string) =>
  exec(sshCommand(svc.sftp)[0]!, [
    ...sshCommand(svc.sftp).slice(1),
    `${svc.sftp.user}@${svc.sftp.host}`,
    cmd,
  ]);

const storageBox = (over: Record<string, unknown> = {}) => {
  const { enabled: _, ...box } = storageBoxConfig(svc.sftp, boxPath);
  return { ...box, ...over };
};

beforeAll(async () => {
  svc = loadTestServices();
  // The SDK's notice about its future releases needing Node 22 is not this test's business.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  s3 = new S3Client({
    endpoint: svc.s3.endpoint,
    region: svc.s3.region,
    forcePathStyle: svc.s3.forcePathStyle,
    credentials: { accessKeyId: svc.s3.accessKeyId, secretAccessKey: svc.s3.secretAccessKey },
  });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  keys = await mkdtemp(path.join(tmpdir(), 'backupd-cfgtest-keys-'));
  home = await makeHome(() => ({
    sync: { mode: 'manual' },
    destinations: {
      aws_s3: {
        enabled: true,
        bucket,
        prefix: 'backups',
        endpoint: svc.s3.endpoint,
        region: svc.s3.region,
        storage_class: 'STANDARD',
        server_side_encryption: 'none',
      },
      eu_provider: { enabled: true, ...storageBox() },
    },
  }));
  daemon = await startDaemon(
    home,
    cleanEnv({
      AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
    }),
  );
  api = await setUp(daemon);
});

afterAll(async () => {
  await daemon?.stop();
  await home?.cleanup();
  if (keys) await rm(keys, { recursive: true, force: true });
  await ssh(`chmod -R u+w ${readOnly} 2>/dev/null; rm -rf ${readOnly}`).catch(() => {});
  await testRclone('purge', `BOX:${boxPath}`).catch(() => {});
  if (s3) {
    const v = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket })).catch(() => ({}));
    for (const o of [
      ...((v as { Versions?: { Key?: string; VersionId?: string }[] }).Versions ?? []),
      ...((v as { DeleteMarkers?: { Key?: string; VersionId?: string }[] }).DeleteMarkers ?? []),
    ])
      await s3.send(
        new DeleteObjectCommand({ Bucket: bucket, Key: o.Key, VersionId: o.VersionId }),
      );
    await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
    s3.destroy();
  }
});

describe('POST /api/config/test', () => {
  it('needs a session or an API key', async () => {
    const r = await new ApiClient(daemon.url).post('/api/config/test', {});
    expect(r.status).toBe(401);
  });

  it('tests every enabled destination for real and changes nothing on the bucket', async () => {
    const r = await test();
    expect(r.status, r.text).toBe(200);
    expect(r.json.destinations.map((d: any) => d.name)).toEqual(['aws_s3', 'eu_provider', 'local']);
    expect(r.json.duration_ms).toBeGreaterThan(0);

    const s3Checks = Object.fromEntries(
      dest(r.json, 'aws_s3').checks.map((c: any) => [c.id, c.status]),
    );
    expect(s3Checks).toEqual({
      connect: 'pass',
      probe: 'pass',
      versioning: 'warn',
      encryption: 'warn',
      lifecycle: 'warn',
    });
    expect(check(r.json, 'aws_s3', 'probe').message).toMatch(/^wrote backups\/\.backupd\/probe-/);
    const versioning = check(r.json, 'aws_s3', 'versioning');
    expect(versioning.message).toContain('versioning is off');
    expect(versioning.fix).toMatchObject({ id: 'aws_s3.enable_versioning', automatic: true });
    expect(versioning.fix.description).toContain('keeps every overwritten or deleted object');
    expect(check(r.json, 'aws_s3', 'lifecycle').fix.id).toBe('aws_s3.lifecycle_glacier');
    expect(dest(r.json, 'aws_s3')).toMatchObject({ ok: false, usable: true });

    // Offered, not done: the bucket is exactly as it was, and the probe object is gone.
    const v = await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }));
    expect(v.Status).toBeUndefined();
    await expect(
      s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket })),
    ).rejects.toMatchObject({ name: 'NoSuchLifecycleConfiguration' });
    expect(await everything()).toEqual([]);

    const box = dest(r.json, 'eu_provider');
    expect(box.checks.map((c: any) => [c.id, c.status])).toEqual([
      ['host_key', 'pass'],
      ['connect', 'pass'],
      ['probe', 'pass'],
      ['rsync', 'pass'],
    ]);
    expect(box.ok).toBe(true);
    expect(check(r.json, 'eu_provider', 'rsync').message).toMatch(/^rsync \d+\.\d+/);
    // The probe file went through rclone into <path>/.backupd/ and is gone again.
    const left = await testRclone('lsf', '-R', `BOX:${boxPath}`);
    expect(left.stdout.split('\n').filter((l) => l.includes('probe-'))).toEqual([]);

    const local = dest(r.json, 'local');
    expect(local.checks.map((c: any) => [c.id, c.status])).toEqual([
      ['folder', 'pass'],
      ['probe', 'pass'],
      ['space', 'pass'],
      // Under /tmp the "second disk" is the mirror's disk: said, with what to do.
      ['disk', 'warn'],
    ]);
    expect(local.usable).toBe(true);
    expect(check(r.json, 'local', 'space').details.free_bytes).toBeGreaterThan(0);
    expect(check(r.json, 'local', 'disk').message).toContain('same disk as the mirror');
    // Loading the SDK in the daemon printed nothing on its console.
    expect(daemon.output()).not.toContain('NodeVersionSupportWarning');
  });

  it('turns versioning on only when its fix is named, then checks again', async () => {
    const r = await test({ destination: 'aws_s3', apply: ['aws_s3.enable_versioning'] });
    expect(r.status, r.text).toBe(200);
    expect(r.json.destinations.map((d: any) => d.name)).toEqual(['aws_s3']);
    expect(r.json.applied).toEqual([
      expect.objectContaining({ id: 'aws_s3.enable_versioning', ok: true, changed: true }),
    ]);
    expect(check(r.json, 'aws_s3', 'versioning').status).toBe('pass');
    const v = await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }));
    expect(v.Status).toBe('Enabled');
    // Only what was named changed.
    await expect(
      s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket })),
    ).rejects.toMatchObject({ name: 'NoSuchLifecycleConfiguration' });
    // With versioning on, the probe's own version is deleted: no old version, no delete marker.
    expect(check(r.json, 'aws_s3', 'probe').message).toContain('with its version');
    expect(await everything()).toEqual([]);

    const again = await test({ destination: 'aws_s3', apply: ['aws_s3.enable_versioning'] });
    expect(again.json.applied[0]).toMatchObject({ ok: true, changed: false });
    expect(again.json.applied[0].message).toContain('already in place');
  });

  it('adds the Glacier rule for old versions beside the rules already there', async () => {
    await s3.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: bucket,
        LifecycleConfiguration: {
          Rules: [
            {
              ID: 'owner-uploads',
              Status: 'Enabled',
              Filter: { Prefix: '' },
              AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
            },
          ],
        },
      }),
    );
    const before = await test({ destination: 'aws_s3' });
    expect(check(before.json, 'aws_s3', 'lifecycle').status).toBe('warn');

    const r = await test({ destination: 'aws_s3', apply: ['aws_s3.lifecycle_glacier'] });
    expect(r.json.applied[0], r.text).toMatchObject({ ok: true, changed: true });
    const lifecycle = check(r.json, 'aws_s3', 'lifecycle');
    expect(lifecycle.status).toBe('pass');
    expect(lifecycle.message).toContain('GLACIER after 30 days');

    const l = await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }));
    const rules = Object.fromEntries((l.Rules ?? []).map((x) => [x.ID, x]));
    expect(Object.keys(rules).sort()).toEqual(['backupd-noncurrent-to-glacier', 'owner-uploads']);
    expect(rules['backupd-noncurrent-to-glacier']!.NoncurrentVersionTransitions).toEqual([
      { NoncurrentDays: 30, StorageClass: 'GLACIER' },
    ]);
    expect(rules['owner-uploads']!.AbortIncompleteMultipartUpload?.DaysAfterInitiation).toBe(7);
    expect(await everything()).toEqual([]);
  });

  it('answers 400 for an unknown destination or fix, saying what is allowed', async () => {
    const bad = await test({ destination: 'dropbox' });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain('unknown destination "dropbox"');
    expect(bad.json.error.message).toContain('aws_s3, eu_provider, local');

    const unknown = await test({ apply: ['aws_s3.make_it_fast'] });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error.code).toBe('unknown_fix');
    expect(unknown.json.error.message).toContain('aws_s3.enable_versioning');

    const manual = await test({ apply: ['eu_provider.enable_versioning'] });
    expect(manual.status).toBe(400);
    expect(manual.json.error.message).toContain('none can be applied automatically');

    const other = await test({ destination: 'local', apply: ['aws_s3.enable_versioning'] });
    expect(other.status).toBe(400);
    expect(other.json.error.fix).toContain('"destination": "aws_s3"');

    const garbage = await test({ apply: 'aws_s3.enable_versioning' });
    expect(garbage.status).toBe(400);
  });

  it('names a wrong secret, a wrong key id and a missing bucket, with the fix', async () => {
    const s3Eu = (over: Record<string, unknown>) =>
      api.put('/api/config', {
        destinations: {
          eu_provider: {
            enabled: false,
            type: 's3',
            endpoint: svc.s3.endpoint,
            region: svc.s3.region,
            bucket,
            access_key: svc.s3.accessKeyId,
            secret_key: `wrong-${randomBytes(8).toString('hex')}`,
            ...over,
          },
        },
      });
    expect((await s3Eu({})).status).toBe(200);
    // Not enabled, but named: tested all the same.
    const wrongSecret = await test({ destination: 'eu_provider' });
    const connect = check(wrongSecret.json, 'eu_provider', 'connect');
    expect(connect.status).toBe('fail');
    expect(connect.message).toContain('the secret key of eu_provider is wrong');
    expect(connect.fix).toMatchObject({ id: 'eu_provider.credentials', automatic: false });
    expect(connect.fix.description).toContain(
      'backupd secrets set destinations.eu_provider.secret_key',
    );
    expect(check(wrongSecret.json, 'eu_provider', 'versioning').status).toBe('skipped');
    expect(dest(wrongSecret.json, 'eu_provider')).toMatchObject({ enabled: false, usable: false });

    await s3Eu({ access_key: `NOSUCHKEY${randomBytes(6).toString('hex').toUpperCase()}` });
    const wrongId = await test({ destination: 'eu_provider' });
    expect(check(wrongId.json, 'eu_provider', 'connect').message).toContain(
      'does not know the access key id',
    );

    const missing = `cfgtest-missing-${tag}`;
    await s3Eu({ bucket: missing, secret_key: svc.s3.secretAccessKey });
    const noBucket = await test({ destination: 'eu_provider' });
    const c = check(noBucket.json, 'eu_provider', 'connect');
    expect(c.message).toBe(`there is no bucket "${missing}" at ${svc.s3.endpoint}.`);
    expect(c.fix.id).toBe('eu_provider.bucket');
  });

  it('names a key the box refuses, an unknown or changed host key, and a folder it may not write', async () => {
    const put = (over: Record<string, unknown>) =>
      api.put('/api/config', { destinations: { eu_provider: storageBox(over) } });
    const foreign = path.join(keys, 'foreign');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', foreign]);
    const impostor = path.join(keys, 'impostor');
    await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', impostor]);

    expect((await put({ ssh_key_file: foreign })).status).toBe(200);
    const refused = await test({ destination: 'eu_provider' });
    const connect = check(refused.json, 'eu_provider', 'connect');
    expect(connect.status).toBe('fail');
    expect(connect.message).toContain(`refuses the key ${foreign} for user ${svc.sftp.user}`);
    expect(connect.fix.description).toContain('ssh-copy-id');
    expect(check(refused.json, 'eu_provider', 'probe').status).toBe('skipped');

    const empty = path.join(keys, 'known_hosts_empty');
    await writeFile(empty, '');
    await put({ known_hosts_file: empty });
    const unknown = check(
      await test({ destination: 'eu_provider' }).then((r) => r.json),
      'eu_provider',
      'connect',
    );
    expect(unknown.message).toContain('is not in');
    expect(unknown.fix.description).toContain(`ssh-keyscan -p ${svc.sftp.port} ${svc.sftp.host}`);

    const pub = (await readFile(`${impostor}.pub`, 'utf8')).trim().split(' ');
    const changed = path.join(keys, 'known_hosts_changed');
    await writeFile(changed, `[${svc.sftp.host}]:${svc.sftp.port} ${pub[0]} ${pub[1]}\n`);
    await put({ known_hosts_file: changed });
    const mismatch = check(
      await test({ destination: 'eu_provider' }).then((r) => r.json),
      'eu_provider',
      'connect',
    );
    expect(mismatch.message).toContain('is not the one pinned');
    expect(mismatch.message).toContain('Nothing was sent');

    await ssh(`mkdir -p ${readOnly} && chmod 555 ${readOnly}`);
    await put({ path: `${readOnly}/backup` });
    const denied = await test({ destination: 'eu_provider' });
    expect(check(denied.json, 'eu_provider', 'connect').status).toBe('pass');
    const probe = check(denied.json, 'eu_provider', 'probe');
    expect(probe.status).toBe('fail');
    expect(probe.message).toBe(
      `user ${svc.sftp.user} may not write to "${readOnly}/backup" on ${svc.sftp.host}.`,
    );

    await put({ path: boxPath });
  });

  it('has a CLI twin: backupd config test', async () => {
    const r = await runCli(
      ['config', 'test', '--config', home.config, '--destination', 'eu_provider', '--json'],
      { env: cleanEnv() },
    );
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: true,
      destinations: [{ name: 'eu_provider', ok: true }],
    });
    expect(r.code).toBe(0);
    const text = await runCli(
      ['config', 'test', '--config', home.config, '--destination', 'local'],
      {
        env: cleanEnv(),
      },
    );
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('warn        disk');
  });
});

describe('a server that does not answer', () => {
  let server: Server;
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server?.close(r));
  });

  it('is reported within the bound, and the other destinations are still tested', async () => {
    // Accepts connections and never says a word: the worst kind of endpoint.
    server = createServer((s) => sockets.add(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const dir = await mkdtemp(path.join(tmpdir(), 'backupd-cfgtest-silent-'));
    try {
      const yamlText = [
        'sources:',
        `  google_drive: { local_path: ${dir}/mirror/google-drive }`,
        'destinations:',
        `  aws_s3: { enabled: true, bucket: silent-bucket, endpoint: "http://127.0.0.1:${port}" }`,
        `  local: { enabled: true, path: ${dir}/copy }`,
      ].join('\n');
      const file = path.join(dir, 'config.yaml');
      await writeFile(file, yamlText);
      const runtime = resolveRuntime(
        { ...parseConfigText(yamlText, file), file },
        { AWS_ACCESS_KEY_ID: 'AKIASILENT', AWS_SECRET_ACCESS_KEY: 'silent-secret-123' },
      );
      const started = Date.now();
      const r = await probeDestinations(runtime, { timeoutMs: 1000 });
      const took = Date.now() - started;
      const connect = r.destinations.find((d) => d.name === 'aws_s3')!.checks[0]!;
      expect(connect.status).toBe('fail');
      expect(connect.message).toBe(
        `http://127.0.0.1:${port} did not answer within 1 s: the endpoint is unreachable from here (network down, a firewall, or a wrong address).`,
      );
      // Two attempts of one second at most, plus the SDK's own short backoff.
      expect(took).toBeLessThan(5000);
      const local = r.destinations.find((d) => d.name === 'local')!;
      expect(local.checks.find((c) => c.id === 'probe')!.status).toBe('pass');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
