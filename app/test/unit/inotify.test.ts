// The @backupd/inotify addon against the real kernel: errors carry errno names, events carry
// names and cookies, batches are complete, the descriptor is released, and an open watcher
// keeps the process (or a worker) alive exactly as long as it is open.
import { spawn } from 'node:child_process';
import {
  mkdirSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Inotify,
  IN_ALL_EVENTS,
  IN_CLOSE_WRITE,
  IN_CREATE,
  IN_DELETE,
  IN_IGNORED,
  IN_ISDIR,
  IN_MODIFY,
  IN_MOVED_FROM,
  IN_MOVED_TO,
  IN_ONLYDIR,
  IN_Q_OVERFLOW,
  READ_BUFFER_SIZE,
  type InotifyEvent,
} from '@backupd/inotify';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-inotify-');
const addonUrl = new URL('../../native/inotify/index.js', import.meta.url).href;

const open: Inotify[] = [];
afterEach(() => {
  for (const w of open.splice(0)) w.close();
});

/** A watcher that collects every event it is given, batch by batch. */
function collector() {
  const batches: InotifyEvent[][] = [];
  const w = new Inotify((events) => batches.push(events));
  open.push(w);
  return { w, batches, events: () => batches.flat() };
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Inotify descriptors this process holds. */
function inotifyFds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes('inotify')) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

