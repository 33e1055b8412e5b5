#!/usr/bin/env node
// Where the daemon's memory goes, in three phases of one run of `backupd start` pushing to the
// S3 gateway of the test services (Ceph RGW on 127.0.0.1):
//  1. idle: started on an empty mirror, 5 s after the API answers;
//  2. push: N files written to the mirror while it runs, until every one is verified at S3
//     (the peak over the phase);
//  3. after: 10 s after the push.
// For each: the kernel's view (/proc: RSS, its peak VmHWM, anonymous and file-backed parts), and
// Node's (process.memoryUsage, V8's heap spaces, sampled every 100 ms inside the daemon by
// bench/memory-probe.mjs), plus the rclone rcd child's RSS. Prints the figures; docs/benchmarks.md
// records them with the machine they came from.
//
//   node bench/memory.mjs [files=1000] [size=102400]
//   BENCH_NODE_OPTIONS='--max-semi-space-size=4' node bench/memory.mjs   # daemon flags to try
//   BENCH_CLI=/elsewhere/app/dist/cli/main.js node bench/memory.mjs      # another build, to compare
// Needs: npm run build, bash scripts/test-services.sh start.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from '../node_modules/better-sqlite3/lib/index.js';

const exec = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = Number(process.argv[2] ?? 1000);
const size = Number(process.argv[3] ?? 102_400);
const nodeOptions = process.env.BENCH_NODE_OPTIONS ?? '';
const cli = path.resolve(process.env.BENCH_CLI ?? path.join(root, 'app/dist/cli/main.js'));
const svc = JSON.parse(
  readFileSync(
    path.join(process.env.TEST_SERVICES_DIR ?? path.join(root, '.test-services'), 'services.json'),
    'utf8',
  ),
);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MiB = (bytes) => (bytes / 2 ** 20).toFixed(1);

/** VmRSS, VmHWM (the peak RSS), RssAnon, RssFile of a process, in bytes (0 once it is gone). */
function proc(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile') };
  } catch {
    return { rss: 0, hwm: 0, anon: 0, file: 0 };
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid) {
  const fields = readFileSafe(`/proc/${pid}/stat`).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100; // clock ticks, 100 a second
}

/** The rclone rcd child of the daemon. */
function rclonePid(pid) {
  for (const task of readdirSafe(`/proc/${pid}/task`)) {
    for (const child of readFileSafe(`/proc/${pid}/task/${task}/children`).split(/\s+/)) {
      if (child && readFileSafe(`/proc/${child}/comm`).trim() === 'rclone') return Number(child);
    }
  }
  return undefined;
}
function readFileSafe(p) {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}
function readdirSafe(p) {
  try {
    return readdirSync(p);
  } catch {
    return [];
  }
}

const freePort = () =>
  new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

const dir = mkdtempSync(path.join(tmpdir(), 'backupd-memory-'));
const mirror = path.join(dir, 'data', 'mirror', 'google-drive');
const probeFile = path.join(dir, 'probe.json');
const bucket = `bench-memory-${randomBytes(3).toString('hex')}`;
const rcloneEnv = {
  ...process.env,
  RCLONE_CONFIG: '/dev/null',
  RCLONE_CONFIG_S3_TYPE: 's3',
  RCLONE_CONFIG_S3_PROVIDER: 'Ceph',
  RCLONE_CONFIG_S3_ACCESS_KEY_ID: svc.s3.accessKeyId,
  RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
  RCLONE_CONFIG_S3_ENDPOINT: svc.s3.endpoint,
  RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
};
delete rcloneEnv.AWS_CA_BUNDLE;
let daemon;
let cleaning;
/** Stops the daemon, empties the bucket, removes the folder; once, whatever ends the run. */
const cleanup = () =>
  (cleaning ??= (async () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      const gone = new Promise((r) => daemon.on('exit', r));
      daemon.kill('SIGTERM');
      await gone;
    }
    await exec('rclone', ['purge', `S3:${bucket}`], { env: rcloneEnv }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  })());
