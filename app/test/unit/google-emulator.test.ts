// The Google emulator (app/test/emulators/google/) driven by Google's own client: the same
// @googleapis/drive and google-auth-library the product uses, pointed at the emulator as the
// product will point them (GOOGLE_API_ROOT, GOOGLE_OAUTH_TOKEN_URL). What these tests pin down
// is what the Drive pull will rely on: paging, partial responses, changes, ranged downloads,
// Google's errors reaching the client intact, token refresh, revocation and the PKCE consent.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { auth, drive, type drive_v3 } from '@googleapis/drive';
import { CodeChallengeMethod, OAuth2Client } from 'google-auth-library';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConsentError,
  SCOPES,
  startGoogleEmulator,
  type GoogleEmulator,
  type GoogleEmulatorOptions,
} from '../emulators/google/index.js';

const ANN = 'ann@example.com';
const BOB = 'bob@example.com';
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

let emulators: GoogleEmulator[] = [];
afterEach(async () => {
  await Promise.all(emulators.map((g) => g.close()));
  emulators = [];
});

async function start(opts: Partial<GoogleEmulatorOptions> = {}): Promise<GoogleEmulator> {
  const google = await startGoogleEmulator({
    accounts: opts.accounts ?? [{ email: ANN, displayName: 'Ann' }],
    ...opts,
  });
  emulators.push(google);
  return google;
}

/** The client as the product builds it: OAuth2Client on the emulator's token URL, Drive v3 on its root. */
function connect(
  google: GoogleEmulator,
  account = ANN,
  extra: { forceRefreshOnFailure?: boolean; scopes?: string[] } = {},
): { oauth: OAuth2Client; api: drive_v3.Drive; refreshToken: string } {
  const { refreshToken } = google.authorize(account, { scopes: extra.scopes });
  const oauth = new auth.OAuth2({
    clientId: google.client.clientId,
    clientSecret: google.client.clientSecret,
    endpoints: { oauth2TokenUrl: google.tokenUrl },
    forceRefreshOnFailure: extra.forceRefreshOnFailure,
  });
  oauth.setCredentials({ refresh_token: refreshToken });
  const api = drive({ version: 'v3', auth: oauth, rootUrl: `${google.apiRoot}/` });
  return { oauth, api, refreshToken };
}

/** The error a call fails with; fails the test if it succeeds. */
async function failure(p: Promise<unknown>): Promise<any> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to fail');
}

const reasonOf = (e: any): string | undefined => e?.response?.data?.error?.errors?.[0]?.reason;

