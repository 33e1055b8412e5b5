#!/usr/bin/env node
// Benchmark of the Drive pull on an emulated Drive (the Google emulator of the tests, in this
// process): `backupd sync --once` (the built CLI) for a first pass, a pass with no change and a
// pass after 10 changes, beside a full re-listing of the same Drive, which is what a
// listing-based sync pays on every pass just to find out what changed.
//
//   node bench/drive.mjs [files=100000] [folders=100]
//
// Prints Drive API calls (by method) and wall time of each; docs/benchmarks.md records them.
// Needs: npm run build. No destination is enabled: this measures the pull alone.
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const files = Number(process.argv[2] ?? 100_000);
const folders = Number(process.argv[3] ?? 100);
const ANN = 'bench@example.com';

// The emulator is TypeScript test code: compile it once into a temporary folder.
const work = mkdtempSync(path.join(tmpdir(), 'backupd-bench-drive-'));
const emuOut = path.join(work, 'emulator');
await exec(process.execPath, [
  path.join(root, 'node_modules/typescript/bin/tsc'),
  '--outDir',
  emuOut,
  '--module',
  'nodenext',
  '--moduleResolution',
  'nodenext',
  '--target',
  'es2022',
  '--skipLibCheck',
  '--types',
  'node',
  '--typeRoots',
  path.join(root, 'node_modules/@types'),
  path.join(root, 'app/test/emulators/google/index.ts'),
]);
writeFileSync(path.join(emuOut, 'package.json'), '{"type":"module"}');
const { startGoogleEmulator } = await import(pathToFileURL(path.join(emuOut, 'index.js')).href);
const { drive: driveApi, auth } = await import('@googleapis/drive');

const perFolder = Math.ceil(files / folders);
const myDrive = Array.from({ length: folders }, (_, f) => ({
  type: 'folder',
  name: `folder-${f}`,
  children: Array.from({ length: Math.min(perFolder, files - f * perFolder) }, (_, i) => ({
    type: 'file',
    name: `file-${f}-${i}.txt`,
    content: `content of ${f}/${i}\n`,
  })),
})).filter((f) => f.children.length > 0);
const google = await startGoogleEmulator({ accounts: [{ email: ANN, myDrive }] });
const grant = google.authorize(ANN);

const home = path.join(work, 'home');
mkdirSync(path.join(home, 'data', 'google-drive'), { recursive: true });
writeFileSync(
  path.join(home, 'config.yaml'),
  [
    'sources:',
    '  google_drive: { local_path: ./data/google-drive, download_concurrency: 8 }',
    '  google_photos: { enabled: false, local_path: ./data/google-photos }',
    'daemon: { log_level: WARNING }',
    '',
  ].join('\n'),
);
const env = {
  ...process.env,
  GOOGLE_API_ROOT: google.apiRoot,
  GOOGLE_OAUTH_TOKEN_URL: google.tokenUrl,
  GOOGLE_CLIENT_ID: google.client.clientId,
  GOOGLE_CLIENT_SECRET: google.client.clientSecret,
  GOOGLE_REFRESH_TOKEN: grant.refreshToken,
};

function sync() {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        path.join(root, 'app/dist/cli/main.js'),
        'sync',
        '--once',
        '--json',
        '--config',
        path.join(home, 'config.yaml'),
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        resolve({ code, summary: JSON.parse(out) });
      } catch {
        reject(new Error(`sync printed no JSON (exit ${code}): ${out}\n${err.slice(-2000)}`));
      }
    });
  });
}

const byApi = () => {
  const counts = {};
  for (const r of google.requests) if (r.api !== 'token') counts[r.api] = (counts[r.api] ?? 0) + 1;
  return counts;
};
const total = (c) => Object.values(c).reduce((a, b) => a + b, 0);
const rows = [];
async function measure(name, fn) {
  google.clearRequests();
  const t0 = performance.now();
  const r = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const calls = byApi();
  rows.push({
    name,
    seconds,
    calls: total(calls),
    byApi: calls,
    note: r?.summary?.sources?.google_drive?.note ?? '',
  });
  console.error(`${name}: ${seconds.toFixed(1)} s, ${total(calls)} calls ${JSON.stringify(calls)}`);
  if (r && r.code !== 0) throw new Error(`${name} failed: ${JSON.stringify(r.summary.sources)}`);
}

try {
  await measure('first pass (listing + every download)', sync);
  await measure('pass with no change', sync);
  const d = google.drive(ANN);
  const f0 = d.idOf('folder-0');
  for (let i = 0; i < 4; i++) d.rename(d.idOf(`folder-1/file-1-${i}.txt`), `renamed-${i}.txt`);
  for (let i = 0; i < 3; i++) d.updateContent(d.idOf(`folder-2/file-2-${i}.txt`), `changed ${i}\n`);
  for (let i = 0; i < 2; i++)
    d.create({ type: 'file', name: `new-${i}.txt`, content: `new ${i}\n` }, f0);
  d.trash(d.idOf('folder-3/file-3-0.txt'));
  await measure('pass after 10 changes', sync);
  // What a listing-based sync does on every pass: list the whole Drive again.
  await measure('full re-listing (files.list, 1000 a page)', async () => {
    const client = new auth.OAuth2({
      clientId: env.GOOGLE_CLIENT_ID,
      clientSecret: env.GOOGLE_CLIENT_SECRET,
      endpoints: { oauth2TokenUrl: env.GOOGLE_OAUTH_TOKEN_URL },
    });
    client.setCredentials({ refresh_token: env.GOOGLE_REFRESH_TOKEN });
    const api = driveApi({ version: 'v3', auth: client, rootUrl: `${google.apiRoot}/` });
    let pageToken;
    let n = 0;
    do {
      const r = await api.files.list({
        q: 'trashed = false',
        pageSize: 1000,
        fields:
          'nextPageToken,files(id,name,mimeType,parents,size,md5Checksum,modifiedTime,version)',
        ...(pageToken ? { pageToken } : {}),
      });
      n += r.data.files.length;
      pageToken = r.data.nextPageToken;
    } while (pageToken);
    return { code: 0, summary: { sources: { google_drive: { note: `${n} items listed` } } } };
  });
  console.log(
    JSON.stringify(
      {
        files,
        folders,
        node: process.version,
        cpus: cpus().length,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        rows,
      },
      null,
      2,
    ),
  );
} finally {
  await google.close();
  rmSync(work, { recursive: true, force: true });
}