// Interrupted (Ctrl-C, a closed pipe), nothing is left running or lying around.
process.on('SIGINT', () => void cleanup().finally(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().finally(() => process.exit(143)));
process.on('exit', () => daemon?.kill('SIGTERM'));
try {
  console.log(
    `# memory benchmark: ${files} files of ${size} bytes to S3 (Ceph RGW at ${svc.s3.endpoint}); daemon ${cli}, NODE_OPTIONS: ${nodeOptions || '(none)'}`,
  );
  console.log(
    `# machine: ${cpus().length} x ${cpus()[0].model}, ${Math.round(totalmem() / 2 ** 30)} GiB, node ${process.version}, ${(await exec('rclone', ['version'])).stdout.split('\n')[0]}`,
  );
  mkdirSync(mirror, { recursive: true });
  mkdirSync(path.join(dir, 'data', 'mirror', 'google-photos'));
  const port = await freePort();
  writeFileSync(
    path.join(dir, 'config.yaml'),
    [
      'sources:',
      '  google_drive: { local_path: ./data/mirror/google-drive }',
      '  google_photos: { local_path: ./data/mirror/google-photos }',
      'destinations:',
      `  aws_s3: { enabled: true, bucket: ${bucket}, endpoint: "${svc.s3.endpoint}", region: default }`,
      // No request limit: the push runs as fast as it can, which is when garbage piles up fastest.
      'sync: { watch_delay_seconds: 1, max_requests_per_second: 0 }',
      `daemon: { api_host: 127.0.0.1, api_port: ${port}, log_level: INFO }`,
      '',
    ].join('\n'),
  );
  daemon = spawn(
    process.execPath,
    [
      '--import',
      path.join(root, 'bench', 'memory-probe.mjs'),
      cli,
      'start',
      '--config',
      path.join(dir, 'config.yaml'),
    ],
    {
      env: {
        ...process.env,
        NODE_OPTIONS: nodeOptions,
        BACKUPD_MEMORY_PROBE: probeFile,
        AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
        AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
      },
      stdio: 'ignore',
    },
  );
  const exited = new Promise((r) => daemon.on('exit', r));
  for (let i = 0; ; i++) {
    if (i > 300) throw new Error('the daemon did not answer within 30 s');
    if (daemon.exitCode !== null) throw new Error(`the daemon exited (${daemon.exitCode})`);
    const ok = await fetch(`http://127.0.0.1:${port}/api/health`).catch(() => undefined);
    if (ok?.status === 200) break;
    await sleep(100);
  }

  /** Ends a phase: the probe's latest sample and peaks since the last phase, and /proc. */
  const phase = async () => {
    rmSync(probeFile, { force: true });
    daemon.kill('SIGUSR2');
    for (let i = 0; !existsSync(probeFile); i++) {
      if (i > 100) throw new Error('the probe did not answer');
      await sleep(50);
    }
    await sleep(50); // the write is one call, but let it finish
    const rc = rclonePid(daemon.pid);
    return {
      ...JSON.parse(readFileSync(probeFile, 'utf8')),
      proc: proc(daemon.pid),
      rclone: rc ? proc(rc) : undefined,
    };
  };

  await sleep(5000);
  const idle = await phase();

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
  const t = Date.now();
  const cpuBefore = cpuSeconds(daemon.pid);
  for (let i = 0; i < files; i++) {
    const sub = path.join(mirror, `d${Math.floor(i / 500)}`);
    if (i % 500 === 0) mkdirSync(sub, { recursive: true });
    writeFileSync(path.join(sub, `f${i}.bin`), randomBytes(size));
  }
  let rclonePeak = 0;
  while (verified() < files) {
    if (Date.now() - t > 30 * 60_000) throw new Error('the push did not finish in 30 minutes');
    const rc = rclonePid(daemon.pid);
    if (rc) rclonePeak = Math.max(rclonePeak, proc(rc).rss);
    await sleep(200);
  }
  const pushSeconds = (Date.now() - t) / 1000;
  const pushCpu = cpuSeconds(daemon.pid) - cpuBefore;
  const push = await phase();
  await sleep(10_000);
  const after = await phase();

  const rows = [
    ['RSS (kernel)', (p) => p.proc.rss, (p) => p.proc.hwm],
    ['  anonymous (heap, malloc, stacks)', (p) => p.proc.anon],
    ['  file-backed (node binary, addons)', (p) => p.proc.file],
    ['V8 heap total', (p) => p.last.heapTotal, (p) => p.peak.heapTotal],
    ['  heap used', (p) => p.last.heapUsed, (p) => p.peak.heapUsed],
    ['  new space (young generation)', (p) => p.last.newSpace, (p) => p.peak.newSpace],
    ['  old space', (p) => p.last.oldSpace, (p) => p.peak.oldSpace],
    ['  code space', (p) => p.last.codeSpace, (p) => p.peak.codeSpace],
    ['  large objects', (p) => p.last.largeObjectSpace, (p) => p.peak.largeObjectSpace],
    ['external (Buffers, addons)', (p) => p.last.external, (p) => p.peak.external],
    ['  of which ArrayBuffers', (p) => p.last.arrayBuffers, (p) => p.peak.arrayBuffers],
    ['V8 malloced', (p) => p.last.mallocedMemory, (p) => p.peak.mallocedMemory],
    ['rclone rcd RSS', (p) => p.rclone?.rss ?? 0],
  ];
  console.log('');
  console.log(
    `push: ${files} files verified at S3 in ${pushSeconds.toFixed(1)} s, the daemon using ${pushCpu.toFixed(1)} s of CPU; figures in MiB, "now" at the end of each phase, "peak" over it`,
  );
  console.log('');
  console.log('| measure | idle | push: now | push: peak | after (10 s) |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const [name, now, peak] of rows) {
    const pushPeak = name === 'rclone rcd RSS' ? MiB(rclonePeak) : peak ? MiB(peak(push)) : '';
    console.log(
      `| ${name} | ${MiB(now(idle))} | ${MiB(now(push))} | ${pushPeak} | ${MiB(now(after))} |`,
    );
  }
  daemon.kill('SIGTERM');
  await exited;
  daemon = undefined;
} finally {
  await cleanup();
}