describe('@backupd/inotify', () => {
  it('exports the inotify(7) constants', () => {
    expect(IN_CLOSE_WRITE).toBe(0x8);
    expect(IN_MOVED_FROM).toBe(0x40);
    expect(IN_MOVED_TO).toBe(0x80);
    expect(IN_CREATE).toBe(0x100);
    expect(IN_Q_OVERFLOW).toBe(0x4000);
    expect(IN_IGNORED).toBe(0x8000);
    expect(IN_ISDIR).toBe(0x40000000);
    expect(READ_BUFFER_SIZE).toBeGreaterThanOrEqual(16 + 256);
  });

  it('throws system errors with the errno name as code', () => {
    const dir = tmp();
    const { w } = collector();
    const missing = path.join(dir, 'missing');
    let err: any;
    try {
      w.addWatch(missing, IN_CREATE);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({
      code: 'ENOENT',
      errno: -2,
      syscall: 'inotify_add_watch',
      path: missing,
    });
    expect(err.message).toContain('no such file or directory');

    writeFileSync(path.join(dir, 'file'), '');
    expect(() => w.addWatch(path.join(dir, 'file'), IN_CREATE | IN_ONLYDIR)).toThrow(
      expect.objectContaining({ code: 'ENOTDIR' }),
    );
    expect(() => w.rmWatch(12345)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => w.addWatch('', IN_CREATE)).toThrow(TypeError);
    expect(() => w.addWatch(`${dir}\0x`, IN_CREATE)).toThrow(TypeError);
    // @ts-expect-error wrong argument type
    expect(() => w.addWatch(dir)).toThrow(TypeError);
    // @ts-expect-error not a function
    expect(() => new Inotify(42)).toThrow(TypeError);
  });

  it('delivers events with names, masks and the cookie that pairs a rename', async () => {
    const dir = tmp();
    const { w, events } = collector();
    const wd = w.addWatch(dir, IN_ALL_EVENTS & ~IN_MODIFY);
    expect(wd).toBeGreaterThan(0);
    expect(w.addWatch(dir, IN_ALL_EVENTS & ~IN_MODIFY)).toBe(wd); // same inode, same wd

    writeFileSync(path.join(dir, 'a.txt'), 'hello');
    renameSync(path.join(dir, 'a.txt'), path.join(dir, 'b.txt'));
    mkdirSync(path.join(dir, 'sub'));
    rmdirSync(path.join(dir, 'sub'));
    unlinkSync(path.join(dir, 'b.txt'));
    await until(() => events().some((e) => e.mask & IN_DELETE && e.name === 'b.txt'), 'delete');

    const evs = events();
    const find = (mask: number, name: string) =>
      evs.find((e) => (e.mask & mask) === mask && e.name === name);
    expect(find(IN_CREATE, 'a.txt')).toMatchObject({ wd, cookie: 0 });
    expect(find(IN_CLOSE_WRITE, 'a.txt')).toBeDefined();
    const from = find(IN_MOVED_FROM, 'a.txt')!;
    const to = find(IN_MOVED_TO, 'b.txt')!;
    expect(from.cookie).toBeGreaterThan(0);
    expect(to.cookie).toBe(from.cookie);
    expect(find(IN_CREATE | IN_ISDIR, 'sub')).toBeDefined();
    expect(find(IN_DELETE | IN_ISDIR, 'sub')).toBeDefined();
    for (const e of evs) {
      expect(typeof e.name).toBe('string');
      expect(e.mask).toBeGreaterThanOrEqual(0); // unsigned, even with IN_ISDIR (bit 30)
    }

    w.rmWatch(wd);
    await until(() => events().some((e) => e.mask & IN_IGNORED && e.wd === wd), 'IN_IGNORED');
    expect(events().find((e) => e.mask & IN_IGNORED)!.name).toBe(''); // about the folder itself
  });

  it('reads many events per wake-up, names of every length intact', async () => {
    const dir = tmp();
    const { w, batches, events } = collector();
    w.addWatch(dir, IN_CLOSE_WRITE);
    const names: string[] = [];
    // Names of every length from 8 to 255 bytes (NAME_MAX), some with multi-byte UTF-8, so that
    // the kernel's NUL padding falls on every boundary; 3000 events in all.
    for (let i = 0; i < 3000; i++) {
      const bytes = 8 + (i % 248); // 8 to 255
      const base = i % 7 === 0 ? `é${i}-` : `${i}-`;
      const name = base + 'x'.repeat(bytes - Buffer.byteLength(base));
      expect(Buffer.byteLength(name)).toBe(bytes);
      names.push(name);
      writeFileSync(path.join(dir, name), '');
    }
    await until(() => events().length >= names.length, 'all the events');
    expect(events().map((e) => e.name)).toEqual(names);
    expect(batches.length).toBeLessThan(names.length); // batched, not one call per event
  });

  it('delivers nothing after close, releases the descriptor, and close is idempotent', async () => {
    const dir = tmp();
    const before = inotifyFds();
    const { w, events } = collector();
    expect(inotifyFds()).toBe(before + 1);
    w.addWatch(dir, IN_CREATE);
    writeFileSync(path.join(dir, 'one'), '');
    w.close();
    w.close();
    expect(w.closed).toBe(true);
    expect(inotifyFds()).toBe(before);
    expect(() => w.addWatch(dir, IN_CREATE)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    // Nothing can come any more; a second watcher proves the loop has turned.
    const other = collector();
    other.w.addWatch(dir, IN_CREATE);
    writeFileSync(path.join(dir, 'two'), '');
    await until(() => other.events().length > 0, 'the second watcher');
    expect(events()).toEqual([]);
  });

  it('lets the callback close the watcher in the middle of a batch', async () => {
    const dir = tmp();
    let calls = 0;
    const w = new Inotify(() => {
      calls++;
      w.close();
    });
    open.push(w);
    w.addWatch(dir, IN_CREATE);
    for (let i = 0; i < 50; i++) writeFileSync(path.join(dir, `f${i}`), '');
    await until(() => calls > 0, 'the callback');
    const other = collector();
    other.w.addWatch(dir, IN_CREATE);
    writeFileSync(path.join(dir, 'later'), '');
    await until(() => other.events().length > 0, 'the second watcher');
    expect(calls).toBe(1);
  });

  it('keeps the process alive while open, and not after close or unref', async () => {
    const dir = tmp();
    // The child watches, says "ready" and has nothing else to do: only the open watcher keeps
    // it running until the file we then create arrives; it prints it, closes, and must exit.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { Inotify, IN_CREATE } from ${JSON.stringify(addonUrl)};
         const w = new Inotify((evs) => { console.log('event ' + evs[0].name); w.close(); });
         w.addWatch(${JSON.stringify(dir)}, IN_CREATE);
         const u = new Inotify(() => {}); u.addWatch(${JSON.stringify(dir)}, IN_CREATE); u.unref();
         console.log('ready');`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready') && !out.includes('created')) {
        out += 'created\n';
        writeFileSync(path.join(dir, 'poke'), '');
      }
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill();
        reject(new Error(`child did not exit: ${out}`));
      }, 10_000);
      child.on('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    expect(code).toBe(0);
    expect(out).toContain('event poke');
  });

  it('closes cleanly when a worker thread ends with a watcher still open', async () => {
    const dir = tmp();
    const src = `
      import { Inotify, IN_CREATE } from ${JSON.stringify(addonUrl)};
      import { parentPort } from 'node:worker_threads';
      const w = new Inotify(() => {});
      w.addWatch(${JSON.stringify(dir)}, IN_CREATE);
      parentPort.postMessage('ready');`;
    for (const how of ['exit', 'terminate'] as const) {
      const code = how === 'exit' ? `${src}\nsetTimeout(() => process.exit(0), 10);` : src;
      const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
      worker.on('message', () => {
        if (how === 'terminate') void worker.terminate();
      });
      const exit = await new Promise<number>((resolve, reject) => {
        worker.on('error', reject);
        worker.on('exit', resolve);
      });
      expect(exit).toBe(how === 'exit' ? 0 : 1);
    }
  });

  it('reports an exception in the callback as uncaught, and goes on', async () => {
    const dir = tmp();
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { Inotify, IN_CLOSE_WRITE } from ${JSON.stringify(addonUrl)};
         import { writeFileSync } from 'node:fs';
         let n = 0;
         process.on('uncaughtException', (e) => {
           console.log('uncaught ' + e.message);
           writeFileSync(${JSON.stringify(path.join(dir, 'b'))}, '');
         });
         const w = new Inotify(() => { if (++n === 1) throw new Error('boom'); console.log('second'); w.close(); });
         w.addWatch(${JSON.stringify(dir)}, IN_CLOSE_WRITE);
         writeFileSync(${JSON.stringify(path.join(dir, 'a'))}, '');`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(out).toBe('uncaught boom\nsecond\n');
    expect(code).toBe(0);
  });
});
