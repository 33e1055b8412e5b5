import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { housekeep } from '../../src/daemon/housekeeping.js';
import { openState } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-housekeeping-');
const DAY = 86_400_000;

describe('housekeeping', () => {
  it('drops events and finished queue items older than the retention, and keeps work to do', async () => {
    const state = openState({ kind: 'sqlite', path: path.join(tmp(), 'state.db') });
    const now = 100 * DAY;
    const change = (rel_path: string) => ({
      source: 'google_drive',
      rel_path,
      op: 'upsert' as const,
    });
    await state.queue.enqueue(['old', 'recent', 'failed', 'pending'].map(change), ['aws_s3'], 1);
    const [old, recent, failed] = await state.queue.claim('aws_s3', 1, 3);
    await state.queue.complete(old!.id, now - 40 * DAY);
    await state.queue.complete(recent!.id, now - 2 * DAY);
    await state.queue.retry(failed!.id, 'boom', now + DAY, true, now - 40 * DAY);
    await state.events.append([
      { time: now - 40 * DAY, level: 'info', source: 't', message: 'old', data: null },
      { time: now - DAY, level: 'info', source: 't', message: 'new', data: null },
    ]);

    expect(await housekeep(state, 30 * DAY, now)).toEqual({ events: 1, queueItems: 1 });

    const left = await state.queue.list({ destination: 'aws_s3', limit: 10 });
    expect(left.map((i) => `${i.rel_path}:${i.state}`).sort()).toEqual([
      'failed:failed',
      'pending:pending',
      'recent:done',
    ]);
    expect((await state.events.list({ limit: 10 })).map((e) => e.message)).toEqual(['new']);
    await state.close();
  });
});
