// The mass-deletion guard: a normal trickle of deletions goes through, a sudden mass deletion
// is held until the owner confirms or discards it, and a restart does not reopen the gate.
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Intake, type HeldAlert } from '../../src/push/intake.js';
import { openState, type NewChange, type State } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-intake-');
const logger = pino({ level: 'silent' });

async function setup(files = 100) {
  const file = path.join(tmp(), 'state.db');
  const state = openState({ kind: 'sqlite', path: file });
  for (let i = 0; i < files; i++) {
    await state.files.upsert({
      source: 'google_drive',
      rel_path: `f${i}`,
      size: 1,
      mtime_ms: 1,
      inode: i,
      sha256: `s${i}`,
      md5: null,
      state: 'present',
      updated_at: 1,
    });
  }
  const alerts: HeldAlert[] = [];
  let now = 1_000_000;
  const make = (s: State) =>
    new Intake({
      state: s,
      destinations: () => ['aws_s3', 'eu_provider'],
      logger,
      onHeld: (a) => alerts.push(a),
      now: () => now,
    }).init();
  return { state, file, alerts, make, tick: (ms: number) => (now += ms) };
}
const del = (n: number, from = 0): NewChange[] =>
  Array.from({ length: n }, (_, i) => ({
    source: 'google_drive',
    rel_path: `f${from + i}`,
    op: 'delete' as const,
  }));

describe('the mass-deletion guard', () => {
  it('lets a few deletions through', async () => {
    const { state, make, alerts } = await setup();
    const intake = await make(state);
    await intake.submit(del(10));
    expect(await state.queue.counts('aws_s3')).toMatchObject({ pending: 10, held: 0 });
    expect(alerts).toEqual([]);
  });

  it('holds deletions of 30% of the files, alerts once, and keeps other changes flowing', async () => {
    const { state, make, alerts } = await setup();
    const intake = await make(state);
    await intake.submit(del(15));
    await intake.submit([
      ...del(15, 15),
      { source: 'google_drive', rel_path: 'new.txt', op: 'upsert' },
    ]);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.message).toContain('held');
    expect((await state.queue.counts('aws_s3')).held).toBeGreaterThan(0);
    expect(
      (await state.queue.list({ destination: 'aws_s3', state: 'pending', limit: 100 })).map(
        (i) => i.rel_path,
      ),
    ).toContain('new.txt');
    await intake.submit(del(1, 40));
    expect(alerts).toHaveLength(1);
  });

  it('releases the held deletions when the owner confirms', async () => {
    const { state, make } = await setup();
    const intake = await make(state);
    await intake.submit(del(30));
    const held = (await state.queue.counts('aws_s3')).held;
    expect(held).toBeGreaterThan(0);
    expect(await intake.confirm()).toBe(held * 2);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ held: 0, pending: 30 });
  });

  it('drops them when the owner discards, and stays closed across a restart', async () => {
    const { state, make, tick } = await setup();
    const intake = await make(state);
    await intake.submit(del(30));
    const again = await make(state);
    tick(60 * 60_000);
    await again.submit(del(1, 50));
    expect((await state.queue.counts('aws_s3')).pending).toBeLessThan(30);
    expect(
      await state.queue.list({ destination: 'aws_s3', state: 'held', limit: 100 }),
    ).toContainEqual(expect.objectContaining({ rel_path: 'f50' }));
    await again.discard();
    expect(await state.queue.counts('aws_s3')).toMatchObject({ held: 0 });
  });

  it('forgets deletions older than the window', async () => {
    const { state, make, tick, alerts } = await setup();
    const intake = await make(state);
    // 15 at a time is under the guard; two such batches within ten minutes would not be.
    for (let i = 0; i < 4; i++) {
      await intake.submit(del(15, i * 15));
      tick(11 * 60_000);
    }
    expect(alerts).toEqual([]);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ pending: 60, held: 0 });
    await intake.submit(del(15, 60));
    tick(60_000);
    await intake.submit(del(15, 75));
    expect(alerts).toHaveLength(1);
  });
});
