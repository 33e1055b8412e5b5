// Signing in to Google from the appliance, as the owner does it, against the Google emulator
// and the built daemon: the paste-back (loopback) flow, the relay flow, refused and expired
// answers, two accounts, GOOGLE_REFRESH_TOKEN, a grant revoked at Google, and signing out.
// The emulator's consent() plays the owner's browser at Google.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SecretStore } from '../../src/config/secrets.js';
import {
  ConsentError,
  SCOPES,
  startGoogleEmulator,
  TEST_CLIENT,
  type GoogleEmulator,
} from '../emulators/google/index.js';
import {
  ApiClient,
  cleanEnv,
  makeHome,
  setUp,
  startDaemon,
  waitFor,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';

const ANN = 'ann@example.com';
const BOB = 'bob@example.com';
const CAROL = 'carol@example.com';
const RELAY = 'https://relay.example.com/backupd/google';
const WEB_CLIENT = {
  clientId: '987654321-backupdweb.apps.googleusercontent.com',
  clientSecret: 'GOCSPX-backupd-web-secret',
  type: 'web' as const,
  redirectUris: [RELAY],
};

let google: GoogleEmulator;
const homes: Home[] = [];
const daemons: RunningDaemon[] = [];

beforeAll(async () => {
  google = await startGoogleEmulator({
    accounts: [{ email: ANN }, { email: BOB }, { email: CAROL }],
    clients: [TEST_CLIENT, WEB_CLIENT],
  });
});
afterAll(async () => {
  for (const d of daemons) await d.stop();
  for (const h of homes) await h.cleanup();
  await google?.close();
});

async function daemon(
  config: (h: Home) => Record<string, unknown>,
  env: Record<string, string> = {},
): Promise<{ home: Home; d: RunningDaemon; api: ApiClient }> {
  const home = await makeHome((h) => config(h as Home));
  homes.push(home);
  const d = await startDaemon(
    home,
    cleanEnv({ GOOGLE_API_ROOT: google.apiRoot, GOOGLE_OAUTH_TOKEN_URL: google.tokenUrl, ...env }),
  );
  daemons.push(d);
  return { home, d, api: await setUp(d) };
}

/** The grants in the daemon's secrets store, read with its key as the daemon does. */
function storedSecrets(home: Home): SecretStore {
  return new SecretStore(
    path.join(home.dir, 'data', 'mirror', '.backupd', 'secrets.enc'),
    path.join(home.dir, 'secrets.key'),
  ).load();
}

/** Every file of the home but the encrypted store and its key, as text. */
async function everythingElse(home: Home): Promise<string> {
  let text = '';
  for (const e of await readdir(home.dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || e.name === 'secrets.enc' || e.name === 'secrets.key') continue;
    text += (await readFile(path.join(e.parentPath, e.name))).toString('latin1');
  }
  return text;
}

const account = <T extends { email: string }>(list: T[], email: string) =>
  list.find((a) => a.email === email);

describe('Google sign-in with a Desktop-app client (paste-back)', () => {
  let home: Home;
  let d: RunningDaemon;
  let api: ApiClient;
  beforeAll(async () => {
    ({ home, d, api } = await daemon(() => ({})));
  });

  const start = async (body: Record<string, unknown> = {}) => {
    const r = await api.post('/api/google/sign-in', body);
    expect(r.status, r.text).toBe(200);
    return r.json as { url: string; state: string; redirect_uri: string; expires_at: string };
  };

  it('says how to configure the OAuth client before there is one, then takes it through PUT /api/config', async () => {
    const none = await api.post('/api/google/sign-in', {});
    expect(none.status).toBe(409);
    expect(none.json.error.code).toBe('no_oauth_client');
    expect(none.json.error.fix).toMatch(/google\.client_id.*PUT \/api\/config/);

    const put = await api.put('/api/config', {
      google: { client_id: TEST_CLIENT.clientId, client_secret: TEST_CLIENT.clientSecret },
    });
    expect(put.status, put.text).toBe(200);
    expect(put.json.secrets['google.client_secret']).toMatchObject({ set: true, origin: 'store' });
    expect(await readFile(home.config, 'utf8')).not.toContain(TEST_CLIENT.clientSecret);
  });

  it('signs an account in from the address the browser ended on; the grant is stored encrypted only', async () => {
    const s = await start();
    expect(s.redirect_uri).toBe('http://127.0.0.1/');
    const url = new URL(s.url);
    expect(url.searchParams.get('scope')).toBe(SCOPES.driveReadonly);
    expect(url.searchParams.get('access_type')).toBe('offline');
    expect(url.searchParams.get('prompt')).toBe('consent');
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    expect(url.searchParams.get('state')).toBe(s.state);
    expect(Date.parse(s.expires_at) - Date.now()).toBeGreaterThan(9 * 60_000);

    const back = google.consent(s.url, { account: ANN });
    expect(back.startsWith('http://127.0.0.1/?')).toBe(true);
    const r = await api.post('/api/google/sign-in/complete', { url: back });
    expect(r.status, r.text).toBe(200);
    expect(r.json.account).toMatchObject({
      email: ANN,
      source: 'google_drive',
      status: 'ok',
      signed_in: true,
      grant: 'stored',
    });

    const list = (await api.get('/api/google/accounts')).json.accounts;
    expect(account(list, ANN)).toMatchObject({ signed_in: true, status: 'ok' });
    const status = (await api.get('/api/status')).json;
    const drive = status.sources.find((x: { name: string }) => x.name === 'google_drive');
    expect(drive.accounts).toEqual([expect.objectContaining({ email: ANN, status: 'ok' })]);

    const token = storedSecrets(home).get(`google.refresh_token.google_drive.${ANN}`);
    expect(token).toMatch(/^1\/\//);
    const raw = await readFile(path.join(home.dir, 'data', 'mirror', '.backupd', 'secrets.enc'));
    expect(raw.includes(token!)).toBe(false);
    expect(await everythingElse(home)).not.toContain(token);
    expect(d.output()).not.toContain(token);
  });

  it('refuses the same address twice, a state it never issued, and a pasted address without a code', async () => {
    const s = await start();
    const back = google.consent(s.url, { account: ANN });
    expect((await api.post('/api/google/sign-in/complete', { url: back })).status).toBe(200);
    const again = await api.post('/api/google/sign-in/complete', { url: back });
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({ code: 'state_used' });
    expect(again.json.error.fix).toMatch(/POST \/api\/google\/sign-in/);

    const forged = new URL(google.consent((await start()).url, { account: ANN }));
    forged.searchParams.set('state', 'made-up-by-someone-else');
    const foreign = await api.post('/api/google/sign-in/complete', { url: forged.toString() });
    expect(foreign.status).toBe(400);
    expect(foreign.json.error.code).toBe('state_unknown');

    const garbage = await api.post('/api/google/sign-in/complete', {
      url: 'https://www.google.com/',
    });
    expect(garbage.status).toBe(400);
    expect(garbage.json.error.code).toBe('not_a_redirect');
  });

  it('explains a denied consent and an unticked Drive box', async () => {
    const denied = await api.post('/api/google/sign-in/complete', {
      url: google.consent((await start()).url, { account: BOB, deny: true }),
    });
    expect(denied.status).toBe(403);
    expect(denied.json.error.code).toBe('access_denied');
    expect(denied.json.error.fix).toMatch(/Allow/);

    const unticked = await api.post('/api/google/sign-in/complete', {
      url: google.consent((await start()).url, { account: BOB, grantScopes: [] }),
    });
    expect(unticked.status).toBe(403);
    expect(unticked.json.error.code).toBe('scope_not_granted');
    expect(unticked.json.error.message).toMatch(/Google Drive/);
    const list = (await api.get('/api/google/accounts')).json.accounts;
    expect(account(list, BOB)).toBeUndefined();
  });

  it('explains a wrong client secret', async () => {
    expect(
      (await api.put('/api/config', { google: { client_secret: 'GOCSPX-not-the-secret' } })).status,
    ).toBe(200);
    const r = await api.post('/api/google/sign-in/complete', {
      url: google.consent((await start()).url, { account: BOB }),
    });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('invalid_client');
    expect(r.json.error.fix).toMatch(/client ID and secret/);
    expect(
      (await api.put('/api/config', { google: { client_secret: TEST_CLIENT.clientSecret } }))
        .status,
    ).toBe(200);
  });

  it('holds two accounts; a grant revoked at Google marks only that one as needing sign-in', async () => {
    const r = await api.post('/api/google/sign-in/complete', {
      url: google.consent((await start({ login_hint: BOB })).url, { account: BOB }),
    });
    expect(r.status, r.text).toBe(200);
    let list = (await api.get('/api/google/accounts')).json.accounts;
    expect(list.map((a: { email: string }) => a.email)).toEqual([ANN, BOB]);

    google.revoke(ANN);
    const ann = account(list as { email: string; id: number }[], ANN)!;
    const check = await api.post(`/api/google/accounts/${ann.id}/check`);
    expect(check.status, check.text).toBe(200);
    expect(check.json.account).toMatchObject({
      email: ANN,
      status: 'needs_sign_in',
      signed_in: false,
    });
    expect(check.json.account.error.fix).toMatch(/^Sign in again/);
    const bob = await api.post(`/api/google/accounts/${encodeURIComponent(BOB)}/check`);
    expect(bob.json.account).toMatchObject({ status: 'ok', signed_in: true, error: null });

    const status = (await api.get('/api/status')).json;
    expect(status.state).toBe('error');
    const drive = status.sources.find((x: { name: string }) => x.name === 'google_drive');
    expect(account(drive.accounts, ANN)).toMatchObject({
      status: 'needs_sign_in',
      error: { fix: expect.stringMatching(/^Sign in again/) },
    });
    // The alert: one error line naming the account.
    await waitFor(
      'the alert in the log',
      () =>
        /ERROR.*no longer accepts the sign-in of ann@example\.com/.test(d.output()) || undefined,
    );
    expect(storedSecrets(home).has(`google.refresh_token.google_drive.${ANN}`)).toBe(false);

    // Signing in again brings it back.
    const again = await api.post('/api/google/sign-in/complete', {
      url: google.consent((await start()).url, { account: ANN }),
    });
    expect(again.json.account).toMatchObject({
      email: ANN,
      status: 'ok',
      signed_in: true,
      error: null,
    });
    list = (await api.get('/api/google/accounts')).json.accounts;
    expect(list.filter((a: { signed_in: boolean }) => a.signed_in)).toHaveLength(2);
  });

  it('signs an account out: revoked at Google, forgotten here, its mirror left alone', async () => {
    google.clearRequests();
    const r = await api.request('DELETE', `/api/google/accounts/${encodeURIComponent(BOB)}`);
    expect(r.status, r.text).toBe(200);
    expect(r.json).toMatchObject({
      revoked: true,
      account: { email: BOB, signed_in: false, status: 'paused' },
    });
    expect(google.calls({ api: 'revoke' })).toHaveLength(1);
    expect(storedSecrets(home).has(`google.refresh_token.google_drive.${BOB}`)).toBe(false);
    const list = (await api.get('/api/google/accounts')).json.accounts;
    expect(account(list, ANN)).toMatchObject({ signed_in: true });
    expect(account(list, BOB)).toMatchObject({ signed_in: false });
  });

  it('needs credentials for everything but the relay callback', async () => {
    const anon = new ApiClient(d.url);
    expect((await anon.post('/api/google/sign-in', {})).status).toBe(401);
    expect((await anon.get('/api/google/accounts')).status).toBe(401);
    expect((await anon.post('/api/google/sign-in/complete', { url: 'x' })).status).toBe(401);
    const relay = await api.post('/api/google/sign-in', { redirect: 'relay' });
    expect(relay.status).toBe(409);
    expect(relay.json.error.code).toBe('no_relay');
    expect(relay.json.error.fix).toMatch(/google\.relay_redirect_uri/);
  });
});

describe('Google sign-in through an https relay page, and GOOGLE_REFRESH_TOKEN', () => {
  let d: RunningDaemon;
  let api: ApiClient;
  beforeAll(async () => {
    ({ d, api } = await daemon(() => ({ google: { relay_redirect_uri: RELAY } }), {
      GOOGLE_CLIENT_ID: WEB_CLIENT.clientId,
      GOOGLE_CLIENT_SECRET: WEB_CLIENT.clientSecret,
      GOOGLE_REFRESH_TOKEN: google.authorize(CAROL, { clientId: WEB_CLIENT.clientId }).refreshToken,
    }));
  });

  it('lists the account of GOOGLE_REFRESH_TOKEN, its address asked of Drive', async () => {
    const list = (await api.get('/api/google/accounts')).json.accounts;
    expect(list).toEqual([
      expect.objectContaining({
        email: CAROL,
        signed_in: true,
        grant: 'environment',
        status: 'ok',
      }),
    ]);
  });

  it('completes when the relay page sends the browser on to the callback', async () => {
    const s = await api.post('/api/google/sign-in', { redirect: 'relay' });
    expect(s.status, s.text).toBe(200);
    expect(s.json.redirect_uri).toBe(RELAY);
    const back = google.consent(s.json.url, { account: ANN });
    expect(back.startsWith(`${RELAY}?`)).toBe(true);
    // The relay page: same query, to the appliance. The browser has no session here.
    const callback = `${d.url}/api/google/callback${new URL(back).search}`;
    const page = await fetch(callback);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toMatch(/Signed in[\s\S]*ann@example\.com/);
    const list = (await api.get('/api/google/accounts')).json.accounts;
    expect(list.map((a: { email: string }) => a.email)).toEqual([ANN, CAROL]);

    const replay = await fetch(callback);
    expect(replay.status).toBe(409);
    expect(await replay.text()).toMatch(/Sign-in failed[\s\S]*already/);
  });

  it('explains, on the page, a consent denied at Google', async () => {
    const s = await api.post('/api/google/sign-in', { redirect: 'relay' });
    const back = google.consent(s.json.url, { account: BOB, deny: true });
    const page = await fetch(`${d.url}/api/google/callback${new URL(back).search}`);
    expect(page.status).toBe(403);
    expect(await page.text()).toMatch(/not allowed/);
  });

  it('a revoked GOOGLE_REFRESH_TOKEN marks its account only, with a fix that names the variable', async () => {
    google.revoke(CAROL);
    const carol = await api.post(`/api/google/accounts/${encodeURIComponent(CAROL)}/check`);
    expect(carol.json.account).toMatchObject({ status: 'needs_sign_in', signed_in: false });
    expect(carol.json.account.error.fix).toMatch(/GOOGLE_REFRESH_TOKEN/);
    const ann = await api.post(`/api/google/accounts/${encodeURIComponent(ANN)}/check`);
    expect(ann.json.account).toMatchObject({ status: 'ok', signed_in: true });
    await waitFor(
      'the alert in the log',
      () =>
        /ERROR.*no longer accepts the sign-in of carol@example\.com/.test(d.output()) || undefined,
    );
  });

  it('the loopback address is refused by Google for a Web client: the start answer names it', async () => {
    const s = await api.post('/api/google/sign-in', { redirect: 'loopback' });
    expect(s.json.redirect_uri).toBe('http://127.0.0.1/');
    expect(() => google.consent(s.json.url, { account: BOB })).toThrow(ConsentError);
    expect(s.json.next).toMatch(/redirect_uri_mismatch.*http:\/\/127\.0\.0\.1\//);
  });
});