describe('files.list and partial responses', () => {
  it('pages through 2,500 files with a field selection, three calls of at most 1000', async () => {
    const children = Array.from({ length: 2500 }, (_, i) => ({
      type: 'file' as const,
      name: `f${i}.txt`,
      content: `file number ${i}\n`,
    }));
    const google = await start({
      accounts: [{ email: ANN, myDrive: [{ type: 'folder', id: 'big', name: 'Big', children }] }],
    });
    const { api } = connect(google);
    const seen = new Map<string, drive_v3.Schema$File>();
    let pageToken: string | undefined;
    do {
      const res = await api.files.list({
        q: "'big' in parents and trashed = false",
        pageSize: 1000,
        pageToken,
        fields: 'nextPageToken,files(id,name,parents,md5Checksum)',
      });
      expect(Object.keys(res.data).sort()).toEqual(
        res.data.nextPageToken ? ['files', 'nextPageToken'] : ['files'],
      );
      for (const f of res.data.files!) {
        expect(Object.keys(f).sort()).toEqual(['id', 'md5Checksum', 'name', 'parents']);
        seen.set(f.id!, f);
      }
      pageToken = res.data.nextPageToken ?? undefined;
    } while (pageToken);
    expect(seen.size).toBe(2500);
    const f7 = [...seen.values()].find((f) => f.name === 'f7.txt')!;
    expect(f7.md5Checksum).toBe(md5('file number 7\n'));
    expect(f7.parents).toEqual(['big']);
    expect(google.calls({ api: 'files.list' }).map((r) => r.status)).toEqual([200, 200, 200]);
  });

  it('answers the default fields, `files/id`, `*`, and 400 for a bad selection', async () => {
    const google = await start({
      accounts: [
        { email: ANN, myDrive: [{ type: 'file', id: 'a', name: 'a.bin', content: 'abc' }] },
      ],
    });
    const { api } = connect(google);
    expect((await api.files.get({ fileId: 'a' })).data).toEqual({
      kind: 'drive#file',
      id: 'a',
      name: 'a.bin',
      mimeType: 'application/octet-stream',
    });
    const list = await api.files.list({ fields: 'files/id' });
    expect(list.data).toEqual({ files: [{ id: 'a' }] });
    const full = await api.files.get({ fileId: 'a', fields: '*' });
    expect(full.data).toMatchObject({ size: '3', md5Checksum: md5('abc'), version: '1' });
    expect(full.data.sha256Checksum).toBe(createHash('sha256').update('abc').digest('hex'));

    const bad = await failure(api.files.list({ fields: 'files(id,capabilities,canAddChildren)' }));
    expect(bad.status).toBe(400);
    expect(bad.response.data.error.errors[0]).toMatchObject({
      reason: 'invalidParameter',
      message: 'Invalid field selection canAddChildren',
      location: 'fields',
    });
    const noFields = await failure(api.about.get());
    expect([noFields.status, reasonOf(noFields)]).toEqual([400, 'required']);
    const about = await api.about.get({ fields: 'user(emailAddress),storageQuota/usage' });
    expect(about.data).toEqual({ user: { emailAddress: ANN }, storageQuota: { usage: '3' } });
  });

  it('keeps awkward names, native types without checksums, shortcuts, shared with me', async () => {
    const long = 'é'.repeat(150); // 300 bytes of UTF-8
    const google = await start({
      accounts: [
        {
          email: ANN,
          myDrive: [
            { type: 'file', id: 's1', name: 'a/b', content: '1' },
            { type: 'file', id: 's2', name: 'a/b', content: '2' },
            { type: 'file', id: 'long', name: long, content: '3' },
            { type: 'doc', id: 'doc', name: 'Notes 📝' },
            { type: 'form', id: 'form', name: 'Survey' },
            { type: 'shortcut', id: 'sc', name: 'to doc', target: 'doc' },
          ],
          sharedWithMe: [
            { type: 'file', id: 'theirs', name: 'from bob.txt', content: 'x', owner: BOB },
          ],
        },
        { email: BOB },
      ],
    });
    const { api } = connect(google);
    const res = await api.files.list({
      q: "'root' in parents",
      fields: 'files(id,name,mimeType,size,md5Checksum,shortcutDetails,exportLinks)',
    });
    const byId = new Map(res.data.files!.map((f) => [f.id!, f]));
    expect([byId.get('s1')!.name, byId.get('s2')!.name]).toEqual(['a/b', 'a/b']);
    expect(Buffer.byteLength(byId.get('long')!.name!)).toBe(300);
    expect(byId.get('doc')).not.toHaveProperty('md5Checksum');
    expect(byId.get('doc')).not.toHaveProperty('size');
    expect(Object.keys(byId.get('doc')!.exportLinks!)).toContain('application/pdf');
    expect(byId.get('form')).not.toHaveProperty('exportLinks');
    expect(byId.get('sc')!.shortcutDetails).toEqual({
      targetId: 'doc',
      targetMimeType: 'application/vnd.google-apps.document',
    });
    expect(byId.has('theirs')).toBe(false);
    const shared = await api.files.list({
      q: 'sharedWithMe = true',
      fields: 'files(id,parents,owners(emailAddress),ownedByMe)',
    });
    expect(shared.data.files).toEqual([
      { id: 'theirs', owners: [{ emailAddress: BOB }], ownedByMe: false },
    ]);
  });

  it('refuses a q it does not emulate, unknown parameters, and shared drives without the flags', async () => {
    const google = await start({
      sharedDrives: [
        {
          id: 'team',
          name: 'Team',
          members: [ANN],
          children: [{ type: 'file', name: 't.txt', content: 't' }],
        },
      ],
    });
    const { api } = connect(google);
    const q = await failure(api.files.list({ q: "name = 'a' or name = 'b'" }));
    expect([q.status, reasonOf(q), q.response.data.error.errors[0].location]).toEqual([
      400,
      'invalid',
      'q',
    ]);
    expect(google.calls({ api: 'files.list' })[0]!.note).toMatch(/"and" only/);
    const unknown = await failure(api.files.list({ includeItemsFromAllDrive: true } as never));
    expect(unknown.status).toBe(400);
    const noInclude = await failure(api.files.list({ corpora: 'drive', driveId: 'team' }));
    expect([noInclude.status, reasonOf(noInclude)]).toEqual([403, 'teamDriveIncludeItemsRequired']);
    const inDrive = await api.files.list({
      corpora: 'drive',
      driveId: 'team',
      includeItemsFromAllDrives: true,
      supportsAllDrives: true,
      fields: 'files(name,driveId,owners)',
    });
    expect(inDrive.data.files).toEqual([{ name: 't.txt', driveId: 'team' }]);
    expect((await api.files.list({ fields: 'files(name)' })).data.files).toEqual([]);
  });
});

