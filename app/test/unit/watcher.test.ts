// The mirror watcher on real kernel inotify, in a temporary folder: finished files only, new
// folders without gaps, renames as one move (folders too), moves out and in, deletions,
// exclusions, coalescing, and a consumer that ends with the right tree after a random storm of
// changes. Faults the kernel cannot be made to produce on demand (a queue overflow, the watch
// limit, a rename split across two reads) are injected through the `inotify` factory.
import {
  closeSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Inotify, IN_Q_OVERFLOW, type InotifyEvent } from '@backupd/inotify';
import {
  globExcluder,
  globToRegExp,
  watchTree,
  type Change,
  type InotifyFactory,
  type Watcher,
  type WatchOptions,
  type WatchWarning,
} from '../../src/mirror/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-watch-');
const DEBOUNCE = 50;

const watchers: Watcher[] = [];
afterEach(() => {
  for (const w of watchers.splice(0)) w.close();
});

interface Run {
  w: Watcher;
  root: string;
  batches: Change[][];
  changes: () => Change[];
  warnings: { message: string; detail: WatchWarning }[];
  p: (rel: string) => string;
}

function start(root: string, opts: Partial<WatchOptions> = {}): Run {
  const batches: Change[][] = [];
  const warnings: Run['warnings'] = [];
  const w = watchTree(root, {
    debounceMs: DEBOUNCE,
    onWarning: (message, detail) => warnings.push({ message, detail }),
    ...opts,
    onChanges: (c) => {
      batches.push(c);
      opts.onChanges?.(c);
    },
  });
  watchers.push(w);
  return {
    w,
    root,
    batches,
    changes: () => batches.flat(),
    warnings,
    p: (rel) => path.join(root, rel),
  };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until everything that happened so far has been delivered: writes a marker file, waits
 * for its change (events come in order and nothing is delivered out of order) and for an empty
 * queue, then removes the marker from the record.
 */
let markers = 0;
async function settle(run: Run): Promise<Change[]> {
  const name = `zz-marker-${++markers}`;
  writeFileSync(run.p(name), '');
  await until(
    () => run.changes().some((c) => c.kind === 'upsert' && c.path === name) && run.w.pending === 0,
    `marker ${name}`,
  );
  unlinkSync(run.p(name));
  await until(
    () => run.changes().some((c) => c.kind === 'delete' && c.path === name),
    'marker delete',
  );
  return run.changes().filter((c) => !('path' in c && c.path.startsWith('zz-marker-')));
}

const upsert = (p: string): Change => ({ kind: 'upsert', path: p });
const del = (p: string, isDir = false): Change => ({ kind: 'delete', path: p, isDir });
const move = (from: string, to: string, isDir = false): Change => ({
  kind: 'move',
  from,
  to,
  isDir,
});

/** Files (with content) below `dir`, relative, `/` separated; what a destination should hold. */
function localFiles(root: string, skip: (rel: string, isDir: boolean) => boolean) {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const d of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel === '' ? d.name : `${rel}/${d.name}`;
      if (skip(r, d.isDirectory())) continue;
      if (d.isDirectory()) walk(r);
      else if (d.isFile()) out.set(r, readFileSync(path.join(root, r), 'utf8'));
    }
  };
  walk('');
  return out;
}

/**
 * A destination as a consumer would keep it, following the contract of `Change`: starts as a
 * copy of the tree and applies every change in order as it is delivered, reading the mirror as
 * it is at that moment (as the push half will); after a move it reconciles the target.
 */
class ModelDestination {
  readonly files: Map<string, string>;
  constructor(
    private readonly root: string,
    private readonly skip: (rel: string, isDir: boolean) => boolean,
  ) {
    this.files = localFiles(root, skip);
  }

