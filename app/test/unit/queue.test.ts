// The durable push queue and the state the push half keeps: what a change becomes, in which
// order it is handed out, how failures wait, how held deletions wait for the owner, and how
// moves of files and folders are followed in the mirror's and the destinations' records.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openState, type FileRecord, type State } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-queue-');
const open = (): State => openState({ kind: 'sqlite', path: path.join(tmp(), 'state.db') });
const DESTS = ['aws_s3', 'eu_provider'];
const drive = (
  rel_path: string,
  op: 'upsert' | 'delete' | 'move' = 'upsert',
  from_path?: string,
) => ({
  source: 'google_drive',
  rel_path,
  op,
  ...(from_path ? { from_path } : {}),
});
const ops = async (state: State, destination = 'aws_s3') =>
  (await state.queue.list({ destination, limit: 100 })).map(
    (i) => `${i.op}:${i.from_path ? `${i.from_path}->` : ''}${i.rel_path}:${i.state}`,
  );

describe('queue.enqueue', () => {
  it('adds each change for each destination', async () => {
    const state = open();
    expect(await state.queue.enqueue([drive('a'), drive('b')], DESTS, 1)).toBe(4);
    expect(await state.queue.counts('aws_s3')).toEqual({
      pending: 2,
      running: 0,
      failed: 0,
      held: 0,
    });
    expect(await state.queue.counts()).toMatchObject({ pending: 4 });
  });

  it('keeps only the last state of a path that has not started yet', async () => {
    const state = open();
    await state.queue.enqueue(
      [drive('a'), drive('a'), drive('a', 'delete'), drive('a')],
      ['aws_s3'],
      1,
    );
    expect(await ops(state)).toEqual(['upsert:a:pending']);
    await state.queue.enqueue([drive('a', 'delete')], ['aws_s3'], 2);
    expect(await ops(state)).toEqual(['delete:a:pending']);
  });

  it('never merges across a move of the same path, so order is kept', async () => {
    const state = open();
    await state.queue.enqueue([drive('a'), drive('b', 'move', 'a'), drive('a')], ['aws_s3'], 1);
    expect(await ops(state)).toEqual(['upsert:a:pending', 'move:a->b:pending', 'upsert:a:pending']);
  });

  it('does not touch an item that is already running', async () => {
    const state = open();
    await state.queue.enqueue([drive('a')], ['aws_s3'], 1);
    await state.queue.claim('aws_s3', 2, 10);
    await state.queue.enqueue([drive('a')], ['aws_s3'], 3);
    expect(await ops(state)).toEqual(['upsert:a:running', 'upsert:a:pending']);
  });
});

describe('queue.claim, complete, retry', () => {
  it('hands out due items of one destination, oldest first, up to the limit', async () => {
    const state = open();
    await state.queue.enqueue([drive('a'), drive('b'), drive('c')], DESTS, 1);
    const batch = await state.queue.claim('aws_s3', 10, 2);
    expect(batch.map((i) => i.rel_path)).toEqual(['a', 'b']);
    expect(batch.every((i) => i.state === 'running' && i.destination === 'aws_s3')).toBe(true);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ pending: 1, running: 2 });
    expect(await state.queue.counts('eu_provider')).toMatchObject({ pending: 3, running: 0 });
    await state.queue.complete(batch[0]!.id, 11);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ pending: 1, running: 1 });
  });

  it('makes a failed item wait for its next attempt, and keeps failed ones coming back', async () => {
    const state = open();
    await state.queue.enqueue([drive('a')], ['aws_s3'], 1);
    const [item] = await state.queue.claim('aws_s3', 1, 1);
    await state.queue.retry(item!.id, 'connection refused', 1000, false, 2);
    expect(await state.queue.claim('aws_s3', 999, 1)).toEqual([]);
    const [again] = await state.queue.claim('aws_s3', 1000, 1);
    expect(again).toMatchObject({ attempts: 1, last_error: 'connection refused' });
    await state.queue.retry(again!.id, 'still refused', 5000, true, 1001);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ failed: 1, pending: 0 });
    expect((await state.queue.claim('aws_s3', 5000, 1))[0]).toMatchObject({ attempts: 2 });
  });

  it('puts items a dead process left running back in the queue', async () => {
    const state = open();
    await state.queue.enqueue([drive('a'), drive('b')], ['aws_s3'], 1);
    await state.queue.claim('aws_s3', 1, 10);
    expect(await state.queue.requeueRunning(2)).toBe(2);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ pending: 2, running: 0 });
  });

  it('prunes finished items older than a time', async () => {
    const state = open();
    await state.queue.enqueue([drive('a'), drive('b')], ['aws_s3'], 1);
    const [a] = await state.queue.claim('aws_s3', 1, 1);
    await state.queue.complete(a!.id, 5);
    expect(await state.queue.pruneDone(4)).toBe(0);
    expect(await state.queue.pruneDone(6)).toBe(1);
    expect(await ops(state)).toEqual(['upsert:b:pending']);
  });

  it('counts the items a destination finished in an interval, and leaves them out of the counts', async () => {
    const state = open();
    await state.queue.enqueue([drive('a'), drive('b'), drive('c')], DESTS, 1);
    const [a, b] = await state.queue.claim('aws_s3', 1, 2);
    await state.queue.complete(a!.id, 10);
    await state.queue.complete(b!.id, 20);
    const [other] = await state.queue.claim('eu_provider', 1, 1);
    await state.queue.complete(other!.id, 15);
    expect(await state.queue.countDone('aws_s3', 0, 100)).toBe(2);
    expect(await state.queue.countDone('aws_s3', 10, 20)).toBe(1);
    expect(await state.queue.countDone('aws_s3', 11, 20)).toBe(0);
    expect(await state.queue.countDone('eu_provider', 0, 100)).toBe(1);
    expect(await state.queue.counts('aws_s3')).toEqual({
      pending: 1,
      running: 0,
      failed: 0,
      held: 0,
    });
  });
});