describe('downloads and exports', () => {
  it('resumes a download with Range after the connection drops', async () => {
    const size = 3 * 1024 * 1024 + 123;
    const google = await start({
      accounts: [
        {
          email: ANN,
          myDrive: [{ type: 'file', id: 'big', name: 'big.bin', content: { size, seed: 7 } }],
        },
      ],
    });
    const { api } = connect(google);
    const meta = await api.files.get({ fileId: 'big', fields: 'size,md5Checksum' });
    expect(meta.data.size).toBe(String(size));

    google.inject({ dropAfterBytes: 1_000_000, match: { api: 'files.download' } });
    const first = await api.files.get({ fileId: 'big', alt: 'media' }, { responseType: 'stream' });
    const parts: Buffer[] = [];
    await expect(
      new Promise((resolve, reject) => {
        first.data.on('data', (c: Buffer) => parts.push(c));
        first.data.on('end', resolve);
        first.data.on('error', reject);
      }),
    ).rejects.toThrow();
    const got = Buffer.concat(parts).length;
    expect(got).toBe(1_000_000);

    const rest = await api.files.get(
      { fileId: 'big', alt: 'media' },
      { responseType: 'arraybuffer', headers: { Range: `bytes=${got}-` } },
    );
    expect(rest.status).toBe(206);
    expect((rest.headers as unknown as Headers).get('content-range')).toBe(
      `bytes ${got}-${size - 1}/${size}`,
    );
    const whole = Buffer.concat([...parts, Buffer.from(rest.data as ArrayBuffer)]);
    expect(md5(whole)).toBe(meta.data.md5Checksum);

    const past = await failure(
      api.files.get(
        { fileId: 'big', alt: 'media' },
        { headers: { Range: `bytes=${size}-` }, retry: false },
      ),
    );
    expect(past.status).toBe(416);
  });

  it('answers native files, abuse flags and large exports as Drive does', async () => {
    const google = await start({
      accounts: [
        {
          email: ANN,
          myDrive: [
            { type: 'doc', id: 'doc', name: 'Doc', exports: { 'text/plain': 'hello' } },
            {
              type: 'sheet',
              id: 'huge',
              name: 'Huge',
              exports: { 'text/csv': { size: 11 * 1024 * 1024 } },
            },
            { type: 'file', id: 'bad', name: 'bad.exe', content: 'MZ', abusive: true },
          ],
        },
      ],
    });
    const { api, oauth } = connect(google);
    const native = await failure(api.files.get({ fileId: 'doc', alt: 'media' }));
    expect([native.status, reasonOf(native)]).toEqual([403, 'fileNotDownloadable']);
    const text = await api.files.export(
      { fileId: 'doc', mimeType: 'text/plain' },
      { responseType: 'text' },
    );
    expect(text.data).toBe('hello');
    const unsupported = await failure(api.files.export({ fileId: 'doc', mimeType: 'image/png' }));
    expect([unsupported.status, reasonOf(unsupported)]).toEqual([400, 'badRequest']);

    const tooBig = await failure(api.files.export({ fileId: 'huge', mimeType: 'text/csv' }));
    expect([tooBig.status, reasonOf(tooBig)]).toEqual([403, 'exportSizeLimitExceeded']);
    const links = await api.files.get({ fileId: 'huge', fields: 'exportLinks' });
    const viaLink = await oauth.request<ArrayBuffer>({
      url: links.data.exportLinks!['text/csv']!,
      responseType: 'arraybuffer',
    });
    expect(viaLink.data.byteLength).toBe(11 * 1024 * 1024);

    const abusive = await failure(api.files.get({ fileId: 'bad', alt: 'media' }));
    expect([abusive.status, reasonOf(abusive)]).toEqual([403, 'cannotDownloadAbusiveFile']);
    const acknowledged = await api.files.get(
      { fileId: 'bad', alt: 'media', acknowledgeAbuse: true },
      { responseType: 'text' },
    );
    expect(acknowledged.data).toBe('MZ');
    const missing = await failure(api.files.get({ fileId: 'nope' }));
    expect(missing.status).toBe(404);
    expect(missing.response.data.error).toMatchObject({
      code: 404,
      message: 'File not found: nope.',
      errors: [{ reason: 'notFound', location: 'fileId', locationType: 'parameter' }],
    });
  });
});

