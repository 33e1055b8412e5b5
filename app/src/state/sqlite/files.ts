/** The mirror's files as last seen, and what each destination holds of them, in SQLite. */
import type Database from 'better-sqlite3';
import type { DestinationFileRepository, FileRecord, FileRepository } from '../types.js';
import { StateError } from './errors.js';

type Stmt = <T = unknown>(sql: string) => Database.Statement<unknown[], T>;

const COLUMNS = 'id, source, rel_path, size, mtime_ms, inode, sha256, md5, state, updated_at';
/** Rows at `path`, or below it when it is a folder (no LIKE: names may hold % and _). */
const UNDER = (column: string) =>
  `(${column} = ? OR substr(${column}, 1, length(?) + 1) = ? || '/')`;

export function sqliteFiles(db: Database.Database, stmt: Stmt): FileRepository {
  const get = (source: string, relPath: string) =>
    stmt<FileRecord>(`SELECT ${COLUMNS} FROM files WHERE source = ? AND rel_path = ?`).get(
      source,
      relPath,
    );

  const move = db.transaction(
    (source: string, from: string, to: string, isDir: boolean, at: number) => {
      // Whatever the state knew at the new place (a deleted file, a replaced one) gives way.
      if (isDir)
        stmt(`DELETE FROM files WHERE source = ? AND ${UNDER('rel_path')}`).run(source, to, to, to);
      else stmt('DELETE FROM files WHERE source = ? AND rel_path = ?').run(source, to);
      if (!isDir)
        return stmt(
          'UPDATE files SET rel_path = ?, updated_at = ? WHERE source = ? AND rel_path = ?',
        ).run(to, at, source, from).changes;
      return stmt(
        `UPDATE files SET rel_path = ? || substr(rel_path, length(?) + 1), updated_at = ? WHERE source = ? AND ${UNDER('rel_path')}`,
      ).run(to, from, at, source, from, from, from).changes;
    },
  );

  return {
    async get(source, relPath) {
      return get(source, relPath);
    },
    async upsert(f) {
      stmt(
        `INSERT INTO files (source, rel_path, size, mtime_ms, inode, sha256, md5, state, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (source, rel_path) DO UPDATE SET size = excluded.size, mtime_ms = excluded.mtime_ms, inode = excluded.inode,
           sha256 = excluded.sha256, md5 = excluded.md5, state = excluded.state, updated_at = excluded.updated_at`,
      ).run(
        f.source,
        f.rel_path,
        f.size,
        f.mtime_ms,
        f.inode,
        f.sha256,
        f.md5,
        f.state,
        f.updated_at,
      );
      return get(f.source, f.rel_path)!;
    },
    async markDeleted(source, relPath, at) {
      stmt(
        "UPDATE files SET state = 'deleted', updated_at = ? WHERE source = ? AND rel_path = ?",
      ).run(at, source, relPath);
    },
    async move(source, from, to, isDir, at) {
      return move(source, from, to, isDir, at);
    },
    async *present(source, dir) {
      // Paged by id so no statement stays open across an await (other writes go on meanwhile).
      const scope = dir ? `AND ${UNDER('rel_path')}` : '';
      const scopeArgs = dir ? [dir, dir, dir] : [];
      let after = 0;
      for (;;) {
        const page = stmt<FileRecord>(
          `SELECT ${COLUMNS} FROM files WHERE source = ? AND state = 'present' ${scope} AND id > ? ORDER BY id LIMIT 1000`,
        ).all(source, ...scopeArgs, after);
        if (page.length === 0) return;
        yield* page;
        after = page.at(-1)!.id;
      }
    },
    async *missingAt(destination, source) {
      let after = 0;
      for (;;) {
        const page = stmt<FileRecord>(
          `SELECT ${COLUMNS} FROM files f WHERE source = ? AND state = 'present' AND id > ?
             AND NOT EXISTS (SELECT 1 FROM destination_files d WHERE d.file_id = f.id AND d.destination = ? AND d.state = 'verified')
           ORDER BY id LIMIT 1000`,
        ).all(source, after, destination);
        if (page.length === 0) return;
        yield* page;
        after = page.at(-1)!.id;
      }
    },
    async totals() {
      return stmt<{ source: string; files: number; bytes: number }>(
        "SELECT source, COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes FROM files WHERE state = 'present' GROUP BY source ORDER BY source",
      ).all();
    },
  };
}

export function sqliteDestinationFiles(stmt: Stmt): DestinationFileRepository {
  const fileId = (source: string, relPath: string) =>
    stmt<{ id: number; sha256: string | null }>(
      'SELECT id, sha256 FROM files WHERE source = ? AND rel_path = ?',
    ).get(source, relPath);
  return {
    async markVerified(destination, source, relPath, size, at) {
      const file = fileId(source, relPath);
      if (!file) throw new StateError(`no file ${source}/${relPath} in the state`);
      stmt(
        `INSERT INTO destination_files (file_id, destination, state, size, sha256, verified_at, remote_path) VALUES (?, ?, 'verified', ?, ?, ?, ?)
         ON CONFLICT (file_id, destination) DO UPDATE SET state = 'verified', size = excluded.size, sha256 = excluded.sha256,
           verified_at = excluded.verified_at, remote_path = excluded.remote_path, error = NULL`,
      ).run(file.id, destination, size, file.sha256, at, relPath);
    },
    async holderOf(destination, sha256) {
      return stmt<{ source: string; remote_path: string }>(
        `SELECT f.source, d.remote_path FROM destination_files d JOIN files f ON f.id = d.file_id
         WHERE d.destination = ? AND d.sha256 = ? AND d.state = 'verified' AND d.remote_path IS NOT NULL LIMIT 1`,
      ).get(destination, sha256);
    },
    async get(destination, source, relPath) {
      return stmt<{
        remote_path: string;
        sha256: string | null;
        size: number | null;
        state: string;
      }>(
        `SELECT d.remote_path, d.sha256, d.size, d.state FROM destination_files d JOIN files f ON f.id = d.file_id
         WHERE d.destination = ? AND f.source = ? AND f.rel_path = ?`,
      ).get(destination, source, relPath);
    },
    async moved(destination, source, from, to, isDir) {
      const inSource = 'file_id IN (SELECT id FROM files WHERE source = ?)';
      if (!isDir) {
        stmt(
          `UPDATE destination_files SET remote_path = ? WHERE destination = ? AND remote_path = ? AND ${inSource}`,
        ).run(to, destination, from, source);
        return;
      }
      stmt(
        `UPDATE destination_files SET remote_path = ? || substr(remote_path, length(?) + 1)
         WHERE destination = ? AND ${UNDER('remote_path')} AND ${inSource}`,
      ).run(to, from, destination, from, from, from, source);
    },
    async forget(destination, source, relPath) {
      stmt(
        'DELETE FROM destination_files WHERE destination = ? AND file_id IN (SELECT id FROM files WHERE source = ? AND rel_path = ?)',
      ).run(destination, source, relPath);
    },
    async totals() {
      return stmt<{
        destination: string;
        files: number;
        bytes: number;
        last_success_at: number | null;
      }>(
        "SELECT destination, COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes, MAX(verified_at) AS last_success_at FROM destination_files WHERE state = 'verified' GROUP BY destination ORDER BY destination",
      ).all();
    },
  };
}
