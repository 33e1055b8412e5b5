/**
 * The state in SQLite (better-sqlite3): WAL journal, foreign keys, migrations at open.
 * Every write is one transaction, so a kill -9 at any instant leaves a database that opens.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  LOG_LEVELS,
  type AccountRecord,
  type ApiKeyRecord,
  type EventRecord,
  type LogLevel,
  type NewEvent,
  type RunRecord,
  type SessionRecord,
  type State,
} from '../types.js';
import { StateError } from './errors.js';
import { migrations } from './migrations.js';
import { sqliteQueue } from './queue.js';
import { sqliteDestinationFiles, sqliteFiles } from './files.js';
import { sqliteDriveItems } from './drive.js';

export { StateError } from './errors.js';

const levelNo = (l: LogLevel) => LOG_LEVELS.indexOf(l);
const json = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));
const parse = <T>(v: unknown): T | null => (typeof v === 'string' ? (JSON.parse(v) as T) : null);

export function openSqliteState(path: string): State {
  mkdirSync(dirname(path), { recursive: true });
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: 5000 });
  } catch (err) {
    throw new StateError(
      `cannot open the state database ${path}: ${(err as Error).message}. Check that the data disk is mounted and writable.`,
    );
  }
  try {
    db.pragma('journal_mode = WAL');
    // NORMAL keeps the database consistent across a crash or power loss; a power loss may undo the
    // last commits, which the daemon then redoes (every operation is idempotent).
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    // better-sqlite3 builds SQLite with a 16 MiB page cache per connection, and a walk of the
    // state (the start-up reconciliation, a backfill) fills it: +18-21 MiB of RSS on a
    // 100,000-file state, against +6-9 MiB with 4 MiB, with no measurable slowdown (the kernel's
    // page cache still holds the file). See docs/benchmarks.md, "Memory".
    db.pragma('cache_size = -4000');
    migrate(db, path);
  } catch (err) {
    if (db.open) db.close();
    if (err instanceof StateError) throw err;
    // SQLite opens a file lazily: a damaged or foreign file shows up only here ("file is not a database").
    throw new StateError(
      `cannot use the state database ${path}: ${(err as Error).message}. It is damaged or not a backupd database: restore it from a backup, or move it away to start with an empty state.`,
    );
  }

  const prepared = new Map<string, Database.Statement>();
  const stmt = <T = unknown>(sql: string) => {
    let s = prepared.get(sql);
    if (!s) prepared.set(sql, (s = db.prepare(sql)));
    return s as Database.Statement<unknown[], T>;
  };

  // events
  const insertEvent = stmt(
    'INSERT INTO events (time, level, level_no, source, message, data) VALUES (?, ?, ?, ?, ?, ?)',
  );
  const appendEvents = db.transaction((events: NewEvent[]) =>
    events.map((e) => {
      const r = insertEvent.run(
        e.time,
        e.level,
        levelNo(e.level),
        e.source,
        e.message,
        json(e.data),
      );
      return { ...e, id: Number(r.lastInsertRowid) };
    }),
  );
  const toEvent = (r: Record<string, unknown>): EventRecord => ({
    id: r.id as number,
    time: r.time as number,
    level: r.level as LogLevel,
    source: r.source as string,
    message: r.message as string,
    data: parse(r.data),
  });

  // runs
  const toRun = (r: Record<string, unknown>): RunRecord => ({
    id: r.id as number,
    kind: r.kind as string,
    started_at: r.started_at as number,
    finished_at: (r.finished_at as number | null) ?? null,
    status: r.status as RunRecord['status'],
    summary: parse(r.summary),
  });

  const toAccount = (r: Record<string, unknown>) => r as unknown as AccountRecord;

  const state: State = {
    url: `sqlite:///${path}`,
    settings: {
      async get(key) {
        return stmt<{ value: string }>('SELECT value FROM settings WHERE key = ?').get(key)?.value;
      },
      async set(key, value) {
        stmt(
          'INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
        ).run(key, value, Date.now());
      },
      async delete(key) {
        stmt('DELETE FROM settings WHERE key = ?').run(key);
      },
    },
    events: {
      async append(events) {
        return appendEvents(events);
      },
      async list(q) {
        const where: string[] = [];
        const args: unknown[] = [];
        const add = (cond: boolean, clause: string, value: unknown) => {
          if (!cond) return;
          where.push(clause);
          args.push(value);
        };
        add(!!q.level, 'level_no >= ?', q.level && levelNo(q.level));
        add(!!q.source, 'source = ?', q.source);
        add(q.since !== undefined, 'time >= ?', q.since);
        add(q.until !== undefined, 'time <= ?', q.until);
        add(q.beforeId !== undefined, 'id < ?', q.beforeId);
        const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
        return stmt<Record<string, unknown>>(sql)
          .all(...args, q.limit)
          .map(toEvent);
      },
      async prune(before) {
        return stmt('DELETE FROM events WHERE time < ?').run(before).changes;
      },
    },
    runs: {
      async start(kind, at) {
        const r = stmt("INSERT INTO runs (kind, started_at, status) VALUES (?, ?, 'running')").run(
          kind,
          at,
        );
        return {
          id: Number(r.lastInsertRowid),
          kind,
          started_at: at,
          finished_at: null,
          status: 'running',
          summary: null,
        };
      },
      async finish(id, status, summary, at) {
        stmt('UPDATE runs SET status = ?, summary = ?, finished_at = ? WHERE id = ?').run(
          status,
          json(summary),
          at,
          id,
        );
      },
      async latest(kind) {
        const r = kind
          ? stmt<Record<string, unknown>>(
              'SELECT * FROM runs WHERE kind = ? ORDER BY id DESC LIMIT 1',
            ).get(kind)
          : stmt<Record<string, unknown>>('SELECT * FROM runs ORDER BY id DESC LIMIT 1').get();
        return r ? toRun(r) : undefined;
      },
      async list(limit) {
        return stmt<Record<string, unknown>>('SELECT * FROM runs ORDER BY id DESC LIMIT ?')
          .all(limit)
          .map(toRun);
      },
      async interruptStale(at) {
        return stmt(
          "UPDATE runs SET status = 'interrupted', finished_at = ? WHERE status = 'running'",
        ).run(at).changes;
      },
    },
    auth: {
      async createSession(s) {
        stmt(
          'INSERT INTO sessions (token_hash, created_at, expires_at, last_seen_at, ip) VALUES (?, ?, ?, ?, ?)',
        ).run(s.token_hash, s.created_at, s.expires_at, s.last_seen_at, s.ip);
      },
      async getSession(hash) {
        return stmt<SessionRecord>('SELECT * FROM sessions WHERE token_hash = ?').get(hash);
      },
      async touchSession(hash, at, expiresAt) {
        stmt('UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE token_hash = ?').run(
          at,
          expiresAt,
          hash,
        );
      },
      async deleteSession(hash) {
        stmt('DELETE FROM sessions WHERE token_hash = ?').run(hash);
      },
      async deleteAllSessions() {
        stmt('DELETE FROM sessions').run();
      },
      async deleteExpiredSessions(now) {
        return stmt('DELETE FROM sessions WHERE expires_at < ?').run(now).changes;
      },
      async createApiKey(name, keyHash, prefix, at) {
        const r = stmt(
          'INSERT INTO api_keys (name, key_hash, prefix, created_at) VALUES (?, ?, ?, ?)',
        ).run(name, keyHash, prefix, at);
        return {
          id: Number(r.lastInsertRowid),
          name,
          prefix,
          created_at: at,
          last_used_at: null,
          revoked_at: null,
        };
      },
      async listApiKeys() {
        return stmt<ApiKeyRecord>(
          'SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id',
        ).all();
      },
      async findApiKey(hash) {
        return stmt<ApiKeyRecord>(
          'SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys WHERE key_hash = ?',
        ).get(hash);
      },
      async markApiKeyUsed(id, at) {
        stmt('UPDATE api_keys SET last_used_at = ? WHERE id = ?').run(at, id);
      },
      async revokeApiKey(id, at) {
        return (
          stmt('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(at, id)
            .changes > 0
        );
      },
    },
    accounts: {
      async list(source) {
        const rows = source
          ? stmt<Record<string, unknown>>(
              'SELECT * FROM accounts WHERE source = ? ORDER BY email',
            ).all(source)
          : stmt<Record<string, unknown>>('SELECT * FROM accounts ORDER BY source, email').all();
        return rows.map(toAccount);
      },
      async upsert(source, email, at) {
        stmt(
          'INSERT INTO accounts (source, email, created_at) VALUES (?, ?, ?) ON CONFLICT (source, email) DO NOTHING',
        ).run(source, email, at);
        return toAccount(
          stmt<Record<string, unknown>>(
            'SELECT * FROM accounts WHERE source = ? AND email = ?',
          ).get(source, email)!,
        );
      },
      async setStatus(id, status, error) {
        stmt('UPDATE accounts SET status = ?, error_message = ?, error_fix = ? WHERE id = ?').run(
          status,
          error?.message ?? null,
          error?.fix ?? null,
          id,
        );
      },
      async setCursor(id, cursor, passAt) {
        stmt('UPDATE accounts SET cursor = ?, last_pass_at = ? WHERE id = ?').run(
          cursor,
          passAt,
          id,
        );
      },
    },
    driveItems: sqliteDriveItems(db, stmt),
    files: sqliteFiles(db, stmt),
    destinationFiles: sqliteDestinationFiles(stmt),
    queue: sqliteQueue(db, stmt),
    async integrityCheck() {
      const rows = db.pragma('integrity_check') as { integrity_check: string }[];
      return rows.map((r) => r.integrity_check);
    },
    async snapshotTo(file) {
      mkdirSync(dirname(file), { recursive: true });
      await db.backup(file);
    },
    async schemaVersion() {
      return currentVersion(db);
    },
    async close() {
      if (db.open) db.close();
    },
  };
  return state;
}

function currentVersion(db: Database.Database): number {
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as {
    v: number | null;
  };
  return row.v ?? 0;
}

function migrate(db: Database.Database, path: string): void {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
  );
  const have = currentVersion(db);
  const newest = migrations.at(-1)!.version;
  if (have > newest) {
    db.close();
    throw new StateError(
      `the state database ${path} has schema version ${have}, newer than this backupd understands (${newest}). Install the newer backupd again, or restore the database from before the upgrade.`,
    );
  }
  for (const m of migrations.filter((m) => m.version > have)) {
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        Date.now(),
      );
    })();
  }
}