describe('changes', () => {
  const tree: GoogleEmulatorOptions['accounts'] = [
    {
      email: ANN,
      myDrive: [
        {
          type: 'folder',
          id: 'docs',
          name: 'Docs',
          children: [{ type: 'file', id: 'a', name: 'a.txt', content: 'a' }],
        },
        { type: 'folder', id: 'old', name: 'Old' },
        { type: 'file', id: 'b', name: 'b.txt', content: 'b' },
        { type: 'file', id: 'c', name: 'c.txt', content: 'c' },
      ],
    },
  ];

  it('reports a rename, a move, a trash and a deletion, each file once with its latest state', async () => {
    const google = await start({ accounts: tree });
    const { api } = connect(google);
    const start0 = (await api.changes.getStartPageToken()).data.startPageToken!;
    const ann = google.drive(ANN);
    ann.rename('a', 'first.txt');
    ann.rename('a', 'renamed.txt');
    ann.move('b', 'old');
    ann.trash('docs');
    ann.deletePermanently('c');
    const created = ann.create({ type: 'file', name: 'new.txt', content: 'new' });

    const res = await api.changes.list({
      pageToken: start0,
      fields:
        'newStartPageToken,nextPageToken,changes(fileId,removed,file(name,parents,trashed,explicitlyTrashed))',
    });
    const changes = res.data.changes!;
    expect(changes.map((c) => c.fileId)).toEqual(['b', 'docs', 'a', 'c', created]);
    const by = new Map(changes.map((c) => [c.fileId!, c]));
    expect(by.get('a')!.file).toMatchObject({
      name: 'renamed.txt',
      trashed: true,
      explicitlyTrashed: false,
    });
    expect(by.get('b')!.file).toMatchObject({ parents: ['old'], trashed: false });
    expect(by.get('docs')!.file).toMatchObject({ trashed: true, explicitlyTrashed: true });
    expect(by.get('c')).toEqual({ fileId: 'c', removed: true });
    expect(res.data.nextPageToken).toBeUndefined();

    // A poll with nothing new is one call that answers no change and the same token.
    google.clearRequests();
    const again = await api.changes.list({ pageToken: res.data.newStartPageToken! });
    expect(again.data.changes).toEqual([]);
    expect(again.data.newStartPageToken).toBe(res.data.newStartPageToken);
    expect(google.calls().map((r) => r.api)).toEqual(['changes.list']);
  });

  it('pages with nextPageToken and answers 400 for a token it did not issue or expired', async () => {
    const google = await start({ accounts: tree });
    const { api } = connect(google);
    const token = (await api.changes.getStartPageToken()).data.startPageToken!;
    for (let i = 0; i < 5; i++)
      google.drive(ANN).create({ type: 'file', name: `n${i}`, content: `${i}` });
    const p1 = await api.changes.list({ pageToken: token, pageSize: 3 });
    expect(p1.data.changes).toHaveLength(3);
    expect(p1.data.newStartPageToken).toBeUndefined();
    const p2 = await api.changes.list({ pageToken: p1.data.nextPageToken!, pageSize: 3 });
    expect(p2.data.changes).toHaveLength(2);
    expect(p2.data.nextPageToken).toBeUndefined();
    expect(p2.data.changes![0]).toEqual({
      kind: 'drive#change',
      changeType: 'file',
      type: 'file',
      time: expect.any(String),
      removed: false,
      fileId: expect.any(String),
      file: {
        kind: 'drive#file',
        id: expect.any(String),
        name: 'n3',
        mimeType: 'application/octet-stream',
      },
    });
    const bogus = await failure(api.changes.list({ pageToken: 'abc' }));
    expect([bogus.status, reasonOf(bogus)]).toEqual([400, 'invalid']);
    google.expireChangeTokens(ANN);
    const expired = await failure(api.changes.list({ pageToken: token }));
    expect([expired.status, reasonOf(expired)]).toEqual([400, 'invalid']);
  });

  it('reports shared-drive files only to apps that ask, and removes them when the member leaves', async () => {
    const google = await start({
      accounts: [{ email: ANN }, { email: BOB }],
      sharedDrives: [
        {
          id: 'team',
          name: 'Team',
          members: [ANN, BOB],
          children: [{ type: 'file', id: 't', name: 't', content: 't' }],
        },
      ],
    });
    const { api } = connect(google);
    const token = (await api.changes.getStartPageToken()).data.startPageToken!;
    google.drive(BOB).rename('t', 't2');
    const plain = await api.changes.list({ pageToken: token });
    expect(plain.data.changes).toEqual([]);
    const all = { includeItemsFromAllDrives: true, supportsAllDrives: true };
    const withDrives = await api.changes.list({
      pageToken: token,
      ...all,
      fields: 'changes(fileId,file/name)',
    });
    expect(withDrives.data.changes).toEqual([{ fileId: 't', file: { name: 't2' } }]);
    expect((await api.drives.list()).data).toEqual({
      kind: 'drive#driveList',
      drives: [{ kind: 'drive#drive', id: 'team', name: 'Team' }],
    });
    const driveToken = (
      await api.changes.getStartPageToken({ driveId: 'team', supportsAllDrives: true })
    ).data.startPageToken!;

    const later = (await api.changes.getStartPageToken()).data.startPageToken!;
    google.sharedDrives.removeMember('team', ANN);
    const left = await api.changes.list({
      pageToken: later,
      ...all,
      fields: 'changes(changeType,fileId,driveId,removed)',
    });
    expect(left.data.changes).toEqual([
      { changeType: 'file', fileId: 't', removed: true },
      { changeType: 'drive', driveId: 'team', removed: true },
    ]);
    const gone = await failure(
      api.changes.list({ pageToken: driveToken, driveId: 'team', ...all }),
    );
    expect([gone.status, reasonOf(gone)]).toEqual([404, 'notFound']);
  });
});

