// The watcher's changes into the state and the queue: only what changed is hashed, a rename
// stays a rename, and whatever stands at a move's target now is what gets pushed.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ingest } from '../../src/mirror/ingest.js';
import { openState, type NewChange } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-ingest-');

function setup() {
  const dir = tmp();
  const root = path.join(dir, 'google-drive');
  mkdirSync(root);
  const state = openState({ kind: 'sqlite', path: path.join(dir, 'state.db') });
  const queued: NewChange[] = [];
  const ctx = {
    source: 'google_drive',
    root,
    state,
    exclude: () => false,
    submit: async (c: NewChange[]) => void queued.push(...c),
  };
  const run = async (...changes: Parameters<typeof ingest>[1]) => {
    queued.length = 0;
    await ingest(ctx, changes);
    return queued.map((c) => `${c.op}:${c.from_path ? `${c.from_path}->` : ''}${c.rel_path}`);
  };
  return { root, state, run };
}

describe('ingest', () => {
  it('queues a changed file once, and nothing for a file that did not change', async () => {
    const { root, run } = setup();
    writeFileSync(path.join(root, 'a.txt'), 'one');
    expect(await run({ kind: 'upsert', path: 'a.txt' })).toEqual(['upsert:a.txt']);
    expect(await run({ kind: 'upsert', path: 'a.txt' })).toEqual([]);
  });

  it('keeps a rename a rename, and pushes what stands at the new place if it changed since', async () => {
    const { root, run, state } = setup();
    writeFileSync(path.join(root, 'a.txt'), 'one');
    await run({ kind: 'upsert', path: 'a.txt' });
    renameSync(path.join(root, 'a.txt'), path.join(root, 'b.txt'));
    expect(await run({ kind: 'move', from: 'a.txt', to: 'b.txt', isDir: false })).toEqual([
      'move:a.txt->b.txt',
    ]);
    writeFileSync(path.join(root, 'c.txt'), 'three');
    await run({ kind: 'upsert', path: 'c.txt' });
    renameSync(path.join(root, 'c.txt'), path.join(root, 'd.txt'));
    writeFileSync(path.join(root, 'd.txt'), 'three, written again after the move');
    expect(await run({ kind: 'move', from: 'c.txt', to: 'd.txt', isDir: false })).toEqual([
      'move:c.txt->d.txt',
      'upsert:d.txt',
    ]);
    expect(await state.files.get('google_drive', 'd.txt')).toMatchObject({ size: 35 });
  });

  it('reconciles a moved folder: one move, then whatever differs below it', async () => {
    const { root, run } = setup();
    mkdirSync(path.join(root, 'x'));
    writeFileSync(path.join(root, 'x', '1.txt'), '1');
    writeFileSync(path.join(root, 'x', '2.txt'), '2');
    await run({ kind: 'upsert', path: 'x/1.txt' }, { kind: 'upsert', path: 'x/2.txt' });
    renameSync(path.join(root, 'x'), path.join(root, 'y'));
    writeFileSync(path.join(root, 'y', '3.txt'), 'new inside');
    rmSync(path.join(root, 'y', '2.txt'));
    expect(await run({ kind: 'move', from: 'x', to: 'y', isDir: true })).toEqual([
      'move:x->y',
      'delete:y/2.txt',
      'upsert:y/3.txt',
    ]);
  });

  it('deletes every file the state knew below a deleted folder', async () => {
    const { root, run } = setup();
    mkdirSync(path.join(root, 'old'));
    writeFileSync(path.join(root, 'old', 'a'), 'a');
    writeFileSync(path.join(root, 'old', 'b'), 'b');
    await run({ kind: 'upsert', path: 'old/a' }, { kind: 'upsert', path: 'old/b' });
    rmSync(path.join(root, 'old'), { recursive: true });
    expect((await run({ kind: 'delete', path: 'old', isDir: true })).sort()).toEqual([
      'delete:old/a',
      'delete:old/b',
    ]);
  });
});