  apply(c: Change): void {
    switch (c.kind) {
      case 'upsert': {
        const content = this.read(c.path);
        if (content !== undefined) this.files.set(c.path, content); // else a later change says why
        break;
      }
      case 'delete':
        for (const k of this.atOrUnder(c.path, c.isDir)) this.files.delete(k);
        break;
      case 'move': {
        const held = this.atOrUnder(c.from, c.isDir).map((k) => [k, this.files.get(k)!] as const);
        for (const [k] of held) this.files.delete(k);
        for (const [k, v] of held) this.files.set(c.to + k.slice(c.from.length), v);
        this.reconcile(c.to, c.isDir); // then make `to` match the mirror
        break;
      }
      case 'rescan':
        this.reconcile(c.path, true);
        break;
    }
  }

  private atOrUnder(p: string, dir: boolean): string[] {
    return [...this.files.keys()].filter(
      (k) => k === p || (dir && (p === '' || k.startsWith(`${p}/`))),
    );
  }

  private reconcile(p: string, dir: boolean): void {
    for (const k of this.atOrUnder(p, dir)) this.files.delete(k);
    if (!dir) {
      const content = this.read(p);
      if (content !== undefined) this.files.set(p, content);
      return;
    }
    for (const [k, v] of localFiles(this.root, this.skip)) {
      if (k === p || p === '' || k.startsWith(`${p}/`)) this.files.set(k, v);
    }
  }

  private read(rel: string): string | undefined {
    try {
      if (!lstatSync(path.join(this.root, rel)).isFile()) return undefined;
      return readFileSync(path.join(this.root, rel), 'utf8');
    } catch {
      return undefined; // ENOENT, or ENOTDIR (a folder on the way is a file now)
    }
  }
}

/** Wraps the real addon to inject what the kernel cannot be made to do on demand. */
function faulty(
  o: {
    /** errno code to throw from addWatch for this path, if any */
    failAdd?: (p: string) => string | undefined;
    /** hand each event over in its own callback, a little later (reads split anywhere) */
    split?: boolean;
  } = {},
) {
  const ctl = {
    /** drop real events (they are "lost", as in an overflow) */
    drop: false,
    dropped: 0,
    inject: (_events: InotifyEvent[]) => {},
  };
  const factory: InotifyFactory = (onEvents) => {
    let closed = false;
    let chain = Promise.resolve();
    const real = new Inotify((events) => {
      if (ctl.drop) {
        ctl.dropped += events.length;
        return;
      }
      if (!o.split) return onEvents(events);
      for (const ev of events) {
        chain = chain.then(async () => {
          await sleep(3);
          if (!closed) onEvents([ev]);
        });
      }
    });
    ctl.inject = (events) => onEvents(events);
    return {
      addWatch(p, mask) {
        const code = o.failAdd?.(p);
        if (code) throw Object.assign(new Error(`${code}: injected, inotify_add_watch`), { code });
        return real.addWatch(p, mask);
      },
      rmWatch: (wd) => real.rmWatch(wd),
      close: () => {
        closed = true;
        real.close();
      },
    };
  };
  return { factory, ctl };
}

