// A kill -9 at any moment leaves a state database that opens, passes integrity_check, and
// still holds every write the daemon acknowledged before it died.
import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient, cleanEnv, makeHome, setUp, startDaemon, type Home } from '../helpers/daemon.js';

let home: Home;
afterAll(async () => {
  await home?.cleanup();
});

describe('SIGKILL during a burst of state writes', () => {
  it('leaves an intact database with every acknowledged write, three times over', async () => {
    home = await makeHome(() => ({ daemon: { log_level: 'INFO' } }));
    const dbPath = path.join(home.dir, 'data', 'mirror', '.backupd', 'state.db');
    let daemon = await startDaemon(home, cleanEnv());
    const admin = await setUp(daemon);
    const bearer = (await admin.post('/api/keys', { name: 'burst' })).json.key as string;
    const acknowledged: number[] = [];

    for (let round = 0; round < 3; round++) {
      const api = new ApiClient(daemon.url);
      api.bearer = bearer;
      let stop = false;
      // Eight writers in parallel: each request is a transaction (a key row) plus log events.
      const writers = Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const r = await api
            .post('/api/keys', { name: `r${round}-w${w}-${i}` })
            .catch(() => undefined);
          if (r?.status === 201) acknowledged.push(r.json.id as number);
        }
      });
      const before = acknowledged.length;
      // Kill once a few hundred writes have gone through in this round, mid-stream.
      const deadline = Date.now() + 30_000;
      while (acknowledged.length < before + 150 + round * 100 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 5));
      await daemon.kill9();
      stop = true;
      await Promise.all(writers);
      expect(acknowledged.length).toBeGreaterThan(before + 100);

      const db = new Database(dbPath);
      try {
        expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
        const ids = new Set(
          (db.prepare('SELECT id FROM api_keys').all() as { id: number }[]).map((r) => r.id),
        );
        const lost = acknowledged.filter((id) => !ids.has(id));
        expect(lost).toEqual([]);
      } finally {
        db.close();
      }
      daemon = await startDaemon(home, cleanEnv());
      expect((await new ApiClient(daemon.url).get('/api/health')).status).toBe(200);
    }
    const check = new ApiClient(daemon.url);
    check.bearer = bearer;
    expect((await check.get('/api/keys')).json.keys.length).toBeGreaterThanOrEqual(
      acknowledged.length,
    );
    expect(await daemon.stop()).toBe(0);
  });
});
