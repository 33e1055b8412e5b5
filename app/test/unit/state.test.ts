// The state in a real SQLite file: migrations, the journal mode, and every repository as the
// daemon uses it.
import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openState, StateError, type NewEvent, type State } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';
import { migrations } from '../../src/state/sqlite/migrations.js';

const LATEST = migrations.at(-1)!.version;

const tmp = tempDirs('backupd-state-');
const opened: State[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

function open(file = path.join(tmp(), 'disk', '.backupd', 'state.db')): {
  state: State;
  file: string;
} {
  const state = openState({ kind: 'sqlite', path: file });
  opened.push(state);
  return { state, file };
}

/** A second, independent connection to the same file, as another process would have. */
function raw(file: string): Database.Database {
  return new Database(file);
}

describe('opening the state', () => {
  it('creates the schema (version 1) in a new file, folders included', async () => {
    const { state, file } = open();
    expect(await state.schemaVersion()).toBe(LATEST);
    expect(state.url).toBe(`sqlite:///${file}`);
    const db = raw(file);
    const tables = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all()
      .map((r) => (r as { name: string }).name);
    db.close();
    expect(tables).toEqual(
      expect.arrayContaining([
        'accounts',
        'api_keys',
        'destination_files',
        'events',
        'files',
        'queue',
        'runs',
        'sessions',
        'settings',
      ]),
    );
  });

  it('reopening keeps the data and applies no migration twice', async () => {
    const { state, file } = open();
    await state.settings.set('k', 'v');
    await state.close();
    const again = open(file).state;
    expect(await again.schemaVersion()).toBe(LATEST);
    expect(await again.settings.get('k')).toBe('v');
    await again.close();
    const db = raw(file);
    expect(db.prepare('SELECT version FROM schema_migrations').all()).toEqual(
      migrations.map((m) => ({ version: m.version })),
    );
    db.close();
  });

  it('a database from a newer backupd is refused with a StateError', async () => {
    const { state, file } = open();
    await state.close();
    const db = raw(file);
    db.prepare(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
    ).run();
    db.close();
    let err: unknown;
    try {
      open(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateError);
    expect((err as Error).message).toMatch(/schema version 99/);
    expect((err as Error).message).toContain(file);
  });

  it('a path that cannot be a database is a StateError naming it', () => {
    const dir = tmp();
    // The folder itself is not a database file.
    expect(() => open(dir)).toThrow(StateError);
  });

  it('a file that is not a SQLite database is a StateError naming it, and is left as it was', () => {
    const file = path.join(tmp(), 'state.db');
    const garbage = 'not a database, just some text\n'.repeat(200);
    writeFileSync(file, garbage);
    let err: unknown;
    try {
      open(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/not a backupd database|damaged/);
    expect(readFileSync(file, 'utf8')).toBe(garbage);
  });

  it('runs in WAL mode', () => {
    const { file } = open();
    const db = raw(file);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('passes the integrity check', async () => {
    const { state } = open();
    expect(await state.integrityCheck()).toEqual(['ok']);
  });
});

describe('events', () => {
  const ev = (
    time: number,
    level: NewEvent['level'],
    source: string,
    message: string,
  ): NewEvent => ({
    time,
    level,
    source,
    message,
    data: null,
  });

  async function seeded() {
    const { state } = open();
    const stored = await state.events.append([
      ev(1000, 'debug', 'sync', 'd1'),
      ev(2000, 'info', 'sync', 'i1'),
      ev(3000, 'warn', 'push', 'w1'),
      ev(4000, 'error', 'push', 'e1'),
      ev(5000, 'info', 'api', 'i2'),
      ev(6000, 'fatal', 'daemon', 'f1'),
    ]);
    return { state, stored };
  }
  const messages = (list: { message: string }[]) => list.map((e) => e.message);

  it('append returns the events with increasing ids, and data round-trips', async () => {
    const { state } = open();
    const [a, b] = await state.events.append([
      {
        time: 1,
        level: 'info',
        source: 's',
        message: 'm',
        data: { nested: { n: 1 }, list: [1, 'x'] },
      },
      { time: 2, level: 'info', source: 's', message: 'm2', data: null },
    ]);
    expect(b!.id).toBeGreaterThan(a!.id);
    const [newest, oldest] = await state.events.list({ limit: 10 });
    expect(oldest).toEqual({
      id: a!.id,
      time: 1,
      level: 'info',
      source: 's',
      message: 'm',
      data: { nested: { n: 1 }, list: [1, 'x'] },
    });
    expect(newest!.data).toBeNull();
  });

  it('lists newest first', async () => {
    const { state } = await seeded();
    expect(messages(await state.events.list({ limit: 100 }))).toEqual([
      'f1',
      'i2',
      'e1',
      'w1',
      'i1',
      'd1',
    ]);
    expect(messages(await state.events.list({ limit: 2 }))).toEqual(['f1', 'i2']);
  });

  it('filters by level and above', async () => {
    const { state } = await seeded();
    expect(messages(await state.events.list({ level: 'warn', limit: 100 }))).toEqual([
      'f1',
      'e1',
      'w1',
    ]);
    expect(messages(await state.events.list({ level: 'info', limit: 100 }))).not.toContain('d1');
  });

  it('filters by source', async () => {
    const { state } = await seeded();
    expect(messages(await state.events.list({ source: 'push', limit: 100 }))).toEqual(['e1', 'w1']);
    expect(await state.events.list({ source: 'nobody', limit: 100 })).toEqual([]);
  });

  it('filters by time, both ends included', async () => {
    const { state } = await seeded();
    expect(messages(await state.events.list({ since: 2000, until: 4000, limit: 100 }))).toEqual([
      'e1',
      'w1',
      'i1',
    ]);
    expect(messages(await state.events.list({ since: 5500, limit: 100 }))).toEqual(['f1']);
  });

  it('pages backwards with beforeId, without gaps or repeats', async () => {
    const { state } = await seeded();
    const seen: string[] = [];
    let beforeId: number | undefined;
    for (;;) {
      const page = await state.events.list({ limit: 4, ...(beforeId ? { beforeId } : {}) });
      if (page.length === 0) break;
      seen.push(...messages(page));
      beforeId = page.at(-1)!.id;
    }
    expect(seen).toEqual(['f1', 'i2', 'e1', 'w1', 'i1', 'd1']);
  });

  it('combines filters', async () => {
    const { state } = await seeded();
    expect(
      messages(await state.events.list({ level: 'error', source: 'push', since: 1, limit: 100 })),
    ).toEqual(['e1']);
  });

  it('prune deletes events older than a time and says how many', async () => {
    const { state } = await seeded();
    expect(await state.events.prune(3000)).toBe(2);
    expect(messages(await state.events.list({ limit: 100 }))).toEqual(['f1', 'i2', 'e1', 'w1']);
    expect(await state.events.prune(3000)).toBe(0);
  });
});

describe('runs', () => {
  it('start, finish and latest', async () => {
    const { state } = open();
    const run = await state.runs.start('sync', 1000);
    expect(run).toMatchObject({
      kind: 'sync',
      status: 'running',
      started_at: 1000,
      finished_at: null,
    });
    expect(await state.runs.latest('sync')).toEqual(run);

    await state.runs.finish(run.id, 'succeeded', { files: 3, bytes: 1024 }, 2000);
    expect(await state.runs.latest('sync')).toEqual({
      id: run.id,
      kind: 'sync',
      started_at: 1000,
      finished_at: 2000,
      status: 'succeeded',
      summary: { files: 3, bytes: 1024 },
    });
    expect(await state.runs.latest('push')).toBeUndefined();
  });

  it('latest without a kind is the newest run of any kind; list is newest first', async () => {
    const { state } = open();
    const a = await state.runs.start('sync', 1000);
    const b = await state.runs.start('push', 2000);
    const c = await state.runs.start('sync', 3000);
    expect((await state.runs.latest())!.id).toBe(c.id);
    expect((await state.runs.latest('push'))!.id).toBe(b.id);
    expect((await state.runs.list(2)).map((r) => r.id)).toEqual([c.id, b.id]);
    expect((await state.runs.list(10)).map((r) => r.id)).toEqual([c.id, b.id, a.id]);
  });

  it('interruptStale marks the runs a dead process left running', async () => {
    const { state } = open();
    const done = await state.runs.start('sync', 1000);
    await state.runs.finish(done.id, 'failed', { error: 'disk gone' }, 1500);
    const left = await state.runs.start('push', 2000);
    expect(await state.runs.interruptStale(5000)).toBe(1);
    expect(await state.runs.latest('push')).toMatchObject({
      id: left.id,
      status: 'interrupted',
      finished_at: 5000,
    });
    expect(await state.runs.latest('sync')).toMatchObject({ status: 'failed', finished_at: 1500 });
    expect(await state.runs.interruptStale(6000)).toBe(0);
  });
});

describe('settings', () => {
  it('get, set, overwrite, delete', async () => {
    const { state } = open();
    expect(await state.settings.get('theme')).toBeUndefined();
    await state.settings.set('theme', 'dark');
    await state.settings.set('theme', 'light');
    expect(await state.settings.get('theme')).toBe('light');
    await state.settings.delete('theme');
    expect(await state.settings.get('theme')).toBeUndefined();
    await state.settings.delete('theme');
  });
});

describe('sessions and API keys', () => {
  const session = (hash: string, expires: number) => ({
    token_hash: hash,
    created_at: 1000,
    expires_at: expires,
    last_seen_at: 1000,
    ip: '192.0.2.1',
  });

  it('sessions: create, get, touch, delete', async () => {
    const { state } = open();
    await state.auth.createSession(session('h1', 10_000));
    expect(await state.auth.getSession('h1')).toEqual(session('h1', 10_000));
    expect(await state.auth.getSession('nope')).toBeUndefined();
    await state.auth.touchSession('h1', 5000, 20_000);
    expect(await state.auth.getSession('h1')).toMatchObject({
      last_seen_at: 5000,
      expires_at: 20_000,
    });
    await state.auth.deleteSession('h1');
    expect(await state.auth.getSession('h1')).toBeUndefined();
  });

  it('expired sessions are deleted; deleteAllSessions ends every one', async () => {
    const { state } = open();
    await state.auth.createSession(session('old', 1500));
    await state.auth.createSession(session('new', 9000));
    expect(await state.auth.deleteExpiredSessions(2000)).toBe(1);
    expect(await state.auth.getSession('old')).toBeUndefined();
    expect(await state.auth.getSession('new')).toBeDefined();
    await state.auth.deleteAllSessions();
    expect(await state.auth.getSession('new')).toBeUndefined();
  });

  it('API keys: create, find by hash, mark used, revoke once', async () => {
    const { state } = open();
    const key = await state.auth.createApiKey('dashboard', 'hash-1', 'bkp_abcdef', 1000);
    expect(key).toEqual({
      id: key.id,
      name: 'dashboard',
      prefix: 'bkp_abcdef',
      created_at: 1000,
      last_used_at: null,
      revoked_at: null,
    });
    expect(await state.auth.findApiKey('hash-1')).toEqual(key);
    expect(await state.auth.findApiKey('hash-2')).toBeUndefined();

    await state.auth.markApiKeyUsed(key.id, 2000);
    expect((await state.auth.findApiKey('hash-1'))!.last_used_at).toBe(2000);

    expect(await state.auth.revokeApiKey(key.id, 3000)).toBe(true);
    expect(await state.auth.revokeApiKey(key.id, 4000)).toBe(false);
    expect((await state.auth.findApiKey('hash-1'))!.revoked_at).toBe(3000);
    expect(await state.auth.revokeApiKey(12345, 4000)).toBe(false);

    const list = await state.auth.listApiKeys();
    expect(list.map((k) => k.name)).toEqual(['dashboard']);
    expect(Object.keys(list[0]!)).not.toContain('key_hash');
  });

  it('two keys with the same hash cannot exist', async () => {
    const { state } = open();
    await state.auth.createApiKey('a', 'same-hash', 'bkp_1', 1);
    await expect(state.auth.createApiKey('b', 'same-hash', 'bkp_2', 2)).rejects.toThrow();
  });
});

describe('accounts', () => {
  it('upsert is idempotent and keeps the status', async () => {
    const { state } = open();
    const a = await state.accounts.upsert('google_drive', 'me@example.com', 1000);
    expect(a).toMatchObject({
      source: 'google_drive',
      email: 'me@example.com',
      status: 'ok',
      cursor: null,
      created_at: 1000,
    });
    await state.accounts.setStatus(a.id, 'needs_sign_in', {
      message: 'token revoked',
      fix: 'sign in again',
    });
    const again = await state.accounts.upsert('google_drive', 'me@example.com', 2000);
    expect(again).toMatchObject({
      id: a.id,
      created_at: 1000,
      status: 'needs_sign_in',
      error_message: 'token revoked',
      error_fix: 'sign in again',
    });
    await state.accounts.upsert('google_photos', 'me@example.com', 3000);
    expect(await state.accounts.list()).toHaveLength(2);
    expect((await state.accounts.list('google_drive')).map((x) => x.id)).toEqual([a.id]);
  });

  it('setStatus clears the error; setCursor records the pass', async () => {
    const { state } = open();
    const a = await state.accounts.upsert('google_drive', 'me@example.com', 1000);
    await state.accounts.setStatus(a.id, 'error', { message: 'boom' });
    await state.accounts.setStatus(a.id, 'ok');
    await state.accounts.setCursor(a.id, 'page-token-42', 5000);
    const [row] = await state.accounts.list();
    expect(row).toMatchObject({
      status: 'ok',
      error_message: null,
      error_fix: null,
      cursor: 'page-token-42',
      last_pass_at: 5000,
    });
  });
});

describe('files and destinations', () => {
  const file = (rel_path: string, size: number, source = 'google_drive') => ({
    source,
    rel_path,
    size,
    mtime_ms: 1_700_000_000_000.5,
    inode: 42,
    sha256: `sha-${rel_path}`,
    md5: `md5-${rel_path}`,
    state: 'present' as const,
    updated_at: 1000,
  });

  it('upsert inserts, then updates the same row', async () => {
    const { state } = open();
    const a = await state.files.upsert(file('me/a.txt', 10));
    expect(a).toEqual({ id: a.id, ...file('me/a.txt', 10) });
    const b = await state.files.upsert({ ...file('me/a.txt', 20), sha256: 'sha-new' });
    expect(b.id).toBe(a.id);
    expect(await state.files.get('google_drive', 'me/a.txt')).toMatchObject({
      size: 20,
      sha256: 'sha-new',
    });
    expect(await state.files.get('google_drive', 'me/none.txt')).toBeUndefined();
  });

  it('totals count present files per source; markDeleted takes a file out', async () => {
    const { state } = open();
    await state.files.upsert(file('me/a.txt', 10));
    await state.files.upsert(file('me/b.txt', 32));
    await state.files.upsert(file('me/2024/p.jpg', 1000, 'google_photos'));
    expect(await state.files.totals()).toEqual([
      { source: 'google_drive', files: 2, bytes: 42 },
      { source: 'google_photos', files: 1, bytes: 1000 },
    ]);
    await state.files.markDeleted('google_drive', 'me/a.txt', 2000);
    expect(await state.files.get('google_drive', 'me/a.txt')).toMatchObject({
      state: 'deleted',
      updated_at: 2000,
    });
    expect(await state.files.totals()).toEqual([
      { source: 'google_drive', files: 1, bytes: 32 },
      { source: 'google_photos', files: 1, bytes: 1000 },
    ]);
  });

  it('markVerified records a file at a destination once; totals add up', async () => {
    const { state } = open();
    await state.files.upsert(file('me/a.txt', 10));
    await state.files.upsert(file('me/b.txt', 32));
    await state.destinationFiles.markVerified('aws_s3', 'google_drive', 'me/a.txt', 10, 1000);
    await state.destinationFiles.markVerified('aws_s3', 'google_drive', 'me/b.txt', 32, 3000);
    await state.destinationFiles.markVerified('aws_s3', 'google_drive', 'me/a.txt', 10, 2000); // again
    await state.destinationFiles.markVerified('eu_provider', 'google_drive', 'me/a.txt', 10, 1500);
    expect(await state.destinationFiles.totals()).toEqual([
      { destination: 'aws_s3', files: 2, bytes: 42, last_success_at: 3000 },
      { destination: 'eu_provider', files: 1, bytes: 10, last_success_at: 1500 },
    ]);
  });

  it('markVerified of a file the state does not know is a StateError', async () => {
    const { state } = open();
    await expect(
      state.destinationFiles.markVerified('aws_s3', 'google_drive', 'ghost.txt', 1, 1),
    ).rejects.toBeInstanceOf(StateError);
  });
});

describe('queue', () => {
  it('counts by state, over all destinations or one', async () => {
    const { state, file } = open();
    expect(await state.queue.counts()).toEqual({ pending: 0, running: 0, failed: 0, held: 0 });
    const db = raw(file);
    const insert = db.prepare(
      "INSERT INTO queue (source, rel_path, op, destination, state, created_at, updated_at) VALUES ('google_drive', ?, 'upsert', ?, ?, 0, 0)",
    );
    const rows: [string, string][] = [
      ['aws_s3', 'pending'],
      ['aws_s3', 'pending'],
      ['aws_s3', 'failed'],
      ['aws_s3', 'done'],
      ['eu_provider', 'pending'],
      ['eu_provider', 'running'],
      ['eu_provider', 'held'],
    ];
    rows.forEach(([dest, st], i) => insert.run(`f${i}`, dest, st));
    db.close();
    expect(await state.queue.counts()).toEqual({ pending: 3, running: 1, failed: 1, held: 1 });
    expect(await state.queue.counts('aws_s3')).toEqual({
      pending: 2,
      running: 0,
      failed: 1,
      held: 0,
    });
    expect(await state.queue.counts('local')).toEqual({
      pending: 0,
      running: 0,
      failed: 0,
      held: 0,
    });
  });
});

describe('snapshotTo', () => {
  it('writes a copy that opens with the same rows', async () => {
    const { state } = open();
    await state.settings.set('auth.admin_password', 'scrypt$hash');
    await state.files.upsert({
      source: 'google_drive',
      rel_path: 'me/a.txt',
      size: 5,
      mtime_ms: 1,
      inode: null,
      sha256: null,
      md5: null,
      state: 'present',
      updated_at: 1,
    });
    await state.events.append([
      { time: 1, level: 'info', source: 's', message: 'hello', data: null },
    ]);
    const copy = path.join(tmp(), 'snap', 'state.db');
    await state.snapshotTo(copy);
    // The original goes on changing; the copy does not.
    await state.settings.set('auth.admin_password', 'changed');

    const snap = open(copy).state;
    expect(await snap.schemaVersion()).toBe(LATEST);
    expect(await snap.integrityCheck()).toEqual(['ok']);
    expect(await snap.settings.get('auth.admin_password')).toBe('scrypt$hash');
    expect(await snap.files.totals()).toEqual([{ source: 'google_drive', files: 1, bytes: 5 }]);
    expect((await snap.events.list({ limit: 10 })).map((e) => e.message)).toEqual(['hello']);
  });
});
