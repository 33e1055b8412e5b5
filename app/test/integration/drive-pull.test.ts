// The Drive pull end to end: `backupd sync --once` (the built CLI, a child process) against the
// Google emulator (in this process), a local destination behind it. The first pass leaves the
// mirror as CONTRACT.md describes, every byte checked against the emulator's own content; the
// next pass fixes exactly what changed through the changes feed only; a pass with no change is
// one Drive call.
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, makeHome, syncOnce, type Home } from '../helpers/daemon.js';
import { hashTree } from '../helpers/trees.js';
import { startGoogleEmulator, type GoogleEmulator } from '../emulators/google/index.js';

const ANN = 'ann@example.com';
const DOCX = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
const MB = 1024 * 1024;

let google: GoogleEmulator;
let home: Home;
let env: NodeJS.ProcessEnv;

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

const sync = () => syncOnce(home, env);

/** Drive API calls (not the token endpoint) since the last clearRequests(). */
const driveCalls = () => google.requests.filter((r) => r.api !== 'token');

beforeAll(async () => {
  google = await startGoogleEmulator({
    accounts: [
      {
        email: ANN,
        myDrive: [
          {
            type: 'folder',
            name: 'Projects',
            children: [
              {
                type: 'folder',
                name: '2024',
                children: [
                  { id: 'report', type: 'file', name: 'report.pdf', content: 'PDF report' },
                ],
              },
              {
                id: 'notes-a',
                type: 'file',
                name: 'notes.txt',
                content: 'first notes',
                createdTime: '2020-01-01T00:00:00Z',
              },
              {
                id: 'notes-b',
                type: 'file',
                name: 'notes.txt',
                content: 'second notes',
                createdTime: '2021-01-01T00:00:00Z',
              },
              { id: 'loop', type: 'shortcut', name: 'back to Projects', target: 'projects' },
            ],
            id: 'projects',
          },
          { id: 'slash', type: 'file', name: 'a/b.txt', content: 'slash' },
          { id: 'long', type: 'file', name: `${'é'.repeat(150)}.txt`, content: 'long name' },
          { id: 'doc', type: 'doc', name: 'Plan' },
          { id: 'sheet', type: 'sheet', name: 'Budget' },
          { id: 'slides', type: 'slides', name: 'Talk' },
          { id: 'drawing', type: 'drawing', name: 'Sketch' },
          {
            id: 'bigdoc',
            type: 'doc',
            name: 'Thesis',
            exports: { [DOCX]: { size: 11 * MB, seed: 'thesis' } },
          },
          { id: 'form', type: 'form', name: 'Survey' },
          { id: 'short', type: 'shortcut', name: 'report link', target: 'report' },
          { id: 'trashed', type: 'file', name: 'old.txt', content: 'gone', trashed: true },
          {
            id: 'abusive',
            type: 'file',
            name: 'tool.exe',
            content: 'flagged bytes',
            abusive: true,
          },
          {
            id: 'limited',
            type: 'file',
            name: 'popular.bin',
            content: { size: 2 * MB, seed: 'popular' },
          },
          {
            id: 'mtime',
            type: 'file',
            name: 'dated.txt',
            content: 'dated',
            modifiedTime: '2022-03-04T05:06:07.000Z',
          },
        ],
        sharedWithMe: [
          {
            id: 'shared',
            type: 'file',
            name: 'from bob.txt',
            content: 'hello from bob',
            owner: 'bob@example.com',
          },
        ],
      },
    ],
    sharedDrives: [
      {
        id: 'team',
        name: 'Team',
        members: [ANN],
        children: [
          {
            type: 'folder',
            name: 'Specs',
            children: [{ id: 'spec', type: 'file', name: 'spec.md', content: '# spec' }],
          },
        ],
      },
    ],
  });
  home = await makeHome(() => ({
    sources: { google_drive: { acknowledge_abuse: true }, google_photos: { enabled: false } },
  }));
  const grant = google.authorize(ANN);
  env = cleanEnv({
    GOOGLE_API_ROOT: google.apiRoot,
    GOOGLE_OAUTH_TOKEN_URL: google.tokenUrl,
    GOOGLE_CLIENT_ID: google.client.clientId,
    GOOGLE_CLIENT_SECRET: google.client.clientSecret,
    GOOGLE_REFRESH_TOKEN: grant.refreshToken,
  });
});

afterAll(async () => {
  await google?.close();
  await home?.cleanup();
});