describe('watchTree', () => {
  it('reports a file written in several chunks once, after it is closed', async () => {
    const run = start(tmp());
    const fd = openSync(run.p('big.bin'), 'w');
    for (let i = 0; i < 4; i++) {
      writeSync(fd, Buffer.alloc(64 * 1024, i));
      await sleep(DEBOUNCE * 2); // longer than the delay: a half-written file must not show
      expect(run.changes()).toEqual([]);
    }
    closeSync(fd);
    await until(() => run.changes().length > 0, 'the upsert');
    expect(await settle(run)).toEqual([upsert('big.bin')]);
  });

  it('reports every file of a folder tree created at once, even before its watches exist', async () => {
    const root = tmp();
    const model = new ModelDestination(root, () => false);
    const run = start(root, { onChanges: (cs) => cs.forEach((c) => model.apply(c)) });
    const expected: string[] = [];
    for (let t = 0; t < 20; t++) {
      const deep = `t${t}/a/b/c/d/e/f/g/h`;
      mkdirSync(run.p(deep), { recursive: true });
      let dir = '';
      for (const part of deep.split('/')) {
        dir = dir === '' ? part : `${dir}/${part}`;
        for (const f of ['1.txt', '2.txt']) {
          writeFileSync(run.p(`${dir}/${f}`), dir);
          expected.push(`${dir}/${f}`);
        }
      }
    }
    const changes = await settle(run);
    const upserts = changes.filter((c) => c.kind === 'upsert');
    expect(new Set(upserts.map((c) => c.path))).toEqual(new Set(expected));
    expect(upserts.length).toBe(expected.length); // coalesced: each once
    // Besides, only a delete of each new folder before its content is listed (nothing there)
    for (const c of changes.filter((c) => c.kind !== 'upsert')) {
      expect(c).toMatchObject({
        kind: 'delete',
        isDir: true,
        path: expect.stringMatching(/^t\d+/),
      });
    }
    expect(Object.fromEntries(model.files)).toEqual(
      Object.fromEntries(localFiles(root, () => false)),
    );
    expect(run.w.watches).toBe(1 + 20 * 9);
  });

  it('reports a rename as one move', async () => {
    const root = tmp();
    writeFileSync(path.join(root, 'a.txt'), 'a');
    mkdirSync(path.join(root, 'sub'));
    const run = start(root);
    renameSync(run.p('a.txt'), run.p('sub/b.txt'));
    expect(await settle(run)).toEqual([move('a.txt', 'sub/b.txt')]);
  });

  it('reports a renamed folder as one move and follows it with its watches', async () => {
    const root = tmp();
    mkdirSync(path.join(root, 'old/x/y'), { recursive: true });
    writeFileSync(path.join(root, 'old/x/y/f.txt'), 'f');
    writeFileSync(path.join(root, 'old/g.txt'), 'g');
    mkdirSync(path.join(root, 'parent'));
    const run = start(root);
    const watches = run.w.watches;
    renameSync(run.p('old'), run.p('parent/new'));
    expect(await settle(run)).toEqual([move('old', 'parent/new', true)]);
    expect(run.w.watches).toBe(watches); // re-keyed, not re-added

    run.batches.length = 0;
    writeFileSync(run.p('parent/new/x/y/f.txt'), 'changed');
    writeFileSync(run.p('parent/new/x/h.txt'), 'h');
    mkdirSync(run.p('parent/new/x/y/z'));
    writeFileSync(run.p('parent/new/x/y/z/i.txt'), 'i');
    expect(await settle(run)).toEqual([
      upsert('parent/new/x/y/f.txt'),
      upsert('parent/new/x/h.txt'),
      del('parent/new/x/y/z', true), // a new folder: see 'reports what is moved in'
      upsert('parent/new/x/y/z/i.txt'),
    ]);
  });

  it('pairs a rename whose two halves arrive in different reads', async () => {
    const root = tmp();
    mkdirSync(path.join(root, 'd1/inner'), { recursive: true });
    writeFileSync(path.join(root, 'f1'), '1');
    const { factory } = faulty({ split: true });
    const run = start(root, { inotify: factory });
    renameSync(run.p('f1'), run.p('f2'));
    renameSync(run.p('d1'), run.p('d2'));
    writeFileSync(run.p('d2/inner/new.txt'), 'n');
    expect(await settle(run)).toEqual([
      move('f1', 'f2'),
      move('d1', 'd2', true),
      upsert('d2/inner/new.txt'),
    ]);
  });

  it('reports a move out of the tree as a delete, and stops watching what left', async () => {
    const root = tmp();
    const outside = tmp();
    mkdirSync(path.join(root, 'dir/sub'), { recursive: true });
    writeFileSync(path.join(root, 'dir/sub/f'), 'f');
    writeFileSync(path.join(root, 'file'), 'x');
    const run = start(root);
    expect(run.w.watches).toBe(3);
    renameSync(run.p('dir'), path.join(outside, 'dir'));
    renameSync(run.p('file'), path.join(outside, 'file'));
    expect(await settle(run)).toEqual([del('dir', true), del('file')]);
    expect(run.w.watches).toBe(1);
    run.batches.length = 0;
    writeFileSync(path.join(outside, 'dir/sub/g'), 'not ours');
    expect(await settle(run)).toEqual([]);
  });

  it('reports what is moved in from outside, files inside new folders included', async () => {
    const root = tmp();
    const outside = tmp();
    mkdirSync(path.join(outside, 'album/2024/05'), { recursive: true });
    writeFileSync(path.join(outside, 'album/cover.jpg'), 'c');
    writeFileSync(path.join(outside, 'album/2024/05/p1.jpg'), 'p1');
    writeFileSync(path.join(outside, 'album/2024/05/p2.jpg'), 'p2');
    writeFileSync(path.join(outside, 'single.pdf'), 's');
    const run = start(root);
    renameSync(path.join(outside, 'album'), run.p('album'));
    renameSync(path.join(outside, 'single.pdf'), run.p('single.pdf'));
    const changes = await settle(run);
    // A folder that was not watched until now: first a delete of whatever the destination may
    // hold there (nothing, for a folder really new), then what is in it.
    expect(changes[0]).toEqual(del('album', true));
    expect(new Set(changes.slice(1))).toEqual(
      new Set([
        upsert('album/cover.jpg'),
        upsert('album/2024/05/p1.jpg'),
        upsert('album/2024/05/p2.jpg'),
        upsert('single.pdf'),
      ]),
    );
    expect(run.w.watches).toBe(4);
  });

  it('holds a file found in a moved-in folder while it is still being written', async () => {
    const root = tmp();
    const outside = tmp();
    mkdirSync(path.join(outside, 'import'));
    const fd = openSync(path.join(outside, 'import/video.mp4'), 'w');
    writeSync(fd, 'first chunk');
    const run = start(root, { debounceMs: 200 });
    renameSync(path.join(outside, 'import'), run.p('import'));
    // Listing the new folder finds video.mp4, open for writing, and no IN_CLOSE_WRITE yet.
    for (let i = 0; i < 40; i++) {
      writeSync(fd, ' more');
      await sleep(20);
    }
    expect(run.changes().filter((c) => c.kind === 'upsert')).toEqual([]);
    closeSync(fd);
    await until(() => run.changes().some((c) => c.kind === 'upsert'), 'the upsert');
    expect(await settle(run)).toEqual([del('import', true), upsert('import/video.mp4')]);
    expect(readFileSync(run.p('import/video.mp4'), 'utf8')).toBe(
      `first chunk${' more'.repeat(40)}`,
    );
  });

  it('reports deletions, a removed folder tree as one delete', async () => {
    const root = tmp();
    mkdirSync(path.join(root, 'tree/a/b'), { recursive: true });
    for (const f of ['tree/1', 'tree/a/2', 'tree/a/b/3', 'lone']) {
      writeFileSync(path.join(root, f), f);
    }
    const run = start(root);
    unlinkSync(run.p('lone'));
    rmSync(run.p('tree'), { recursive: true });
    expect(await settle(run)).toEqual([del('lone'), del('tree', true)]);
    expect(run.w.watches).toBe(1);
  });

  it('reports new hard links and symbolic links, which are never written', async () => {
    const root = tmp();
    writeFileSync(path.join(root, 'orig'), 'content');
    const run = start(root);
    linkSync(run.p('orig'), run.p('hard'));
    symlinkSync('orig', run.p('soft'));
    expect(new Set(await settle(run))).toEqual(new Set([upsert('hard'), upsert('soft')]));
  });

  it('ignores excluded paths, partial downloads and its own folder', async () => {
    const root = tmp();
    mkdirSync(path.join(root, '.backupd'));
    mkdirSync(path.join(root, 'sub'));
    const exclude = globExcluder(['*.tmp', '.DS_Store', 'cache/'], ['skip/this']);
    const run = start(root, { exclude });
    for (const d of ['cache/deep', 'sub/cache', 'skip/this/x', 'skip/other']) {
      mkdirSync(run.p(d), { recursive: true });
    }
    const files = [
      'a.tmp',
      'sub/b.tmp',
      '.DS_Store',
      'sub/.DS_Store',
      'photo.jpg.backupd-partial',
      '.backupd/state.json',
      'cache/deep/c',
      'sub/cache/d',
      'skip/this/x/e',
      'skip/other/ok',
      'keep.txt',
      'sub/cache.txt',
    ];
    for (const f of files) writeFileSync(run.p(f), f);
    // The pull half's pattern: download under a temporary name, then rename into place.
    renameSync(run.p('photo.jpg.backupd-partial'), run.p('photo.jpg'));
    renameSync(run.p('keep.txt'), run.p('keep.tmp')); // renamed to an excluded name: gone
    const changes = await settle(run);
    expect(new Set(changes.filter((c) => c.kind !== 'delete' || !c.isDir))).toEqual(
      new Set([
        upsert('skip/other/ok'),
        upsert('sub/cache.txt'),
        upsert('photo.jpg'),
        del('keep.txt'),
      ]),
    );
    // and the deletes of new folders that come before their content: only reported ones
    for (const c of changes.filter((c) => c.kind === 'delete' && c.isDir)) {
      expect(['skip', 'skip/other']).toContain((c as { path: string }).path);
    }
    // root, sub, skip, skip/other: no watch on excluded folders or on .backupd
    expect(run.w.watches).toBe(4);
  });

  describe('coalescing (all within one delay)', () => {
    const slow = { debounceMs: 400 };

    it('several writes of one file: one upsert', async () => {
      const run = start(tmp(), slow);
      for (let i = 0; i < 5; i++) writeFileSync(run.p('f'), `v${i}`);
      expect(await settle(run)).toEqual([upsert('f')]);
    });

    it('created then deleted: a harmless delete', async () => {
      const run = start(tmp(), slow);
      writeFileSync(run.p('f'), 'x');
      unlinkSync(run.p('f'));
      expect(await settle(run)).toEqual([del('f')]);
    });

    it('moved then modified: the move, then the upsert', async () => {
      const root = tmp();
      writeFileSync(path.join(root, 'a'), 'old');
      const run = start(root, slow);
      renameSync(run.p('a'), run.p('b'));
      writeFileSync(run.p('b'), 'new');
      expect(await settle(run)).toEqual([move('a', 'b'), upsert('b')]);
    });

    it('written then moved: the upsert follows the file', async () => {
      const root = tmp();
      writeFileSync(path.join(root, 'a'), 'old');
      mkdirSync(path.join(root, 'd'));
      const run = start(root, slow);
      writeFileSync(run.p('a'), 'new');
      writeFileSync(run.p('d/inside'), 'i');
      renameSync(run.p('a'), run.p('b'));
      renameSync(run.p('d'), run.p('e'));
      expect(await settle(run)).toEqual([
        move('a', 'b'),
        upsert('b'),
        move('d', 'e', true),
        upsert('e/inside'),
      ]);
    });

    it('a swap through a third name stays three moves', async () => {
      const root = tmp();
      writeFileSync(path.join(root, 'p'), 'P');
      writeFileSync(path.join(root, 'q'), 'Q');
      const run = start(root, slow);
      renameSync(run.p('p'), run.p('t'));
      renameSync(run.p('q'), run.p('p'));
      renameSync(run.p('t'), run.p('q'));
      expect(await settle(run)).toEqual([move('p', 't'), move('q', 'p'), move('t', 'q')]);
    });

    it('a folder deleted and made again: the delete before the new content', async () => {
      const root = tmp();
      mkdirSync(path.join(root, 'd'));
      writeFileSync(path.join(root, 'd/f'), 'old');
      const run = start(root, slow);
      rmSync(run.p('d'), { recursive: true });
      mkdirSync(run.p('d'));
      writeFileSync(run.p('d/f'), 'new');
      expect(await settle(run)).toEqual([del('d', true), upsert('d/f')]);
    });

    it('holds each path the delay after its last event, not its first', async () => {
      const run = start(tmp(), { debounceMs: 150 });
      const t0 = Date.now();
      for (let i = 0; i < 6; i++) {
        writeFileSync(run.p('busy'), `v${i}`);
        await sleep(50);
      }
      await until(() => run.changes().length > 0, 'the upsert');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250 + 140); // last write + delay
      expect(run.changes()).toEqual([upsert('busy')]);
    });
  });

  // seed, and how many changes between two pauses (fewer: events handled closer to the present)
  it.each([
    [20240501, 25],
    [7, 10],
    [31337, 5],
  ])(
    'leaves a consumer with the right tree after a random storm of changes (seed %i, pause every %i)',
    async (seed0, pauseEvery) => {
      const root = tmp();
      const outside = tmp();
      const skip = globExcluder(['*.tmp'], []);
      const skipAll = (rel: string, isDir: boolean) =>
        skip(rel, isDir) || rel.endsWith('.backupd-partial') || rel.startsWith('zz-marker-');
      let seed = seed0;
      const rand = () => {
        // mulberry32
        seed = (seed + 0x6d2b79f5) | 0;
        let t = seed;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(rand() * xs.length)];
      let n = 0;
      const fresh = () => `n${n++}`;
      const list = (base: string) => {
        const dirs: string[] = [''];
        const files: string[] = [];
        const walk = (rel: string) => {
          for (const d of readdirSync(path.join(base, rel), { withFileTypes: true })) {
            const r = rel === '' ? d.name : `${rel}/${d.name}`;
            if (d.isDirectory()) {
              dirs.push(r);
              walk(r);
            } else files.push(r);
          }
        };
        walk('');
        return { dirs, files };
      };
      const j = (...parts: string[]) => parts.filter(Boolean).join('/');

      for (let i = 0; i < 6; i++) mkdirSync(path.join(root, `d${i}/e${i}`), { recursive: true });
      for (let i = 0; i < 20; i++) writeFileSync(path.join(root, `d${i % 6}/f${i}`), `init ${i}`);

      const model = new ModelDestination(root, skipAll);
      const run = start(root, {
        exclude: skip,
        onChanges: (cs) => cs.forEach((c) => model.apply(c)),
      });
      const p = run.p;

      for (let step = 0; step < 400; step++) {
        const { dirs, files } = list(root);
        const subdirs = dirs.filter((d) => d !== '');
        const r = rand();
        const dir = pick(dirs)!;
        const file = pick(files);
        const sub = pick(subdirs);
        if (r < 0.18) writeFileSync(p(j(dir, fresh())), `new ${step}`);
        else if (r < 0.3 && file) writeFileSync(p(file), `overwrite ${step}`);
        else if (r < 0.36 && file) {
          const fd = openSync(p(file), 'a');
          writeSync(fd, ` +${step}`);
          writeSync(fd, ` +${step}`);
          closeSync(fd);
        } else if (r < 0.46 && file) {
          // rename a file, sometimes over another one
          const target = rand() < 0.3 && files.length > 1 ? pick(files)! : j(dir, fresh());
          if (target !== file) renameSync(p(file), p(target));
        } else if (r < 0.52 && file) unlinkSync(p(file));
        else if (r < 0.6) {
          const d = j(dir, fresh(), fresh());
          mkdirSync(p(d), { recursive: true });
          writeFileSync(p(j(d, 'a')), `a ${step}`);
          writeFileSync(p(j(path.posix.dirname(d), 'b')), `b ${step}`);
        } else if (r < 0.68 && sub) {
          // rename a folder somewhere not inside itself
          const target = j(
            pick(dirs.filter((d) => d !== sub && !d.startsWith(`${sub}/`)))!,
            fresh(),
          );
          renameSync(p(sub), p(target));
        } else if (r < 0.72 && sub) rmSync(p(sub), { recursive: true });
        else if (r < 0.76 && sub) renameSync(p(sub), path.join(outside, fresh()));
        else if (r < 0.8 && file) renameSync(p(file), path.join(outside, fresh()));
        else if (r < 0.86) {
          const d = fresh();
          mkdirSync(path.join(outside, d, 'inner'), { recursive: true });
          writeFileSync(path.join(outside, d, 'x'), `x ${step}`);
          writeFileSync(path.join(outside, d, 'inner/y'), `y ${step}`);
          renameSync(path.join(outside, d), p(j(dir, d)));
        } else if (r < 0.9 && files.length > 1) {
          // swap two files through a temporary name
          const a = pick(files)!;
          const b = pick(files)!;
          if (a !== b) {
            renameSync(p(a), p(`${a}.swap`));
            renameSync(p(b), p(a));
            renameSync(p(`${a}.swap`), p(b));
          }
        } else if (r < 0.94) {
          // the pull half: a partial download renamed into place
          const name = j(dir, fresh());
          writeFileSync(p(`${name}.backupd-partial`), `pulled ${step}`);
          renameSync(p(`${name}.backupd-partial`), p(rand() < 0.5 ? name : (file ?? name)));
        } else if (r < 0.97) writeFileSync(p(j(dir, `${fresh()}.tmp`)), 'ignored');
        else {
          // a folder replaced by a file of the same name
          if (sub) {
            rmSync(p(sub), { recursive: true });
            writeFileSync(p(sub), `was a folder ${step}`);
          }
        }
        if (step % pauseEvery === 0) await sleep(Math.floor(rand() * 2 * DEBOUNCE));
      }

      await settle(run);
      expect(run.warnings).toEqual([]);
      expect(Object.fromEntries([...model.files].sort())).toEqual(
        Object.fromEntries([...localFiles(root, skipAll)].sort()),
      );
      // every watched folder is a folder of the tree, and every folder is watched
      expect(run.w.watches).toBe(list(root).dirs.length);
    },
    30_000,
  );

  it('answers a queue overflow with a warning and a rescan of everything, and repairs its watches', async () => {
    const root = tmp();
    mkdirSync(path.join(root, 'before/inner'), { recursive: true });
    const { factory, ctl } = faulty();
    const run = start(root, { inotify: factory });
    ctl.drop = true; // what happens now is lost, as when the kernel's queue overflows
    renameSync(run.p('before'), run.p('after'));
    mkdirSync(run.p('created/while/lost'), { recursive: true });
    // moved from, moved to, created: read and dropped
    await until(() => ctl.dropped >= 3, 'the lost events');
    ctl.drop = false;
    ctl.inject([{ wd: -1, mask: IN_Q_OVERFLOW, cookie: 0, name: '' }]);
    expect(run.warnings.map((w) => w.detail.code)).toEqual(['overflow']);
    expect(run.warnings[0]!.message).toContain('checked');
    writeFileSync(run.p('after/inner/f'), 'f');
    writeFileSync(run.p('created/while/lost/g'), 'g');
    expect(await settle(run)).toEqual([
      { kind: 'rescan', path: '', reason: 'overflow' },
      upsert('after/inner/f'),
      upsert('created/while/lost/g'),
    ]);
    expect(run.w.watches).toBe(1 + 2 + 3);
  });

  it('answers the watch limit with a warning naming the fix and a rescan of what is not watched', async () => {
    const root = tmp();
    mkdirSync(path.join(root, 'ok/full/below'), { recursive: true });
    const { factory } = faulty({
      failAdd: (p) => (path.basename(p) === 'full' ? 'ENOSPC' : undefined),
    });
    const run = start(root, { inotify: factory });
    expect(run.warnings).toHaveLength(1);
    const { message, detail } = run.warnings[0]!;
    expect(detail).toMatchObject({ code: 'watch-limit', path: 'ok/full', error: 'ENOSPC' });
    expect(message).toContain('/proc/sys/fs/inotify/max_user_watches');
    expect(detail.fix).toMatch(/sysctl fs\.inotify\.max_user_watches=\d+/);
    mkdirSync(run.p('new/full'), { recursive: true }); // at run time too
    expect(await settle(run)).toEqual([
      { kind: 'rescan', path: 'ok/full', reason: 'watch-limit' },
      del('new', true),
      { kind: 'rescan', path: 'new/full', reason: 'watch-limit' },
    ]);
    expect(run.w.watches).toBe(3); // root, ok, new
  });

  it('refuses a root it cannot watch, with the reason', () => {
    const root = tmp();
    expect(() =>
      watchTree(path.join(root, 'missing'), {
        debounceMs: 0,
        onChanges: () => {},
        onWarning: () => {},
      }),
    ).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    const { factory } = faulty({ failAdd: () => 'ENOSPC' });
    expect(() =>
      watchTree(root, {
        debounceMs: 0,
        onChanges: () => {},
        onWarning: () => {},
        inotify: factory,
      }),
    ).toThrow(/max_user_watches/);
  });

  it('stops everything on close', async () => {
    const run = start(tmp());
    writeFileSync(run.p('pending'), 'x');
    await until(() => run.w.pending > 0, 'the pending change');
    run.w.close();
    writeFileSync(run.p('after'), 'x');
    await sleep(DEBOUNCE * 3);
    expect(run.changes()).toEqual([]);
    expect(run.w.pending).toBe(0);
    expect(run.w.watches).toBe(0);
  });

  it('delivers early beyond maxPending, in order', async () => {
    const run = start(tmp(), { debounceMs: 10_000, maxPending: 10 });
    for (let i = 0; i < 11; i++) writeFileSync(run.p(`f${String(i).padStart(2, '0')}`), '');
    await until(() => run.changes().length > 0, 'the early batch');
    expect(run.changes()).toEqual([0, 1, 2, 3, 4, 5].map((i) => upsert(`f0${i}`)));
    run.w.flush();
    expect(run.changes().length).toBe(11);
  });
});

