#!/usr/bin/env node
// Benchmark of the push half against plain rclone, on the same data and the same S3 server (the
// Ceph gateway of scripts/test-services.sh), in the same run:
//  1. the initial push of N files: `backupd start` until every file is verified at S3, against
//     `rclone copy --transfers 4` of the same tree to another bucket;
//  2. with everything backed up, one file changed: the time until backupd has it verified at S3,
//     against the time of `rclone sync` of the whole tree (what a cron-driven script does).
// Prints the figures; docs/benchmarks.md records them with the machine they came from.
//
//   node bench/push.mjs [files=10000] [size=102400]
// Needs: npm run build, bash scripts/test-services.sh start.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from '../node_modules/better-sqlite3/lib/index.js';

const exec = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = Number(process.argv[2] ?? 10_000);
const size = Number(process.argv[3] ?? 102_400);
const svc = JSON.parse(
  readFileSync(
    path.join(process.env.TEST_SERVICES_DIR ?? path.join(root, '.test-services'), 'services.json'),
    'utf8',
  ),
);
const s3env = (name) => ({
  [`RCLONE_CONFIG_${name}_TYPE`]: 's3',
  [`RCLONE_CONFIG_${name}_PROVIDER`]: 'Ceph',
  [`RCLONE_CONFIG_${name}_ACCESS_KEY_ID`]: svc.s3.accessKeyId,
  [`RCLONE_CONFIG_${name}_SECRET_ACCESS_KEY`]: svc.s3.secretAccessKey,
  [`RCLONE_CONFIG_${name}_ENDPOINT`]: svc.s3.endpoint,
  [`RCLONE_CONFIG_${name}_FORCE_PATH_STYLE`]: 'true',
});
const env = { ...process.env, ...s3env('S3'), RCLONE_CONFIG: '/dev/null' };
delete env.AWS_CA_BUNDLE;
const rclone = (...args) => exec('rclone', args, { env, maxBuffer: 64 * 1024 * 1024 });
const seconds = async (fn) => {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e9;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fmt = (n, d = 1) => n.toFixed(d);

const dir = mkdtempSync(path.join(tmpdir(), 'backupd-bench-'));
const mirror = path.join(dir, 'data', 'mirror', 'google-drive');
const tag = randomBytes(3).toString('hex');
const baseBucket = `bench-rclone-${tag}`;
const ourBucket = `bench-backupd-${tag}`;
let daemon;
try {
  console.log(
    `# push benchmark: ${files} files of ${size} bytes, S3 = Ceph RGW at ${svc.s3.endpoint}`,
  );
  console.log(
    `# machine: ${cpus().length} x ${cpus()[0].model}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}, ${(await exec('rclone', ['version'])).stdout.split('\n')[0]}`,
  );
  for (let i = 0; i < files; i++) {
    const sub = path.join(mirror, `d${Math.floor(i / 500)}`);
    if (i % 500 === 0) mkdirSync(sub, { recursive: true });
    writeFileSync(path.join(sub, `f${i}.bin`), randomBytes(size));
  }
  mkdirSync(path.join(dir, 'data', 'mirror', 'google-photos'));
  await rclone('mkdir', `S3:${baseBucket}`);
  await rclone('mkdir', `S3:${ourBucket}`);

  // 1. Initial push.
  const baseInitial = await seconds(() =>
    rclone('copy', mirror, `S3:${baseBucket}/google-drive`, '--transfers', '4'),
  );
  const port = 18000 + Math.floor(Math.random() * 1000);
  writeFileSync(
    path.join(dir, 'config.yaml'),
    [
      'sources:',
      '  google_drive: { local_path: ./data/mirror/google-drive }',
      '  google_photos: { local_path: ./data/mirror/google-photos }',
      'destinations:',
      `  aws_s3: { enabled: true, bucket: ${ourBucket}, endpoint: "${svc.s3.endpoint}", region: default }`,
      'sync: { watch_delay_seconds: 1, batch_size: 200 }',
      `daemon: { api_host: 127.0.0.1, api_port: ${port}, log_level: WARNING }`,
      '',
    ].join('\n'),
  );
  const dbPath = path.join(dir, 'data', 'mirror', '.backupd', 'state.db');
  const verified = () => {
    try {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      try {
        return db
          .prepare(
            "SELECT COUNT(*) AS n FROM destination_files WHERE destination = 'aws_s3' AND state = 'verified'",
          )
          .get().n;
      } finally {
        db.close();
      }
    } catch {
      return 0;
    }
  };
  const start = process.hrtime.bigint();
  daemon = spawn(
    process.execPath,
    [path.join(root, 'app/dist/cli/main.js'), 'start', '--config', path.join(dir, 'config.yaml')],
    {
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
      },
      stdio: 'ignore',
    },
  );
  while (verified() < files) await sleep(250);
  const ourInitial = Number(process.hrtime.bigint() - start) / 1e9;
  const rss = (pid) =>
    Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  const daemonPeak = rss(daemon.pid);

  // 2. One file changed.
  const changed = path.join(mirror, 'd0', 'f0.bin');
  const stampOf = () => {
    const db = new Database(dbPath, { readonly: true });
    try {
      return db
        .prepare(
          "SELECT d.verified_at AS t FROM destination_files d JOIN files f ON f.id = d.file_id WHERE f.rel_path = 'd0/f0.bin' AND d.destination = 'aws_s3'",
        )
        .get()?.t;
    } finally {
      db.close();
    }
  };
  const before = stampOf();
  writeFileSync(changed, randomBytes(size));
  const ourOne = await seconds(async () => {
    while (stampOf() === before) await sleep(50);
  });
  const baseOne = await seconds(() =>
    rclone('sync', mirror, `S3:${baseBucket}/google-drive`, '--transfers', '4'),
  );

  console.log('');
  console.log('| measure | backupd | plain rclone | ratio |');
  console.log('| --- | --- | --- | --- |');
  console.log(
    `| initial push of ${files} x ${size / 1024} KiB (s) | ${fmt(ourInitial)} | ${fmt(baseInitial)} (copy --transfers 4) | ${fmt(baseInitial / ourInitial, 2)} |`,
  );
  console.log(
    `| initial push, files/s | ${fmt(files / ourInitial)} | ${fmt(files / baseInitial)} | |`,
  );
  console.log(
    `| one file changed until verified at S3 (s) | ${fmt(ourOne, 2)} (watch delay 1 s included) | ${fmt(baseOne, 2)} (sync of the tree) | ${fmt(baseOne / ourOne, 1)} |`,
  );
  console.log(`| daemon peak RSS (MiB) | ${fmt(daemonPeak, 0)} | | |`);
} finally {
  if (daemon) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.on('exit', r));
  }
  await rclone('purge', `S3:${baseBucket}`).catch(() => {});
  await rclone('purge', `S3:${ourBucket}`).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
