// Reconciliation against a real folder and a real state: what changed while nobody watched is
// found, only changed files are hashed, and a file that moved is a move, not a delete + upload.
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hashFile, reconcile } from '../../src/mirror/reconcile.js';
import { openState, type NewChange } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-reconcile-');

function setup() {
  const dir = tmp();
  const root = path.join(dir, 'google-drive');
  mkdirSync(root, { recursive: true });
  const state = openState({ kind: 'sqlite', path: path.join(dir, 'state.db') });
  const put = (rel: string, content: string | Buffer) => {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), content);
  };
  const run = async (extra: { subtree?: string } = {}) => {
    const changes: NewChange[] = [];
    const warnings: string[] = [];
    const r = await reconcile({
      source: 'google_drive',
      root,
      state,
      exclude: (p) => p.endsWith('.tmp') || p === '.backupd',
      onChanges: async (c) => void changes.push(...c),
      onWarning: (m) => void warnings.push(m),
      ...extra,
    });
    return {
      r,
      changes: changes.map((c) => `${c.op}:${c.from_path ? `${c.from_path}->` : ''}${c.rel_path}`),
      warnings,
    };
  };
  return { root, state, put, run };
}

describe('reconcile', () => {
  it('finds every file on a first scan, hashing each once, and nothing the second time', async () => {
    const { put, run, state } = setup();
    put('me/My Drive/a.txt', 'aaa');
    put('me/My Drive/deep/er/b.txt', 'bbb');
    put('me/My Drive/skip.tmp', 'x');
    put('.backupd/own.db', 'x');
    const first = await run();
    expect(first.changes.sort()).toEqual([
      'upsert:me/My Drive/a.txt',
      'upsert:me/My Drive/deep/er/b.txt',
    ]);
    expect(first.r).toMatchObject({ scanned: 2, hashed: 2, added: 2 });
    const rec = await state.files.get('google_drive', 'me/My Drive/a.txt');
    expect(rec).toMatchObject({
      size: 3,
      sha256: createHash('sha256').update('aaa').digest('hex'),
      md5: createHash('md5').update('aaa').digest('hex'),
    });
    const second = await run();
    expect(second.changes).toEqual([]);
    expect(second.r).toMatchObject({ scanned: 2, hashed: 0 });
  });

  it('hashes only what size or time says changed, and ignores a touch that changed nothing', async () => {
    const { root, put, run } = setup();
    put('a.txt', 'one');
    put('b.txt', 'two');
    await run();
    put('a.txt', 'ONE, longer');
    utimesSync(path.join(root, 'b.txt'), new Date(), new Date(Date.now() + 5000));
    const r = await run();
    expect(r.changes).toEqual(['upsert:a.txt']);
    expect(r.r).toMatchObject({ hashed: 2, changed: 1 });
  });

  it('turns a rename while the daemon was down into a move, and a vanished file into a delete', async () => {
    const { root, put, run, state } = setup();
    put('Taxes/return.pdf', Buffer.alloc(100_000, 7));
    put('gone.txt', 'bye');
    await run();
    mkdirSync(path.join(root, 'Archive'));
    renameSync(path.join(root, 'Taxes/return.pdf'), path.join(root, 'Archive/return-2025.pdf'));
    rmSync(path.join(root, 'gone.txt'));
    const r = await run();
    expect(r.changes.sort()).toEqual([
      'delete:gone.txt',
      'move:Taxes/return.pdf->Archive/return-2025.pdf',
    ]);
    expect(r.r).toMatchObject({ moved: 1, deleted: 1, hashed: 0 });
    expect(await state.files.get('google_drive', 'Archive/return-2025.pdf')).toMatchObject({
      size: 100_000,
    });
    expect(await state.files.get('google_drive', 'gone.txt')).toMatchObject({ state: 'deleted' });
  });

  it('pushes a deleted file again when it comes back, even with the same content', async () => {
    const { root, put, run } = setup();
    put('a.txt', 'same');
    put('b.txt', 'other');
    await run();
    rmSync(path.join(root, 'a.txt'));
    expect((await run()).changes).toEqual(['delete:a.txt']);
    put('a.txt', 'same');
    expect((await run()).changes).toEqual(['upsert:a.txt']);
  });

  it('looks only at a subtree when asked, and warns about links', async () => {
    const { root, put, run } = setup();
    put('x/1.txt', '1');
    put('y/2.txt', '2');
    await run();
    put('x/3.txt', '3');
    put('y/4.txt', '4');
    symlinkSync('/etc/passwd', path.join(root, 'x', 'link'));
    const r = await run({ subtree: 'x' });
    expect(r.changes).toEqual(['upsert:x/3.txt']);
    expect(r.warnings.join()).toContain('x/link');
  });

  it('hashes large files in one streamed pass', async () => {
    const { root, put } = setup();
    const data = Buffer.alloc(5 * 1024 * 1024 + 3, 1);
    put('big.bin', data);
    expect(await hashFile(path.join(root, 'big.bin'))).toEqual({
      sha256: createHash('sha256').update(data).digest('hex'),
      md5: createHash('md5').update(data).digest('hex'),
      size: data.length,
    });
  });

  it('hashes files side by side, each with its own read buffer', async () => {
    const { root, put } = setup();
    // Sizes around the 256 KiB read buffer: empty, smaller, exact, one byte over, several reads.
    const sizes = [0, 1, 1000, 256 * 1024, 256 * 1024 + 1, 700_000, 3 * 1024 * 1024];
    const files = sizes.map((n, i) => {
      const data = Buffer.alloc(n, i + 1);
      put(`f${i}.bin`, data);
      return { name: `f${i}.bin`, sha256: createHash('sha256').update(data).digest('hex') };
    });
    // Twice over, all at once: buffers returned by one file are reused by the next.
    for (let round = 0; round < 2; round++) {
      const got = await Promise.all(files.map((f) => hashFile(path.join(root, f.name))));
      expect(got.map((h) => h.sha256)).toEqual(files.map((f) => f.sha256));
      expect(got.map((h) => h.size)).toEqual(sizes);
    }
    // A stop of the daemon ends a hash in progress.
    const stop = new AbortController();
    stop.abort(new Error('stopping'));
    await expect(hashFile(path.join(root, 'f6.bin'), stop.signal)).rejects.toThrow('stopping');
  });
});
