/** The Drive pull's items, in SQLite (table drive_items, migration 3). */
import type Database from 'better-sqlite3';
import type { DriveItemCounts, DriveItemRecord, DriveItemRepository } from '../types.js';

type Stmt = <T = unknown>(sql: string) => Database.Statement<unknown[], T>;

const COLUMNS = [
  'account_id',
  'file_id',
  'parent_id',
  'name',
  'mime_type',
  'kind',
  'local_name',
  'rel_path',
  'size',
  'md5',
  'sha256',
  'version',
  'modified_time',
  'content_version',
  'state',
  'note',
  'attempts',
  'meta',
  'updated_at',
] as const;

const toRecord = (r: Record<string, unknown>): DriveItemRecord =>
  ({
    ...r,
    meta: typeof r.meta === 'string' ? (JSON.parse(r.meta) as Record<string, unknown>) : null,
  }) as DriveItemRecord;

export function sqliteDriveItems(db: Database.Database, stmt: Stmt): DriveItemRepository {
  const insert = `INSERT OR REPLACE INTO drive_items (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')})`;
  const put = db.transaction((records: DriveItemRecord[]) => {
    const s = stmt(insert);
    for (const r of records)
      s.run(
        ...COLUMNS.map((c) => (c === 'meta' ? (r.meta ? JSON.stringify(r.meta) : null) : r[c])),
      );
  });
  const remove = db.transaction((accountId: number, ids: string[]) => {
    const s = stmt('DELETE FROM drive_items WHERE account_id = ? AND file_id = ?');
    for (const id of ids) s.run(accountId, id);
  });
  return {
    async all(accountId) {
      return stmt<Record<string, unknown>>('SELECT * FROM drive_items WHERE account_id = ?')
        .all(accountId)
        .map(toRecord);
    },
    async put(records) {
      if (records.length) put(records);
    },
    async remove(accountId, ids) {
      if (ids.length) remove(accountId, ids);
    },
    async unfinished(accountId) {
      return stmt<Record<string, unknown>>(
        "SELECT * FROM drive_items WHERE account_id = ? AND state IN ('pending','failed','deferred')",
      )
        .all(accountId)
        .map(toRecord);
    },
    async counts(accountId) {
      const r = stmt<DriveItemCounts>(
        `SELECT COUNT(*) AS items,
           COALESCE(SUM(kind IN ('file','export') AND state = 'ok'), 0) AS files,
           COALESCE(SUM(CASE WHEN kind IN ('file','export') AND state = 'ok' THEN COALESCE(size, 0) ELSE 0 END), 0) AS bytes,
           COALESCE(SUM(state = 'failed'), 0) AS failed,
           COALESCE(SUM(state = 'deferred'), 0) AS deferred,
           COALESCE(SUM(state = 'skipped'), 0) AS skipped,
           COALESCE(SUM(state = 'recorded'), 0) AS recorded
         FROM drive_items WHERE account_id = ?`,
      ).get(accountId)!;
      return r;
    },
  };
}