describe('globExcluder (rclone filter semantics)', () => {
  const ex = globExcluder(
    [
      '*.tmp',
      '.DS_Store',
      '/top.txt',
      'a/b.txt',
      'cache/',
      '**/deep/**',
      'img[0-9].png',
      '*.{bak,old}',
    ],
    ['someone@example.com/My Drive/Scratch'],
  );
  it.each([
    ['x.tmp', false, true],
    ['a/b/c/x.tmp', false, true],
    ['dir.tmp', true, false], // a file pattern does not exclude a folder
    ['.DS_Store', false, true],
    ['photos/.DS_Store', false, true],
    ['top.txt', false, true],
    ['sub/top.txt', false, false], // anchored at the root
    ['a/b.txt', false, true],
    ['x/a/b.txt', false, true], // matches whole trailing path elements
    ['xa/b.txt', false, false],
    ['cache', true, true],
    ['x/cache', true, true],
    ['cache', false, false], // a folder pattern does not exclude a file
    ['cache/file', false, true],
    ['x/deep/y', false, true],
    ['x/deep', true, true],
    ['img1.png', false, true],
    ['img10.png', false, false],
    ['f.bak', false, true],
    ['f.old', false, true],
    ['f.new', false, false],
    ['someone@example.com/My Drive/Scratch', true, true],
    ['someone@example.com/My Drive/Scratch/notes.txt', false, true],
    ['someone@example.com/My Drive/Scratchpad', true, false],
    ['someone@example.com/My Drive', true, false],
    ['report.txt', false, false],
  ])('%s (folder: %s) -> %s', (p, isDir, expected) => {
    expect(ex(p, isDir)).toBe(expected);
  });

  it('turns globs into regular expressions as rclone does', () => {
    expect(globToRegExp('*.jpg').source).toBe('(?:^|\\/)[^/]*\\.jpg$');
    expect(globToRegExp('/a/**').source).toBe('^a\\/.*$');
    expect(globToRegExp('[!a-c]?').test('d1')).toBe(true);
    expect(globToRegExp('[!a-c]?').test('a1')).toBe(false);
    expect(globToRegExp('[[:digit:]]x').test('5x')).toBe(true);
    expect(globToRegExp('{{\\d+}}.log').test('dir/123.log')).toBe(true);
    expect(globToRegExp('a\\*b').test('a*b')).toBe(true);
    expect(globToRegExp('a\\*b').test('axb')).toBe(false);
    expect(() => globToRegExp('***')).toThrow(/too many stars/);
    expect(() => globToRegExp('[abc')).toThrow(/mismatched/);
    expect(() => globToRegExp('{a,b')).toThrow(/mismatched/);
  });
});
