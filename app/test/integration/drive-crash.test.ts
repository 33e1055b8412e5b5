// SIGKILL in the middle of a first Drive pass, then a restart: the files that were complete on
// the mirror are not downloaded again, and nothing is missed.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI, cleanEnv, makeHome, runCli, waitFor, type Home } from '../helpers/daemon.js';
import { hashTree } from '../helpers/trees.js';
import { startGoogleEmulator, type GoogleEmulator } from '../emulators/google/index.js';

const ANN = 'ann@example.com';
const FILES = 12;
let google: GoogleEmulator;
let home: Home;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  google = await startGoogleEmulator({
    accounts: [
      {
        email: ANN,
        myDrive: [
          {
            type: 'folder',
            name: 'Big',
            children: Array.from({ length: FILES }, (_, i) => ({
              id: `f${i}`,
              type: 'file' as const,
              name: `part-${i}.bin`,
              content: { size: 1024 * 1024 + i, seed: `part-${i}` },
            })),
          },
        ],
      },
    ],
  });
  home = await makeHome(() => ({
    sources: { google_drive: { download_concurrency: 2 }, google_photos: { enabled: false } },
  }));
  env = cleanEnv({
    GOOGLE_API_ROOT: google.apiRoot,
    GOOGLE_OAUTH_TOKEN_URL: google.tokenUrl,
    GOOGLE_CLIENT_ID: google.client.clientId,
    GOOGLE_CLIENT_SECRET: google.client.clientSecret,
    GOOGLE_REFRESH_TOKEN: google.authorize(ANN).refreshToken,
  });
});

afterAll(async () => {
  await google?.close();
  await home?.cleanup();
});

it('resumes a killed first pass without downloading a completed file again', async () => {
  // Slow downloads, so that the kill lands in the middle of the pass.
  google.inject({ delayMs: 300, times: Infinity, match: { api: 'files.download' } });
  const big = path.join(home.drive, ANN, 'My Drive', 'Big');
  const complete = async () =>
    (await readdir(big).catch(() => [] as string[])).filter((n) => n.endsWith('.bin'));
  const child = spawn(process.execPath, [CLI, 'sync', '--once', '--config', home.config], {
    env,
    stdio: 'ignore',
  });
  const exited = new Promise((r) => child.on('exit', r));
  await waitFor('some files complete on the mirror', async () => (await complete()).length >= 3);
  child.kill('SIGKILL');
  await exited;
  const done = await complete();
  expect(done.length, 'the kill came before the end of the pass').toBeLessThan(FILES);
  google.clearFaults();
  google.clearRequests();

  const r = await runCli(['sync', '--once', '--json', '--config', home.config], { env });
  expect(r.code, r.stdout + r.stderr.slice(-2000)).toBe(0);
  const d = google.drive(ANN);
  const doneIds = done.map((n) => `f${/part-(\d+)/.exec(n)![1]}`);
  const downloadedAgain = google
    .calls({ api: 'files.download' })
    .filter((c) => doneIds.includes(c.fileId!));
  expect(downloadedAgain).toEqual([]);
  // Nothing missed, every byte as Drive has it.
  const tree = await hashTree(big);
  const want: Record<string, string> = {};
  for (let i = 0; i < FILES; i++)
    want[`part-${i}.bin`] = createHash('sha256')
      .update(d.file(`f${i}`).content!.slice())
      .digest('hex');
  expect(tree).toEqual(want);
});
