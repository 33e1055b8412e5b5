// The Drive pull in the running daemon: it polls on its own, the push half takes what it
// brings to the destination, GET /api/sources tells each account's state and counts, and
// pausing the source pauses its pull until it is resumed.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
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
import { startGoogleEmulator, type GoogleEmulator } from '../emulators/google/index.js';

const ANN = 'ann@example.com';
let google: GoogleEmulator;
let home: Home;
let daemon: RunningDaemon;
let api: ApiClient;

beforeAll(async () => {
  google = await startGoogleEmulator({
    accounts: [
      {
        email: ANN,
        myDrive: [
          { type: 'file', name: 'a.txt', content: 'alpha' },
          { type: 'form', name: 'Survey' },
        ],
      },
    ],
  });
  home = await makeHome(() => ({
    sources: { google_drive: { poll_interval_seconds: 3600 }, google_photos: { enabled: false } },
  }));
  daemon = await startDaemon(
    home,
    cleanEnv({
      GOOGLE_API_ROOT: google.apiRoot,
      GOOGLE_OAUTH_TOKEN_URL: google.tokenUrl,
      GOOGLE_CLIENT_ID: google.client.clientId,
      GOOGLE_CLIENT_SECRET: google.client.clientSecret,
      GOOGLE_REFRESH_TOKEN: google.authorize(ANN).refreshToken,
    }),
  );
  api = await setUp(daemon);
});

afterAll(async () => {
  await daemon?.stop();
  await google?.close();
  await home?.cleanup();
});

const driveSource = async () =>
  (await api.get('/api/sources')).json.sources.find((s: any) => s.source === 'google_drive');
const dest = (rel: string) => path.join(home.secondDisk, 'google-drive', ANN, rel);

it('pulls on its own, pushes what it brought, and tells each account in GET /api/sources', async () => {
  expect(
    await waitFor(
      () => `alpha at the destination (${daemon.output().slice(-1500)})`,
      () => readFile(dest('My Drive/a.txt'), 'utf8').catch(() => undefined),
    ),
  ).toBe('alpha');
  const src = await waitFor('the pass in GET /api/sources', async () => {
    const s = await driveSource();
    return s?.accounts[0]?.last_pass ? s : undefined;
  });
  expect(src).toMatchObject({ enabled: true, paused: false, poll_interval_seconds: 3600 });
  expect(src.accounts[0]).toMatchObject({
    email: ANN,
    state: 'idle',
    error: null,
    counts: { files: 1, bytes: 5, recorded: 1, failed: 0 },
    last_pass: { kind: 'first', downloaded: 1 },
  });
  expect(src.accounts[0].last_pass_at).not.toBeNull();
});

it('shows a paused source as paused, and pulls what changed meanwhile as soon as it is resumed', async () => {
  expect((await api.post('/api/sync/pause/google_drive')).status).toBe(200);
  expect((await driveSource()).accounts[0].state).toBe('paused');
  google.drive(ANN).create({ type: 'file', name: 'b.txt', content: 'bravo' });
  google.clearRequests();
  expect((await api.post('/api/sync/resume/google_drive')).status).toBe(200);
  expect(
    await waitFor('bravo at the destination', () =>
      readFile(dest('My Drive/b.txt'), 'utf8').catch(() => undefined),
    ),
  ).toBe('bravo');
  // Through the changes feed, not a new listing.
  expect(google.calls({ api: 'files.list' })).toEqual([]);
  expect(google.calls({ api: 'changes.list' }).length).toBeGreaterThan(0);
});
