#!/usr/bin/env node
// Benchmark of the push half against plain rclone, on the same data and the same S3 server (the
// Ceph gateway of scripts/test-services.sh), in the same run. Two scenarios:
//
//   node bench/push.mjs initial [files=10000] [size=102400]
//     The initial push of a new destination: `backupd start` from a cold state until every file
//     is verified at S3 (the start-up walk and hashing included), against
//     `rclone copy --transfers 8` (backupd's default sync.max_transfers) of the same tree.
//
//   node bench/push.mjs change [files=100000] [size=4096] [changes=5]
//     With every file already backed up, one file changed: the time until backupd has it
//     verified at S3 (the watcher's delay included), against `rclone sync` of the whole tree,
//     what a cron-driven rclone script does for the same change. Both buckets are filled with
//     `rclone copy` first; backupd then starts, finds everything already there (checked by MD5,
//     nothing uploaded) and records it as verified: "already backed up".
//
// Prints the figures; docs/benchmarks.md records them with the machine they came from.
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
const scenario = process.argv[2] ?? 'initial';
if (!['initial', 'change'].includes(scenario)) {
  console.error('usage: node bench/push.mjs initial|change [files] [size] [changes]');
  process.exit(2);
}
const files = Number(process.argv[3] ?? (scenario === 'initial' ? 10_000 : 100_000));
const size = Number(process.argv[4] ?? (scenario === 'initial' ? 102_400 : 4096));
const changes = Number(process.argv[5] ?? 5);
const TRANSFERS = '8';
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
const rss = (pid) =>
  Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  console.log(
    `# push benchmark (${scenario}): ${files} files of ${size} bytes, S3 = Ceph RGW at ${svc.s3.endpoint}`,
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

  const port = 18000 + Math.floor(Math.random() * 1000);
  writeFileSync(
    path.join(dir, 'config.yaml'),
    [
      'sources:',
      '  google_drive: { local_path: ./data/mirror/google-drive }',
      '  google_photos: { local_path: ./data/mirror/google-photos }',
      'destinations:',
      `  aws_s3: { enabled: true, bucket: ${ourBucket}, endpoint: "${svc.s3.endpoint}", region: default }`,
      'sync: { watch_delay_seconds: 1, batch_size: 500 }',
      `daemon: { api_host: 127.0.0.1, api_port: ${port}, log_level: WARNING }`,
      '',
    ].join('\n'),
  );
  const dbPath = path.join(dir, 'data', 'mirror', '.backupd', 'state.db');
  const query = (sql, ...args) => {
    try {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      try {
        return db.prepare(sql).get(...args);
      } finally {
        db.close();
      }
    } catch {
      return undefined;
    }
  };
  const verified = () =>
    query(
      "SELECT COUNT(*) AS n FROM destination_files WHERE destination = 'aws_s3' AND state = 'verified'",
    )?.n ?? 0;
  const startDaemon = () =>
    spawn(
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
  const rows = [];

  if (scenario === 'initial') {
    const baseInitial = await seconds(() =>
      rclone('copy', mirror, `S3:${baseBucket}/google-drive`, '--transfers', TRANSFERS),
    );
    const start = process.hrtime.bigint();
    daemon = startDaemon();
    while (verified() < files) await sleep(250);
    const ourInitial = Number(process.hrtime.bigint() - start) / 1e9;
    rows.push(
      `| initial push of ${files} x ${size / 1024} KiB (s) | ${fmt(ourInitial)} | ${fmt(baseInitial)} (copy --transfers ${TRANSFERS}) | ${fmt(baseInitial / ourInitial, 2)} |`,
      `| initial push, files/s | ${fmt(files / ourInitial)} | ${fmt(files / baseInitial)} | |`,
    );
  } else {
    // Both buckets hold everything before either side is timed.
    const seed = await seconds(() =>
      Promise.all(
        [baseBucket, ourBucket].map((b) =>
          rclone('copy', mirror, `S3:${b}/google-drive`, '--transfers', '16'),
        ),
      ),
    );
    console.log(`# both buckets filled by rclone copy in ${fmt(seed)} s`);
    const start = process.hrtime.bigint();
    daemon = startDaemon();
    while (verified() < files) await sleep(500);
    const adopt = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(
      `# backupd found the ${files} files already at S3 and recorded them verified in ${fmt(adopt)} s`,
    );
    const ours = [];
    const theirs = [];
    for (let c = 0; c < changes; c++) {
      const rel = `d${c}/f${c * 500}.bin`;
      const stamp = () =>
        query(
          "SELECT d.verified_at AS t FROM destination_files d JOIN files f ON f.id = d.file_id WHERE f.rel_path = ? AND d.destination = 'aws_s3'",
          rel,
        )?.t;
      const before = stamp();
      writeFileSync(path.join(mirror, rel), randomBytes(size));
      ours.push(
        await seconds(async () => {
          while (stamp() === before) await sleep(20);
        }),
      );
      theirs.push(
        await seconds(() =>
          rclone('sync', mirror, `S3:${baseBucket}/google-drive`, '--transfers', TRANSFERS),
        ),
      );
    }
    const o = median(ours);
    const t = median(theirs);
    rows.push(
      `| one file changed until verified at S3, ${files} files backed up (s, median of ${changes}) | ${fmt(o, 2)} (watch delay 1 s included) | ${fmt(t, 2)} (sync of the tree) | ${fmt(t / o, 1)} |`,
    );
  }
  rows.push(`| daemon peak RSS (MiB) | ${fmt(rss(daemon.pid), 0)} | | |`);
  console.log('');
  console.log('| measure | backupd | plain rclone | ratio (rclone / backupd) |');
  console.log('| --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
} finally {
  if (daemon) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.on('exit', r));
  }
  await rclone('purge', `S3:${baseBucket}`).catch(() => {});
  await rclone('purge', `S3:${ourBucket}`).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}