describe('errors and faults reach the client as Google sends them', () => {
  it('each injected error is a GaxiosError with Google code and reason', async () => {
    const google = await start({
      accounts: [{ email: ANN, myDrive: [{ type: 'file', id: 'f', name: 'f', content: 'f' }] }],
    });
    const { api } = connect(google);
    await api.files.list(); // refresh the token first, so each call below is one request
    const cases = [
      ['userRateLimitExceeded', 403, 'userRateLimitExceeded'],
      ['rateLimitExceeded', 403, 'rateLimitExceeded'],
      ['tooManyRequests', 429, 'rateLimitExceeded'],
      ['backendError', 500, 'backendError'],
      ['serviceUnavailable', 503, 'backendError'],
      ['downloadQuotaExceeded', 403, 'downloadQuotaExceeded'],
    ] as const;
    for (const [error, status, reason] of cases) {
      google.inject({ error, retryAfter: error === 'tooManyRequests' ? 7 : undefined });
      const e = await failure(api.files.get({ fileId: 'f', alt: 'media' }, { retry: false }));
      expect(e.constructor.name).toBe('GaxiosError');
      expect([e.status, e.code, reasonOf(e)]).toEqual([status, status, reason]);
      if (error === 'tooManyRequests') expect(e.response.headers.get('retry-after')).toBe('7');
    }
    expect(google.calls({ api: 'files.download' })).toHaveLength(cases.length);
  });

  it("lets the client's own retry get through two 503s, and limits requests per user", async () => {
    const google = await start();
    const { api } = connect(google);
    google.inject({ error: 'serviceUnavailable', times: 2, match: { api: 'about.get' } });
    const about = await api.about.get({ fields: 'user/emailAddress' });
    expect(about.data.user!.emailAddress).toBe(ANN);
    expect(google.calls({ api: 'about.get' }).map((r) => r.status)).toEqual([503, 503, 200]);

    google.inject({ delayMs: 300, match: { api: 'files.list' } });
    const t0 = Date.now();
    await api.files.list();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);

    google.rateLimit(5);
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        api.files.list({}, { retry: false }).then(
          () => 200,
          (e: any) => `${e.status} ${reasonOf(e)}`,
        ),
      ),
    );
    expect(results.filter((r) => r === 200)).toHaveLength(5);
    expect(results.filter((r) => r === '403 userRateLimitExceeded')).toHaveLength(3);
  });

  it('is reachable from another process (the daemon runs as a child)', async () => {
    const google = await start();
    const { accessToken } = google.authorize(ANN);
    const script = `fetch(process.argv[1], { headers: { authorization: 'Bearer ' + process.argv[2] } })
      .then((r) => r.json()).then((b) => console.log(b.user.emailAddress));`;
    const { stdout } = await promisify(execFile)(process.execPath, [
      '-e',
      script,
      `${google.apiRoot}/drive/v3/about?fields=user`,
      accessToken,
    ]);
    expect(stdout.trim()).toBe(ANN);
  });
});

