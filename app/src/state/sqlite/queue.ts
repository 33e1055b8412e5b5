/** The durable push queue in SQLite: one row per change and destination. */
import type Database from 'better-sqlite3';
import type { NewChange, QueueItem, QueueRepository, QueueState } from '../types.js';

type Stmt = <T = unknown>(sql: string) => Database.Statement<unknown[], T>;

const toItem = (r: Record<string, unknown>): QueueItem => ({
  id: r.id as number,
  source: r.source as string,
  rel_path: r.rel_path as string,
  op: r.op as QueueItem['op'],
  from_path: (r.from_path as string | null) ?? null,
  is_dir: r.is_dir === 1,
  destination: r.destination as string,
  state: r.state as QueueState,
  attempts: r.attempts as number,
  next_attempt_at: (r.next_attempt_at as number | null) ?? null,
  last_error: (r.last_error as string | null) ?? null,
  created_at: r.created_at as number,
  updated_at: r.updated_at as number,
});

const idList = (ids: number[]) => `(${ids.map(() => '?').join(',')})`;

export function sqliteQueue(db: Database.Database, stmt: Stmt): QueueRepository {
  const enqueue = db.transaction(
    (changes: NewChange[], destinations: string[], at: number, held: boolean): number => {
      let added = 0;
      const state = held ? 'held' : 'pending';
      for (const c of changes) {
        for (const destination of destinations) {
          if (c.op !== 'move') {
            // The last state of a path wins over a pending upsert or delete of the same path.
            const merged = stmt(
              `UPDATE queue SET op = ?, state = ?, is_dir = ?, updated_at = ?, attempts = 0, next_attempt_at = NULL, last_error = NULL
               WHERE id = (SELECT id FROM queue WHERE source = ? AND rel_path = ? AND destination = ?
                           AND state IN ('pending', 'failed', 'held') AND op IN ('upsert', 'delete') ORDER BY id DESC LIMIT 1)
                 AND NOT EXISTS (SELECT 1 FROM queue m WHERE m.source = ? AND m.destination = ? AND m.op = 'move'
                                 AND m.state IN ('pending', 'failed', 'held', 'running') AND m.id > queue.id
                                 AND (m.rel_path = ? OR m.from_path = ?))`,
            ).run(
              c.op,
              state,
              c.is_dir ? 1 : 0,
              at,
              c.source,
              c.rel_path,
              destination,
              c.source,
              destination,
              c.rel_path,
              c.rel_path,
            );
            if (merged.changes > 0) continue;
          }
          stmt(
            `INSERT INTO queue (source, rel_path, op, from_path, is_dir, destination, state, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          ).run(
            c.source,
            c.rel_path,
            c.op,
            c.from_path ?? null,
            c.is_dir ? 1 : 0,
            destination,
            state,
            at,
            at,
          );
          added++;
        }
      }
      return added;
    },
  );

  const claim = db.transaction((destination: string, now: number, limit: number): QueueItem[] => {
    const rows = stmt<Record<string, unknown>>(
      `SELECT * FROM queue WHERE destination = ? AND state IN ('pending', 'failed')
         AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY id LIMIT ?`,
    )
      .all(destination, now, limit)
      .map(toItem);
    if (rows.length) {
      stmt(
        `UPDATE queue SET state = 'running', updated_at = ? WHERE id IN ${idList(rows.map((r) => r.id))}`,
      ).run(now, ...rows.map((r) => r.id));
    }
    return rows.map((r) => ({ ...r, state: 'running' as const }));
  });

  return {
    async counts(destination) {
      // Finished items stay in the table, so counting them would make every count (the live
      // progress asks each second) as slow as the whole history; only the open states are read.
      const open = "state IN ('pending', 'running', 'failed', 'held')";
      const rows = destination
        ? stmt<{ state: string; n: number }>(
            `SELECT state, COUNT(*) AS n FROM queue WHERE destination = ? AND ${open} GROUP BY state`,
          ).all(destination)
        : stmt<{ state: string; n: number }>(
            `SELECT state, COUNT(*) AS n FROM queue WHERE ${open} GROUP BY state`,
          ).all();
      const by = Object.fromEntries(rows.map((r) => [r.state, r.n]));
      return {
        pending: by.pending ?? 0,
        running: by.running ?? 0,
        failed: by.failed ?? 0,
        held: by.held ?? 0,
      };
    },
    async enqueue(changes, destinations, at, opts) {
      return enqueue(changes, destinations, at, !!opts?.held);
    },
    async claim(destination, now, limit) {
      return claim(destination, now, limit);
    },
    async complete(id, at) {
      stmt("UPDATE queue SET state = 'done', last_error = NULL, updated_at = ? WHERE id = ?").run(
        at,
        id,
      );
    },
    async retry(id, error, nextAttemptAt, failed, at) {
      stmt(
        'UPDATE queue SET state = ?, attempts = attempts + 1, last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?',
      ).run(failed ? 'failed' : 'pending', error, nextAttemptAt, at, id);
    },
    async requeueRunning(at) {
      return stmt("UPDATE queue SET state = 'pending', updated_at = ? WHERE state = 'running'").run(
        at,
      ).changes;
    },
    async retryFailedNow(at) {
      return stmt(
        "UPDATE queue SET next_attempt_at = NULL, updated_at = ? WHERE state = 'failed'",
      ).run(at).changes;
    },
    async list(f) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (f.destination) {
        where.push('destination = ?');
        args.push(f.destination);
      }
      if (f.state) {
        where.push('state = ?');
        args.push(f.state);
      }
      return stmt<Record<string, unknown>>(
        `SELECT * FROM queue ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`,
      )
        .all(...args, f.limit)
        .map(toItem);
    },
    async release(ids, at) {
      if (ids === 'all')
        return stmt("UPDATE queue SET state = 'pending', updated_at = ? WHERE state = 'held'").run(
          at,
        ).changes;
      if (!ids.length) return 0;
      return stmt(
        `UPDATE queue SET state = 'pending', updated_at = ? WHERE state = 'held' AND id IN ${idList(ids)}`,
      ).run(at, ...ids).changes;
    },
    async discardHeld(ids) {
      if (ids === 'all') return stmt("DELETE FROM queue WHERE state = 'held'").run().changes;
      if (!ids.length) return 0;
      return stmt(`DELETE FROM queue WHERE state = 'held' AND id IN ${idList(ids)}`).run(...ids)
        .changes;
    },
    async pruneDone(before) {
      return stmt("DELETE FROM queue WHERE state = 'done' AND updated_at < ?").run(before).changes;
    },
    async countDone(destination, since, until) {
      // The partial index queue_done (state, updated_at) reads only the items of that interval.
      return stmt<{ n: number }>(
        "SELECT COUNT(*) AS n FROM queue WHERE state = 'done' AND updated_at >= ? AND updated_at < ? AND destination = ?",
      ).get(since, until, destination)!.n;
    },
  };
}