describe('held deletions', () => {
  it('wait for the owner: released they run, discarded they vanish', async () => {
    const state = open();
    await state.queue.enqueue([drive('a', 'delete'), drive('b', 'delete')], ['aws_s3'], 1, {
      held: true,
    });
    expect(await state.queue.counts('aws_s3')).toMatchObject({ held: 2, pending: 0 });
    expect(await state.queue.claim('aws_s3', 10, 10)).toEqual([]);
    const [a] = await state.queue.list({ state: 'held', limit: 1 });
    expect(await state.queue.release([a!.id], 2)).toBe(1);
    expect((await state.queue.claim('aws_s3', 10, 10)).map((i) => i.rel_path)).toEqual(['a']);
    expect(await state.queue.discardHeld('all')).toBe(1);
    expect(await state.queue.counts('aws_s3')).toMatchObject({ held: 0 });
  });
});

const file = (
  rel_path: string,
  size = 1,
  sha256: string | null = `sha-${rel_path}`,
): Omit<FileRecord, 'id'> => ({
  source: 'google_drive',
  rel_path,
  size,
  mtime_ms: 1,
  inode: null,
  sha256,
  md5: null,
  state: 'present',
  updated_at: 1,
});

describe('files.move and present', () => {
  it('renames a file, replacing what the state knew at the new path', async () => {
    const state = open();
    await state.files.upsert(file('a.txt'));
    await state.files.upsert({ ...file('b.txt'), state: 'deleted' });
    expect(await state.files.move('google_drive', 'a.txt', 'b.txt', false, 2)).toBe(1);
    expect(await state.files.get('google_drive', 'a.txt')).toBeUndefined();
    expect(await state.files.get('google_drive', 'b.txt')).toMatchObject({
      sha256: 'sha-a.txt',
      state: 'present',
    });
  });

  it('renames a folder and everything below it, and nothing that only shares a prefix', async () => {
    const state = open();
    for (const p of [
      'Photos/1.jpg',
      'Photos/2024/2.jpg',
      'Photos 2/3.jpg',
      'Photos_x/4.jpg',
      '50%/5.txt',
    ])
      await state.files.upsert(file(p));
    expect(await state.files.move('google_drive', 'Photos', 'Archive/Photos', true, 2)).toBe(2);
    expect(await state.files.move('google_drive', '50%', 'fifty', true, 2)).toBe(1);
    const paths: string[] = [];
    for await (const f of state.files.present('google_drive')) paths.push(f.rel_path);
    expect(paths.sort()).toEqual([
      'Archive/Photos/1.jpg',
      'Archive/Photos/2024/2.jpg',
      'Photos 2/3.jpg',
      'Photos_x/4.jpg',
      'fifty/5.txt',
    ]);
  });

  it('streams every present file, in pages, skipping deleted ones', async () => {
    const state = open();
    for (let i = 0; i < 2500; i++) await state.files.upsert(file(`f${i}`));
    await state.files.markDeleted('google_drive', 'f7', 2);
    let n = 0;
    for await (const f of state.files.present('google_drive')) {
      expect(f.rel_path).not.toBe('f7');
      n++;
    }
    expect(n).toBe(2499);
  });
});

describe('destination files', () => {
  it('finds where a destination holds the same content, follows moves, and forgets trashed files', async () => {
    const state = open();
    await state.files.upsert(file('Docs/a.pdf', 10, 'same'));
    await state.files.upsert(file('Docs/copy of a.pdf', 10, 'same'));
    await state.destinationFiles.markVerified('aws_s3', 'google_drive', 'Docs/a.pdf', 10, 5);
    expect(await state.destinationFiles.holderOf('aws_s3', 'same')).toEqual({
      source: 'google_drive',
      remote_path: 'Docs/a.pdf',
    });
    expect(await state.destinationFiles.holderOf('eu_provider', 'same')).toBeUndefined();

    await state.files.move('google_drive', 'Docs', 'Old Docs', true, 6);
    await state.destinationFiles.moved('aws_s3', 'google_drive', 'Docs', 'Old Docs', true);
    expect(
      await state.destinationFiles.get('aws_s3', 'google_drive', 'Old Docs/a.pdf'),
    ).toMatchObject({ remote_path: 'Old Docs/a.pdf', sha256: 'same', state: 'verified' });

    await state.destinationFiles.forget('aws_s3', 'google_drive', 'Old Docs/a.pdf');
    expect(
      await state.destinationFiles.get('aws_s3', 'google_drive', 'Old Docs/a.pdf'),
    ).toBeUndefined();
    expect(await state.destinationFiles.holderOf('aws_s3', 'same')).toBeUndefined();
  });
});