describe('OAuth', () => {
  it('refreshes by itself: before an expiring token, and after a 401', async () => {
    const google = await start();
    google.accessTokenLifetime = 1;
    const { api } = connect(google);
    await api.files.list();
    await api.files.list();
    // An access token within 5 minutes of its expiry is refreshed before each call.
    expect(google.calls({ api: ['token', 'files.list'] }).map((r) => r.api)).toEqual([
      'token',
      'files.list',
      'token',
      'files.list',
    ]);

    google.accessTokenLifetime = 3599;
    const { api: api2 } = connect(google, ANN, { forceRefreshOnFailure: true });
    await api2.files.list();
    google.expireAccessTokens(ANN);
    google.clearRequests();
    await api2.files.list();
    expect(
      google.calls({ api: ['token', 'files.list'] }).map((r) => `${r.api} ${r.status}`),
    ).toEqual(['files.list 401', 'token 200', 'files.list 200']);
    expect(google.requests[0]!.reason).toBe('authError');
  });

  it('answers invalid_grant once the owner revokes the app', async () => {
    const google = await start();
    const { api, refreshToken } = connect(google);
    await api.files.list();
    google.revoke(ANN);
    // The access token in hand dies with the grant...
    const dead = await failure(api.files.list());
    expect([dead.status, reasonOf(dead)]).toEqual([401, 'authError']);
    // ...and the refresh token answers invalid_grant (here after a restart of the product).
    const restarted = new auth.OAuth2({
      clientId: google.client.clientId,
      clientSecret: google.client.clientSecret,
      endpoints: { oauth2TokenUrl: google.tokenUrl },
    });
    restarted.setCredentials({ refresh_token: refreshToken });
    const api2 = drive({ version: 'v3', auth: restarted, rootUrl: `${google.apiRoot}/` });
    const e = await failure(api2.files.list());
    expect(e.status).toBe(400);
    expect(e.response.data).toEqual({
      error: 'invalid_grant',
      error_description: 'Token has been expired or revoked.',
    });
  });

  it('runs the PKCE consent and code exchange, and refuses what Google refuses', async () => {
    const google = await start();
    const redirectUri = 'http://127.0.0.1:8765/oauth/callback';
    const client = new OAuth2Client({
      clientId: google.client.clientId,
      clientSecret: google.client.clientSecret,
      redirectUri,
      endpoints: { oauth2TokenUrl: google.tokenUrl, oauth2AuthBaseUrl: google.authUrl },
    });
    const { codeVerifier, codeChallenge } = await client.generateCodeVerifierAsync();
    const authorizeUrl = (extra: Record<string, string> = {}) =>
      client.generateAuthUrl({
        access_type: 'offline',
        prompt: 'consent',
        scope: [SCOPES.driveReadonly],
        code_challenge: codeChallenge,
        code_challenge_method: CodeChallengeMethod.S256,
        state: 'xyz',
        ...extra,
      });

    const back = new URL(google.consent(authorizeUrl(), { account: ANN }));
    expect(back.origin + back.pathname).toBe(redirectUri);
    expect(back.searchParams.get('state')).toBe('xyz');
    expect(back.searchParams.get('scope')).toBe(SCOPES.driveReadonly);
    const code = back.searchParams.get('code')!;

    const wrong = await failure(client.getToken({ code, codeVerifier: 'x'.repeat(43) }));
    expect(wrong.response.data).toEqual({
      error: 'invalid_grant',
      error_description: 'Invalid code verifier.',
    });
    const { tokens } = await client.getToken({ code, codeVerifier });
    expect(tokens.refresh_token).toMatch(/^1\/\//);
    expect(tokens.scope).toBe(SCOPES.driveReadonly);
    const reused = await failure(client.getToken({ code, codeVerifier }));
    expect(reused.response.data.error).toBe('invalid_grant');

    client.setCredentials(tokens);
    const api = drive({ version: 'v3', auth: client, rootUrl: `${google.apiRoot}/` });
    const me = await api.about.get({ fields: 'user(emailAddress)' });
    expect(me.data.user!.emailAddress).toBe(ANN);

    const other = new URL(google.consent(authorizeUrl(), { account: ANN }));
    const mismatch = await failure(
      client.getToken({
        code: other.searchParams.get('code')!,
        codeVerifier,
        redirect_uri: 'http://127.0.0.1:1/x',
      }),
    );
    expect(mismatch.response.data.error).toBe('redirect_uri_mismatch');
    // The same consent over HTTP, for a browser (or fetch) at google.authUrl.
    const viaHttp = await fetch(authorizeUrl({ login_hint: ANN }), { redirect: 'manual' });
    expect(viaHttp.status).toBe(302);
    expect(viaHttp.headers.get('location')).toMatch(
      /^http:\/\/127\.0\.0\.1:8765\/oauth\/callback\?code=/,
    );
    const denied = new URL(google.consent(authorizeUrl(), { account: ANN, deny: true }));
    expect([denied.searchParams.get('error'), denied.searchParams.get('state')]).toEqual([
      'access_denied',
      'xyz',
    ]);

    const refusals: [string, string][] = [
      [authorizeUrl({ client_id: 'unknown.apps.googleusercontent.com' }), 'invalid_client'],
      [authorizeUrl({ redirect_uri: 'https://evil.example/cb' }), 'redirect_uri_mismatch'],
      [authorizeUrl({ scope: '' }), 'invalid_request'],
      [authorizeUrl({ scope: 'https://www.googleapis.com/auth/nothing' }), 'invalid_scope'],
    ];
    const noPkce = new URL(authorizeUrl());
    noPkce.searchParams.delete('code_challenge');
    noPkce.searchParams.delete('code_challenge_method');
    refusals.push([noPkce.toString(), 'invalid_request']);
    for (const [url, error] of refusals) {
      let thrown: unknown;
      try {
        google.consent(url, { account: ANN });
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(ConsentError);
      expect((thrown as ConsentError).error).toBe(error);
    }
    const badClient = new OAuth2Client({
      clientId: google.client.clientId,
      clientSecret: 'wrong',
      endpoints: { oauth2TokenUrl: google.tokenUrl },
    });
    badClient.setCredentials({ refresh_token: tokens.refresh_token });
    const e = await failure(badClient.getAccessToken());
    expect([e.status, e.response.data.error]).toEqual([401, 'invalid_client']);
  });
});