describe('the Drive pull', () => {
  it('mirrors every oddity as CONTRACT.md says, verified, and the push takes it to the destination', async () => {
    // The download of one file answers 429 twice (Retry-After: 1) before it works.
    google.inject({
      error: 'tooManyRequests',
      retryAfter: 1,
      times: 2,
      match: { api: 'files.download', fileId: 'limited' },
    });
    const { code, summary, stderr } = await sync();
    expect(
      summary.sources.google_drive.pull,
      JSON.stringify(summary.sources.google_drive) + stderr.slice(-2000),
    ).toBe('ok');
    expect(code).toBe(0);
    expect(google.calls({ api: 'files.download', fileId: 'limited' }).map((r) => r.status)).toEqual(
      [429, 429, 200],
    );

    const acct = path.join(home.drive, ANN);
    const d = google.drive(ANN);
    const content = (id: string) => d.file(id).content!.slice();
    const exported = (id: string, mime: string) => d.file(id).exports!.get(mime)!.slice();
    const expected: Record<string, string> = {
      'My Drive/Projects/2024/report.pdf': sha(content('report')),
      'My Drive/Projects/notes.txt': sha(content('notes-a')),
      'My Drive/Projects/notes (notes-b).txt': sha(content('notes-b')),
      'My Drive/a∕b.txt': sha(content('slash')),
      'My Drive/Plan.docx': sha(exported('doc', DOCX)),
      'My Drive/Budget.xlsx': sha(
        exported('sheet', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
      ),
      'My Drive/Talk.pptx': sha(
        exported(
          'slides',
          'application/vnd.openxmlformats-officedocument.presentationml.presentation',
        ),
      ),
      'My Drive/Sketch.svg': sha(exported('drawing', 'image/svg+xml')),
      'My Drive/Thesis.docx': sha(exported('bigdoc', DOCX)),
      'My Drive/tool.exe': sha(content('abusive')),
      'My Drive/popular.bin': sha(content('limited')),
      'My Drive/dated.txt': sha(content('mtime')),
      'Shared drives/Team/Specs/spec.md': sha(content('spec')),
      'Shared with me/from bob.txt': sha(content('shared')),
    };
    const tree = await hashTree(acct);
    const longName = Object.keys(tree).find((p) => p.startsWith('My Drive/éé'));
    expect(longName, 'the 300-byte name is shortened, not dropped').toBeDefined();
    expect(Buffer.byteLength(path.basename(longName!))).toBeLessThanOrEqual(255);
    expect(tree[longName!]).toBe(sha(content('long')));
    delete tree[longName!];
    expect(tree).toEqual(expected);
    // The 11 MB Doc came through exportLinks after files.export refused it.
    expect(google.calls({ api: 'files.export', fileId: 'bigdoc' })[0]?.reason).toBe(
      'exportSizeLimitExceeded',
    );
    expect(google.calls({ api: 'exportLink', fileId: 'bigdoc' }).at(-1)?.status).toBe(200);
    // Drive's modifiedTime on the file.
    const { mtime } = await import('node:fs/promises').then((fs) =>
      fs.stat(path.join(acct, 'My Drive/dated.txt')),
    );
    expect(mtime.toISOString()).toBe('2022-03-04T05:06:07.000Z');
    // No partial left over; the form and the shortcuts only in the manifest.
    expect(
      (await readdir(acct, { recursive: true })).filter((n) =>
        String(n).includes('backupd-partial'),
      ),
    ).toEqual([]);
    const manifest = (
      await readFile(path.join(home.drive, '.backupd', 'drive', `${ANN}.jsonl`), 'utf8')
    )
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const byId = new Map(manifest.map((m) => [m.id, m]));
    expect(byId.get('form')).toMatchObject({ kind: 'unexportable', state: 'recorded', path: null });
    expect(byId.get('form').note).toMatch(/no export/);
    expect(byId.get('loop')).toMatchObject({
      kind: 'shortcut',
      targetId: 'projects',
      state: 'recorded',
    });
    expect(byId.get('short').note).toContain('My Drive/Projects/2024/report.pdf');
    expect(byId.get('report')).toMatchObject({
      path: 'My Drive/Projects/2024/report.pdf',
      owners: [ANN],
      starred: false,
    });
    expect(byId.has('trashed')).toBe(false);

    // The push half took the mirror to the destination, byte for byte.
    const pushed = await hashTree(path.join(home.secondDisk, 'google-drive', ANN));
    expect(pushed).toEqual(await hashTree(acct));
    // The manifest travels with the data, under the daemon's own folder.
    expect(
      await readFile(
        path.join(home.secondDisk, 'google-drive', '.backupd', 'drive', `${ANN}.jsonl`),
        'utf8',
      ),
    ).toBe(await readFile(path.join(home.drive, '.backupd', 'drive', `${ANN}.jsonl`), 'utf8'));
  });

  it('fixes exactly what changed through the changes feed, and a pass with no change is one call', async () => {
    const d = google.drive(ANN);
    const acct = path.join(home.drive, ANN);
    const before = await hashTree(acct);
    d.rename('report', 'final report.pdf');
    d.move('slash', d.idOf('Projects'));
    d.updateContent('mtime', 'dated, then changed');
    d.trash('notes-a');
    const fresh = d.create({ type: 'file', name: 'new.txt', content: 'brand new' });
    google.clearRequests();

    const { code, summary } = await sync();
    expect(code, summary.sources.google_drive.note).toBe(0);
    const apis = driveCalls().map((r) => r.api);
    expect(apis).not.toContain('files.list');
    expect(apis.filter((a) => a === 'changes.list').length).toBeGreaterThan(0);
    // Downloads only for the modified and the new file.
    expect(
      new Set(
        driveCalls()
          .filter((r) => r.api === 'files.download')
          .map((r) => r.fileId),
      ),
    ).toEqual(new Set(['mtime', fresh]));

    const after = await hashTree(acct);
    const want = { ...before };
    want['My Drive/Projects/2024/final report.pdf'] = want['My Drive/Projects/2024/report.pdf']!;
    delete want['My Drive/Projects/2024/report.pdf'];
    want['My Drive/Projects/a∕b.txt'] = want['My Drive/a∕b.txt']!;
    delete want['My Drive/a∕b.txt'];
    want['My Drive/dated.txt'] = sha('dated, then changed');
    delete want['My Drive/Projects/notes.txt'];
    want['My Drive/new.txt'] = sha('brand new');
    expect(after).toEqual(want);
    // The other "notes.txt" keeps its name: local names are stable from pass to pass.
    expect(after['My Drive/Projects/notes (notes-b).txt']).toBeDefined();
    expect(await hashTree(path.join(home.secondDisk, 'google-drive', ANN))).toEqual(after);

    google.clearRequests();
    const quiet = await sync();
    expect(quiet.code).toBe(0);
    expect(driveCalls().map((r) => r.api)).toEqual(['changes.list']);
    expect(await hashTree(acct)).toEqual(after);
  });

  it('rides out a lost access token, rate limits, a dropped connection and a download quota', async () => {
    const d = google.drive(ANN);
    const acct = path.join(home.drive, ANN, 'My Drive');
    const big = d.create({ type: 'file', name: 'big.bin', content: { size: 3 * MB, seed: 'big' } });
    const hot = d.create({ type: 'file', name: 'hot.bin', content: 'wanted by everyone' });
    google.clearRequests();
    google.inject({ error: 'authError', match: { api: 'changes.list' } });
    google.inject({ error: 'userRateLimitExceeded', match: { api: 'changes.list' } });
    google.inject({ dropAfterBytes: MB, match: { api: 'files.download', fileId: big } });
    google.inject({
      error: 'downloadQuotaExceeded',
      times: Infinity,
      match: { api: 'files.download', fileId: hot },
    });

    const first = await sync();
    expect(first.code, JSON.stringify(first.summary.sources)).toBe(0);
    expect(first.summary.sources.google_drive.note).toContain('1 deferred');
    // 401: one refresh (a second token call), then the same request again.
    expect(google.calls({ api: 'token' }).length).toBe(2);
    expect(
      google
        .calls({ api: 'changes.list' })
        .map((r) => r.status)
        .slice(0, 3),
    ).toEqual([401, 403, 200]);
    // The cut body went on from where it stopped, and the file is whole.
    const bigCalls = google.calls({ api: 'files.download', fileId: big });
    expect(bigCalls.length).toBe(2);
    expect(bigCalls[1]!.headers.range).toMatch(/^bytes=[1-9]\d*-$/);
    const bytes = await readFile(path.join(acct, 'big.bin'));
    expect(sha(bytes)).toBe(sha(d.file(big).content!.slice()));
    // The refused file waits for the next pass; the rest went on.
    await expect(readFile(path.join(acct, 'hot.bin'))).rejects.toThrow();

    google.clearFaults();
    google.clearRequests();
    const second = await sync();
    expect(second.code).toBe(0);
    expect(await readFile(path.join(acct, 'hot.bin'), 'utf8')).toBe('wanted by everyone');
    expect(google.calls({ api: 'files.list' })).toEqual([]);
  });
});
