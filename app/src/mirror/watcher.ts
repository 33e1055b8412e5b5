/**
 * Watching a mirror folder for changes with raw inotify (our own N-API addon,
 * `@backupd/inotify`): one watch per folder, events read on the event loop (no thread, no
 * polling), turned into a short, ordered list of changes relative to the mirror folder.
 *
 * What counts as a change:
 * - a file written and closed (IN_CLOSE_WRITE) or moved in (IN_MOVED_TO): `upsert`. A file
 *   being created (IN_CREATE) or written (IN_MODIFY) is not a change, so a half-written file is
 *   never reported. The exceptions are a new hard link or symbolic link (IN_CREATE of an entry
 *   that is already complete: a link count above one, or a symlink), which never produce
 *   IN_CLOSE_WRITE.
 * - a rename inside the tree (IN_MOVED_FROM + IN_MOVED_TO with the same cookie): one `move`,
 *   also for a folder (its watches, and those below it, follow it: they are inode based);
 * - a deletion, or a move out of the tree (IN_MOVED_FROM without a partner): `delete`;
 * - a new folder (created, or moved in from outside): watched, then listed: a `delete` of the
 *   folder (the destination should hold nothing there; see `walk`), then an `upsert` of every
 *   file already inside, so nothing created before the watch existed is missed. Such files may
 *   still be open for writing; they are delivered only once they look finished (`stable`).
 * - lost events (IN_Q_OVERFLOW), a folder that cannot be watched (the max_user_watches limit)
 *   or a mirror folder that went away: a warning and a `rescan` of the affected subtree: the
 *   consumer must reconcile it with the destination. Changes are never silently missed.
 *
 * Changes are held `debounceMs` after the last event for their path, coalesced per path (rules
 * in `ChangeQueue`), and delivered in order in batches. Memory: one small node per watched
 * folder, one entry per pending path (bounded by `maxPending`), the events of one read.
 *
 * Events tell the past; the file system, when it is listed or read, tells the present. A
 * consumer that applies the changes in order and reads the mirror when it pushes (see `Change`)
 * ends with the destination equal to the mirror; a randomized test checks exactly that.
 */
import {
  lstatSync,
  readdirSync,
  readFileSync,
  realpathSync,
  type Dirent,
  type Stats,
} from 'node:fs';
import path from 'node:path';
import {
  Inotify,
  IN_CLOSE_WRITE,
  IN_CREATE,
  IN_DELETE,
  IN_DELETE_SELF,
  IN_DONT_FOLLOW,
  IN_EXCL_UNLINK,
  IN_IGNORED,
  IN_ISDIR,
  IN_MOVE_SELF,
  IN_MOVED_FROM,
  IN_MOVED_TO,
  IN_ONLYDIR,
  IN_Q_OVERFLOW,
  IN_UNMOUNT,
  type InotifyEvent,
} from '@backupd/inotify';

/** Names the pull half gives files while they download; never reported, never pushed. */
export const PARTIAL_SUFFIX = '.backupd-partial';
/** The daemon's own folder at the top of a mirror folder; never reported. */
export const BOOKKEEPING_DIR = '.backupd';

/** The events every folder is watched for. */
export const WATCH_MASK =
  IN_CLOSE_WRITE |
  IN_MOVED_FROM |
  IN_MOVED_TO |
  IN_CREATE |
  IN_DELETE |
  IN_DELETE_SELF |
  IN_MOVE_SELF |
  IN_ONLYDIR |
  IN_DONT_FOLLOW |
  IN_EXCL_UNLINK;

export type RescanReason = 'overflow' | 'watch-limit' | 'watch-failed' | 'root-gone';

/**
 * One change, paths relative to the mirror folder with `/` separators. The consumer applies
 * them in the order given, reading the mirror as it is when it gets to each:
 * - `upsert`: the file at `path` is new or changed: push what is there now. If nothing is
 *   there any more, do nothing: a later change says where it went.
 * - `delete`: remove `path` (with `isDir`, everything below it) from the destination. It may
 *   name something the destination never had (a file created and deleted within the delay, a
 *   new folder before its files are pushed): nothing to do then.
 * - `move`: what was at `from` is now at `to` (a folder: everything below it). Move what the
 *   destination holds at `from` (server side), then reconcile `to` with the mirror (a folder:
 *   its subtree, as for `rescan`; that costs local stats, and uploads only what differs). The
 *   move tells the past while upserts read the present: an earlier upsert may have pushed
 *   content newer than this move, or found nothing because its file had moved meanwhile (with
 *   this very move, say).
 * - `rescan`: changes below `path` ('' = everything) were not seen one by one: reconcile that
 *   subtree with the destination.
 */
export type Change =
  | { kind: 'upsert'; path: string }
  | { kind: 'delete'; path: string; isDir: boolean }
  | { kind: 'move'; from: string; to: string; isDir: boolean }
  | { kind: 'rescan'; path: string; reason: RescanReason };

export type WarningCode = 'overflow' | 'watch-limit' | 'permission' | 'watch-failed' | 'root-gone';

export interface WatchWarning {
  code: WarningCode;
  /** Relative to the mirror folder ('' = the folder itself). */
  path: string;
  /** What the owner can do about it. */
  fix?: string;
  /** The system error, e.g. 'ENOSPC'. */
  error?: string;
}

/** What the watcher needs of an inotify instance; the addon's `Inotify` in production. */
export interface InotifyLike {
  addWatch(path: string, mask: number): number;
  rmWatch(wd: number): void;
  close(): void;
}
export type InotifyFactory = (onEvents: (events: InotifyEvent[]) => void) => InotifyLike;

export interface WatchOptions {
  /** Hold a change this long after the last event for its path (`sync.watch_delay_seconds`). */
  debounceMs: number;
  /** True for paths not to report (and folders not to watch); see `globExcluder`. */
  exclude?: (relPath: string, isDir: boolean) => boolean;
  onChanges: (changes: Change[]) => void;
  onWarning: (message: string, detail: WatchWarning) => void;
  /** Tests inject faults here; defaults to the addon. */
  inotify?: InotifyFactory;
  /** Milliseconds, monotonic; defaults to performance.now(). */
  now?: () => number;
  /** A path changed again and again is still delivered this long after its first event
   * (default: the larger of 10 × debounceMs and 60 s). */
  maxDelayMs?: number;
  /** Pending paths beyond which the oldest are delivered early (default 10000). */
  maxPending?: number;
  /** How long an IN_MOVED_FROM waits for its IN_MOVED_TO before it counts as a move out of the
   * tree (default 50 ms; the kernel queues both within one rename, so this only covers a read
   * that falls between them). */
  movePairMs?: number;
}

export interface Watcher {
  /** Stops watching; pending changes are dropped (call `flush()` first to deliver them). */
  close(): void;
  /** Delivers every pending change now, except files found by a scan that still look in
   * progress (they stay pending). */
  flush(): void;
  /** Folders watched (one inotify watch each). */
  readonly watches: number;
  /** Changes waiting for their delay. */
  readonly pending: number;
}

/**
 * Watches `root` and everything below it. Synchronous: when it returns, every folder is
 * watched. Throws if the root itself cannot be watched (missing, not a folder, no permission,
 * or the watch limit already reached).
 */
export function watchTree(root: string, opts: WatchOptions): Watcher {
  return new TreeWatcher(root, opts);
}

// ---- the watched folders -------------------------------------------------------------------

/** A watched folder. Its path is not stored: it is the chain of names up to the root, so a
 * renamed folder moves its whole subtree by changing one node. */
interface DirNode {
  wd: number;
  name: string;
  parent: DirNode | null;
  children: Map<string, DirNode> | null;
}

/** A folder for walk(): where it goes in the tree, and its node if it is watched already. */
interface WalkItem {
  parent: DirNode;
  name: string;
  rel: string;
  node?: DirNode;
  /** List it even though it is watched already. */
  fresh?: boolean;
}

/** An event read from the kernel, waiting to be handled in order. */
interface Queued {
  ev: InotifyEvent;
  at: number;
  done: boolean;
}

const FLUSH_CHUNK = 1000;
const LIMIT_WARNING_EVERY_MS = 60_000;

const join = (dir: string, name: string) => (dir === '' ? name : `${dir}/${name}`);

class TreeWatcher implements Watcher {
  private readonly ino: InotifyLike;
  private readonly now: () => number;
  private readonly debounceMs: number;
  private readonly maxPending: number;
  private readonly movePairMs: number;
  private readonly queue: ChangeQueue;
  private readonly byWd = new Map<number, DirNode>();
  /** Watched folders that a listing found somewhere else than the events have said so far. */
  private readonly relocated = new Map<number, { parent: DirNode; name: string }>();
  /** New folders not found where the events put them, by parent (see walk). */
  private readonly missing = new Map<DirNode, Set<string>>();
  /** New folders watched but not listed (they moved on in between). */
  private readonly unlisted = new Set<DirNode>();
  private rootNode: DirNode | null = null;
  private readonly buffer: Queued[] = [];
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private pairTimer: NodeJS.Timeout | undefined;
  private limitWarnedAt: number | undefined;
  private limitSuppressed = 0;
  private rootGoneWarned = false;

  private readonly root: string;

  constructor(
    root: string,
    private readonly o: WatchOptions,
  ) {
    this.now = o.now ?? (() => performance.now());
    this.debounceMs = Math.max(0, o.debounceMs);
    this.maxPending = Math.max(2, o.maxPending ?? 10_000);
    this.movePairMs = Math.max(0, o.movePairMs ?? 50);
    this.queue = new ChangeQueue(
      this.now,
      this.debounceMs,
      o.maxDelayMs ?? Math.max(this.debounceMs * 10, 60_000),
    );
    const factory = o.inotify ?? ((cb) => new Inotify(cb));
    this.ino = factory((events) => this.onEvents(events));
    this.root = path.resolve(root);
    try {
      // The folder itself, not a symbolic link to it (watches do not follow links).
      this.root = realpathSync(this.root);
      const wd = this.ino.addWatch(this.root, WATCH_MASK);
      this.rootNode = { wd, name: '', parent: null, children: null };
      this.byWd.set(wd, this.rootNode);
    } catch (err) {
      this.ino.close();
      const e = err as NodeJS.ErrnoException;
      const fix =
        e.code === 'ENOSPC'
          ? ` ${limitFix()}`
          : e.code === 'EACCES'
            ? ' Give the backupd user read access to it.'
            : '';
      const error = new Error(`Cannot watch ${this.root} for changes: ${e.message}.${fix}`);
      Object.assign(error, { code: e.code, cause: err });
      throw error;
    }
    this.walk({ parent: this.rootNode, name: '', rel: '', node: this.rootNode }, 'initial');
    this.schedule();
  }

  get watches(): number {
    return this.byWd.size;
  }

  get pending(): number {
    return this.queue.size;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.pairTimer);
    this.timer = this.pairTimer = undefined;
    this.ino.close();
    this.byWd.clear();
    this.relocated.clear();
    this.missing.clear();
    this.unlisted.clear();
    this.rootNode = null;
    this.buffer.length = 0;
    this.queue.clear();
  }

  flush(): void {
    if (this.closed) return;
    this.drain(true);
    this.deliver('all');
    this.schedule();
  }

  // ---- events ----

  private onEvents(events: InotifyEvent[]): void {
    if (this.closed) return;
    const at = this.now();
    for (const ev of events) this.buffer.push({ ev, at, done: false });
    this.drain(false);
    this.schedule();
  }

  /**
   * Handles the buffered events in kernel order. An IN_MOVED_FROM is paired with the
   * IN_MOVED_TO of the same cookie anywhere later in the buffer; if there is none yet, handling
   * stops there (the events after it wait, so that order is kept) until the partner arrives or
   * `movePairMs` has passed (or `force`), when it counts as a move out of the tree.
   */
  private drain(force: boolean): void {
    const buf = this.buffer;
    if (buf.length === 0) return;
    const t = this.now();
    let movedTo: Map<number, Queued> | undefined;
    let overflowAt = -1;
    for (let k = buf.length - 1; k >= 0 && overflowAt < 0; k--) {
      if (buf[k]!.ev.mask & IN_Q_OVERFLOW) overflowAt = k;
    }
    let i = 0;
    for (; i < buf.length && !this.closed; i++) {
      const q = buf[i]!;
      if (q.done) continue;
      const ev = q.ev;
      if (ev.mask & IN_MOVED_FROM && ev.cookie !== 0) {
        if (movedTo === undefined) {
          movedTo = new Map();
          for (let k = i + 1; k < buf.length; k++) {
            const e = buf[k]!;
            if (e.ev.mask & IN_MOVED_TO && !e.done) movedTo.set(e.ev.cookie, e);
          }
        }
        const partner = movedTo.get(ev.cookie);
        if (partner !== undefined) {
          partner.done = true;
          this.handleMove(ev, partner.ev);
          continue;
        }
        // No partner yet. It can no longer come after an overflow (it was lost) or once the
        // window has passed.
        if (!force && overflowAt < i && t - q.at < this.movePairMs - 1) break;
        this.handleMove(ev, undefined);
        continue;
      }
      this.handle(ev);
    }
    buf.splice(0, i);
    if (buf.length === 0 && (this.missing.size > 0 || this.unlisted.size > 0)) this.retryMissing();
    clearTimeout(this.pairTimer);
    this.pairTimer = undefined;
    if (buf.length > 0 && !this.closed) {
      const wait = Math.max(0, buf[0]!.at + this.movePairMs - t);
      this.pairTimer = setTimeout(() => {
        this.pairTimer = undefined;
        this.drain(false);
        this.schedule();
      }, Math.ceil(wait));
    }
  }

  private handle(ev: InotifyEvent): void {
    const m = ev.mask;
    if (m & IN_Q_OVERFLOW) return this.overflow();
    const node = this.byWd.get(ev.wd);
    if (m & IN_IGNORED) {
      // The watch is gone (folder deleted, watch removed, file system unmounted).
      if (node) this.forget(node);
      return;
    }
    if (node === undefined) return; // a watch we already dropped
    const dir = this.pathOf(node);
    if (dir === undefined) return; // a folder no longer in the tree
    if (ev.name === '') {
      // About the watched folder itself; its parent's events tell where it went, except for
      // the root, which has no parent in the tree.
      if (node === this.rootNode && m & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)) {
        this.rootGone(m);
      }
      return;
    }
    const isDir = (m & IN_ISDIR) !== 0;
    const rel = join(dir, ev.name);
    if (m & IN_MOVED_TO) return this.movedIn(node, ev.name, rel, isDir);
    if (this.excluded(rel, isDir)) return;
    if (m & IN_CLOSE_WRITE) {
      if (!isDir) this.queue.upsert(rel, false);
    } else if (m & IN_CREATE) {
      if (isDir) this.walk({ parent: node, name: ev.name, rel }, 'new');
      else this.linked(rel);
    } else if (m & IN_DELETE) {
      if (isDir) this.clearMissing(node, ev.name);
      this.queue.delete(rel, isDir);
      const child = isDir ? node.children?.get(ev.name) : undefined;
      if (child) this.dropSubtree(child, true); // gone already, unless our tree was wrong
    }
  }

  /**
   * IN_MOVED_FROM with its IN_MOVED_TO (a rename inside the tree), or without: moved out of the
   * tree, or into a folder that was not watched yet at that instant (then a listing of that
   * folder has seen it there: `relocated`).
   */
  private handleMove(fromEv: InotifyEvent, toEv: InotifyEvent | undefined): void {
    const fromParent = this.byWd.get(fromEv.wd);
    const fromDir = fromParent ? this.pathOf(fromParent) : undefined;
    const isDir = (fromEv.mask & IN_ISDIR) !== 0;
    const fromNode = isDir ? fromParent?.children?.get(fromEv.name) : undefined;
    if (isDir && fromParent) this.clearMissing(fromParent, fromEv.name);
    let target: { parent: DirNode; name: string } | undefined;
    const toParent = toEv ? this.byWd.get(toEv.wd) : undefined;
    if (toEv && toParent) {
      target = { parent: toParent, name: toEv.name };
    } else if (fromNode) {
      // No partner, or one in a folder whose watch we have dropped since (its events, queued
      // before, still carry the old watch descriptor).
      target = this.relocatedTo(fromNode);
    }
    const toDir = target ? this.pathOf(target.parent) : undefined;
    if (fromDir === undefined) {
      // The source folder is no longer known: all we can do is take the target as new.
      if (target && toDir !== undefined) {
        this.movedIn(target.parent, target.name, join(toDir, target.name), isDir);
      }
      return;
    }
    const from = join(fromDir, fromEv.name);
    const fromOut = this.excluded(from, isDir);
    if (target === undefined || toDir === undefined) {
      // Moved out of the tree: gone from here. A folder's watches would follow it to where it
      // went; remove them.
      if (fromNode) this.dropSubtree(fromNode, true);
      if (!fromOut) this.queue.delete(from, isDir);
      return;
    }
    const to = join(toDir, target.name);
    const toOut = this.excluded(to, isDir);
    if (fromOut) {
      // From an ignored name to a reported one, e.g. the pull half's `x.backupd-partial` -> `x`.
      if (fromNode) this.dropSubtree(fromNode, true);
      this.movedIn(target.parent, target.name, to, isDir);
      return;
    }
    if (toOut) {
      if (fromNode) this.dropSubtree(fromNode, true);
      this.queue.delete(from, isDir);
      return;
    }
    this.queue.move(from, to, isDir);
    if (isDir) {
      if (fromNode && this.attach(fromNode, target.parent, target.name)) return;
      // We had no watch on it (say the watch limit was reached): watch and list it now.
      this.walk({ parent: target.parent, name: target.name, rel: to }, 'new');
    }
  }

  /**
   * Where a listing saw a watched folder that an unpaired IN_MOVED_FROM takes away. That listing
   * happened after the move (the folder was there), and the folder it found it in was watched
   * from then on, so later moves of it come as events of their own: the place is right for this
   * move, even if the folder has moved on since.
   */
  private relocatedTo(node: DirNode): { parent: DirNode; name: string } | undefined {
    const seen = this.relocated.get(node.wd);
    if (seen === undefined) return undefined;
    this.relocated.delete(node.wd);
    if (this.byWd.get(seen.parent.wd) !== seen.parent || this.pathOf(seen.parent) === undefined) {
      return undefined;
    }
    return seen;
  }

  /** Something appeared at `rel` from outside the tree (or from an ignored name). */
  private movedIn(parent: DirNode, name: string, rel: string, isDir: boolean): void {
    if (this.excluded(rel, isDir)) return;
    if (isDir) this.walk({ parent, name, rel }, 'new');
    else this.queue.upsert(rel, false);
  }

  /** IN_CREATE of a non-folder: only complete if it is a new name for existing content. */
  private linked(rel: string): void {
    const st = lstat(this.abs(rel));
    if (st && (st.isSymbolicLink() || (st.isFile() && st.nlink > 1))) {
      this.queue.upsert(rel, false);
    }
  }

  private overflow(): void {
    this.warn(
      'overflow',
      '',
      `More changes arrived at once than inotify could queue (fs.inotify.max_queued_events); ` +
        `some were not seen one by one, so the whole of ${this.root} will be checked against the destinations.`,
      'Nothing to do; if this happens often, raise fs.inotify.max_queued_events (sysctl).',
    );
    // Renames may have been lost too: walk the tree again, re-keying and adding watches.
    this.resync();
    this.queue.rescan('', 'overflow');
  }

  private rootGone(mask: number): void {
    if (this.rootGoneWarned) return;
    this.rootGoneWarned = true;
    const what = mask & IN_UNMOUNT ? 'its disk was unmounted' : 'it was moved or deleted';
    this.warn(
      'root-gone',
      '',
      `The mirror folder ${this.root} is no longer watched: ${what}.`,
      'Check that the data disk is mounted and the folder exists, then restart the daemon.',
    );
    this.queue.rescan('', 'root-gone');
  }

  // ---- the tree of watches ----

  private abs(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  private pathOf(node: DirNode): string | undefined {
    const parts: string[] = [];
    for (let n: DirNode = node; n !== this.rootNode;) {
      if (n.parent === null) return undefined;
      parts.push(n.name);
      n = n.parent;
    }
    return parts.reverse().join('/');
  }

  /** Puts `node` at `parent/name`; false if that would make a loop (a bind mount of an
   * ancestor). Whatever stood there before is dropped. */
  private attach(node: DirNode, parent: DirNode, name: string): boolean {
    for (let n: DirNode | null = parent; n !== null; n = n.parent) if (n === node) return false;
    const old = parent.children?.get(name);
    if (old !== undefined && old !== node) this.dropSubtree(old, true);
    this.detach(node);
    node.name = name;
    node.parent = parent;
    (parent.children ??= new Map()).set(name, node);
    return true;
  }

  private detach(node: DirNode): void {
    const p = node.parent;
    if (p === null) return;
    if (p.children?.get(node.name) === node) {
      p.children.delete(node.name);
      if (p.children.size === 0) p.children = null;
    }
    node.parent = null;
  }

  /** Forgets a folder and everything below it; `rm` also removes the kernel watches (needed
   * when the folders still exist elsewhere). */
  private dropSubtree(top: DirNode, rm: boolean): void {
    const stack = [top];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (n.children) stack.push(...n.children.values());
      this.missing.delete(n);
      this.unlisted.delete(n);
      if (this.byWd.get(n.wd) === n) {
        this.byWd.delete(n.wd);
        this.relocated.delete(n.wd);
        if (rm) this.rmWatch(n.wd);
      }
    }
    this.detach(top);
    if (top === this.rootNode) this.rootNode = null;
  }

  private forget(node: DirNode): void {
    if (this.byWd.get(node.wd) === node) this.byWd.delete(node.wd);
    this.relocated.delete(node.wd);
    this.missing.delete(node);
    this.unlisted.delete(node);
    this.detach(node);
    if (node === this.rootNode) this.rootNode = null;
  }

  private rmWatch(wd: number): void {
    try {
      this.ino.rmWatch(wd);
    } catch {
      // EINVAL: the kernel already dropped it (folder deleted).
    }
  }

  /**
   * Watches a folder and the folders below it, listing each after its watch exists, so that
   * nothing created in between is missed (it is then seen twice; the queue coalesces).
   * - initial: the walk at start; files are not reported (the consumer reconciles at start);
   * - new: a folder that just appeared: a `delete` of it (see the comment in the loop), then
   *   its files are reported; folders already watched are not walked again;
   * - resync: after an overflow; every folder is visited to repair the tree (`seen`).
   *
   * The file system is read as it is now, while the events being handled tell the past: a new
   * folder may already have moved on with a parent whose rename is still to be handled. Such a
   * folder (not found where the events put it) is noted in `missing` and tried again once more
   * events have been handled, until it is found or an event says it is gone.
   */
  private walk(start: WalkItem, mode: 'initial' | 'new' | 'resync', seen?: Set<number>): void {
    if (mode === 'new' && start.node === undefined && !this.isWhereEventsSay(start.parent)) {
      this.noteMissing(start.parent, start.name);
      return;
    }
    const stack: WalkItem[] = [start];
    while (stack.length > 0 && !this.closed) {
      const item = stack.pop()!;
      let node = item.node;
      let fresh = mode === 'initial' || item.fresh === true;
      if (node === undefined) {
        const r = this.watchDir(item.parent, item.name, item.rel, mode);
        if (r === undefined) continue;
        node = r.node;
        fresh = r.fresh;
      }
      seen?.add(node.wd);
      if (!fresh && mode !== 'resync') continue;
      if (mode === 'new' && item === start) {
        // Until now this folder was not watched: what happened in it was not seen, and a
        // consumer reading the mirror meanwhile (say to check a moved folder) may have pushed
        // files that are gone again. So: forget whatever the destination holds there, then
        // push what is there now. For a folder really new this deletes nothing.
        this.queue.delete(item.rel, true);
      }
      let entries: Dirent[];
      try {
        entries = readdirSync(this.abs(item.rel), { withFileTypes: true });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (mode === 'new' && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) {
          this.unlisted.add(node); // watched, but moved on before it could be listed
        } else {
          this.listFailed(item.rel, e);
        }
        continue;
      }
      for (const d of entries) {
        const rel = join(item.rel, d.name);
        if (d.isDirectory()) {
          if (!this.excluded(rel, true)) stack.push({ parent: node, name: d.name, rel });
        } else if (mode === 'new' && (d.isFile() || d.isSymbolicLink())) {
          // A regular file found by listing may still be open for writing: `scanned`.
          if (!this.excluded(rel, false)) this.queue.upsert(rel, d.isFile());
        }
      }
    }
  }

  /** True if the folder of `node` is, now, at the path the events handled so far give it. */
  private isWhereEventsSay(node: DirNode): boolean {
    const rel = this.pathOf(node);
    if (rel === undefined) return false;
    try {
      return this.ino.addWatch(this.abs(rel), WATCH_MASK) === node.wd; // same inode, same wd
    } catch {
      return false;
    }
  }

  private noteMissing(parent: DirNode, name: string): void {
    let names = this.missing.get(parent);
    if (names === undefined) this.missing.set(parent, (names = new Set()));
    names.add(name);
  }

  private clearMissing(parent: DirNode, name: string): void {
    const names = this.missing.get(parent);
    if (names?.delete(name) && names.size === 0) this.missing.delete(parent);
  }

  /** Tries again the folders a walk could not find where the events put them. */
  private retryMissing(): void {
    const missing = [...this.missing];
    const unlisted = [...this.unlisted];
    this.missing.clear();
    this.unlisted.clear();
    for (const [parent, names] of missing) {
      const dir = this.byWd.get(parent.wd) === parent ? this.pathOf(parent) : undefined;
      if (dir === undefined) continue;
      for (const name of names) {
        const rel = join(dir, name);
        if (!this.excluded(rel, true)) this.walk({ parent, name, rel }, 'new');
      }
    }
    for (const node of unlisted) {
      const rel = this.byWd.get(node.wd) === node ? this.pathOf(node) : undefined;
      if (rel === undefined || node.parent === null) continue;
      if (!this.isWhereEventsSay(node)) {
        this.unlisted.add(node);
        continue;
      }
      this.walk({ parent: node.parent, name: node.name, rel, node, fresh: true }, 'new');
    }
  }

  private watchDir(
    parent: DirNode,
    name: string,
    rel: string,
    mode: 'initial' | 'new' | 'resync',
  ): { node: DirNode; fresh: boolean } | undefined {
    let wd: number;
    try {
      wd = this.ino.addWatch(this.abs(rel), WATCH_MASK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (mode === 'new' && (e.code === 'ENOENT' || e.code === 'ENOTDIR')) {
        this.noteMissing(parent, name); // moved on, or gone: later events say which
      } else {
        this.watchFailed(rel, e);
      }
      return undefined;
    }
    const known = this.byWd.get(wd);
    if (known !== undefined) {
      if (known === this.rootNode) return undefined; // a bind mount of the root inside it
      if (known.parent === parent && known.name === name) return { node: known, fresh: false };
      if (mode === 'resync') {
        // After lost events: the listing is the only truth there is.
        this.relocated.delete(wd);
        return this.attach(known, parent, name) ? { node: known, fresh: false } : undefined;
      }
      // A watched folder found here by a listing, which sees the present, while the events that
      // moved it here (which tell the past) are still to be handled: leave it where the events
      // have it, and note where it was seen, for a move whose target was not watched yet.
      this.relocated.set(wd, { parent, name });
      return undefined;
    }
    const node: DirNode = { wd, name, parent: null, children: null };
    this.byWd.set(wd, node);
    this.attach(node, parent, name);
    return { node, fresh: true };
  }

  private watchFailed(rel: string, err: NodeJS.ErrnoException): void {
    switch (err.code) {
      case 'ENOENT':
      case 'ENOTDIR':
        return; // gone or replaced meanwhile (at start, or after lost events)
      case 'ENOSPC':
        this.limitReached(rel);
        this.queue.rescan(rel, 'watch-limit');
        return;
      case 'EACCES':
      case 'EPERM':
        this.warn(
          'permission',
          rel,
          `Cannot watch ${this.abs(rel)}: permission denied. It is skipped: changes below it are not pushed.`,
          'Give the backupd user read and execute access to that folder (chmod/chown), or exclude it.',
          err.code,
        );
        return;
      default:
        this.warn(
          'watch-failed',
          rel,
          `Cannot watch ${this.abs(rel)} for changes (${err.message}); it will be checked by a rescan instead.`,
          undefined,
          err.code,
        );
        this.queue.rescan(rel, 'watch-failed');
    }
  }

  private listFailed(rel: string, err: NodeJS.ErrnoException): void {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return;
    if (err.code === 'EACCES' || err.code === 'EPERM') {
      this.warn(
        'permission',
        rel,
        `Cannot list ${this.abs(rel)}: permission denied. Files in it are not pushed.`,
        'Give the backupd user read and execute access to that folder (chmod/chown), or exclude it.',
        err.code,
      );
      return;
    }
    this.warn(
      'watch-failed',
      rel,
      `Cannot list ${this.abs(rel)} (${err.message}); it will be checked by a rescan instead.`,
      undefined,
      err.code,
    );
    this.queue.rescan(rel, 'watch-failed');
  }

  private limitReached(rel: string): void {
    const t = this.now();
    if (this.limitWarnedAt !== undefined && t - this.limitWarnedAt < LIMIT_WARNING_EVERY_MS) {
      this.limitSuppressed++;
      return;
    }
    const more =
      this.limitSuppressed > 0
        ? ` (and ${this.limitSuppressed} more folders since the last warning)`
        : '';
    this.limitWarnedAt = t;
    this.limitSuppressed = 0;
    this.warn(
      'watch-limit',
      rel,
      `Cannot watch ${this.abs(rel)}${more} for changes: the limit of inotify watches ` +
        `(/proc/sys/fs/inotify/max_user_watches = ${readLimit() ?? 'unknown'}) is reached, with ` +
        `${this.byWd.size} folders watched here. Changes below it are found by rescans only, later than usual.`,
      limitFix(),
      'ENOSPC',
    );
  }

  /** After an overflow: walks the whole tree, fixes the path of every watch, adds missing
   * ones, drops those of folders that are gone. */
  private resync(): void {
    if (this.rootNode === null) return;
    this.relocated.clear();
    this.missing.clear();
    this.unlisted.clear();
    const seen = new Set<number>();
    this.walk({ parent: this.rootNode, name: '', rel: '', node: this.rootNode }, 'resync', seen);
    const stale: DirNode[] = [];
    for (const [wd, node] of this.byWd) if (!seen.has(wd)) stale.push(node);
    for (const node of stale) {
      if (node === this.rootNode) continue;
      this.byWd.delete(node.wd);
      this.rmWatch(node.wd);
      this.detach(node);
    }
  }

  private excluded(rel: string, isDir: boolean): boolean {
    return notMirrored(rel, isDir) || (this.o.exclude?.(rel, isDir) ?? false);
  }

  private warn(code: WarningCode, rel: string, message: string, fix?: string, error?: string) {
    const detail: WatchWarning = { code, path: rel };
    if (fix !== undefined) detail.fix = fix;
    if (error !== undefined) detail.error = error;
    this.o.onWarning(message, detail);
  }

  // ---- delivery ----

  /** Arms the one timer for the oldest pending change; delivers early beyond maxPending. */
  private schedule(): void {
    if (this.closed) return;
    if (this.queue.size > this.maxPending) this.deliver('trim');
    const front = this.queue.first();
    if (front === undefined || this.closed) {
      clearTimeout(this.timer);
      this.timer = undefined;
      return;
    }
    if (this.timer !== undefined && this.timerAt === front.due) return;
    clearTimeout(this.timer);
    this.timerAt = front.due;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        try {
          this.deliver('due');
        } finally {
          this.schedule(); // even if onChanges threw (which is then an uncaught exception)
        }
      },
      Math.max(0, Math.ceil(front.due - this.now())),
    );
  }

  /**
   * Takes changes from the front of the queue, in order: those due ('due'), all ('all'), or
   * enough to get back under half of maxPending ('trim'), at most FLUSH_CHUNK per call for
   * 'due' (the rest follows on the next turn of the event loop).
   */
  private deliver(mode: 'due' | 'all' | 'trim'): void {
    const t = this.now();
    const out: Change[] = [];
    let visits = mode === 'due' ? FLUSH_CHUNK : this.queue.size;
    const floor = mode === 'trim' ? Math.floor(this.maxPending / 2) : 0;
    while (visits-- > 0 && this.queue.size > floor) {
      const e = this.queue.first()!;
      if (mode === 'due' && e.due > t + 1) break;
      this.queue.remove(e);
      if (e.scanned && !this.stable(e)) {
        this.queue.requeue(e);
        continue;
      }
      out.push(e.change);
    }
    if (out.length > 0) this.o.onChanges(out);
  }

  /**
   * A file found by listing a new folder (not by an event) may still be open for writing, and
   * no IN_CLOSE_WRITE may have come for it yet. It is delivered once it looks finished: not
   * modified for debounceMs, or unchanged (size and mtime) since the previous look (which
   * covers clocks that are off, say on a Raspberry Pi before NTP). Its IN_CLOSE_WRITE, if it
   * comes, turns it into an ordinary change.
   */
  private stable(e: Entry): boolean {
    if (e.change.kind !== 'upsert') return true;
    const st = lstat(this.abs(e.change.path));
    if (st === undefined || st.isDirectory()) return true; // the consumer sees what happened
    const probe = { size: st.size, mtimeMs: st.mtimeMs };
    if (Date.now() - st.mtimeMs >= this.debounceMs) return true;
    if (e.probe && e.probe.size === probe.size && e.probe.mtimeMs === probe.mtimeMs) return true;
    e.probe = probe;
    return false;
  }
}

/** lstat, or undefined when there is nothing there any more (ENOENT, or ENOTDIR: a folder on
 * the way was replaced by a file). */
function lstat(p: string): Stats | undefined {
  try {
    return lstatSync(p, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function readLimit(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/fs/inotify/max_user_watches', 'utf8').trim());
  } catch {
    return undefined;
  }
}

function limitFix(): string {
  const now = readLimit();
  const next = Math.max(524_288, (now ?? 0) * 2);
  return (
    `Raise the limit: \`sysctl fs.inotify.max_user_watches=${next}\`, and keep it across ` +
    `reboots with a line \`fs.inotify.max_user_watches=${next}\` in /etc/sysctl.d/ ` +
    `(each watch costs the kernel about 1 KB).`
  );
}

// ---- coalescing ----------------------------------------------------------------------------

interface Entry {
  change: Change;
  /** When it may be delivered. */
  due: number;
  /** Its first event (for maxDelayMs). */
  first: number;
  /** Found by listing, may still be in progress (see TreeWatcher.stable). */
  scanned: boolean;
  probe?: { size: number; mtimeMs: number };
  /** Where it is indexed; undefined once sealed (or for moves, never indexed). */
  node?: PathNode;
}

/** A trie of the pending paths, for "the entries at or below this path" in time proportional
 * to their number. */
interface PathNode {
  name: string;
  parent: PathNode | null;
  children: Map<string, PathNode> | null;
  entries: Entry[] | null;
}

/**
 * The pending changes, in delivery order, with per-path coalescing. Order is the order of the
 * last event of each entry; an entry touched again moves to the end (delivering a change later
 * is always safe, earlier is not). The rules:
 *
 * - upsert p: replaces a pending upsert p (keeping its first-event time) and a pending file
 *   delete p (a file replaced by a new one);
 * - delete p: replaces every pending upsert, delete and rescan at p (for a folder: at or below
 *   p); a pending upsert of a file created and deleted within the delay gives a harmless delete;
 * - move a→b: never merged (a swap through a third name must stay three moves). Pending upserts
 *   and rescans at or below a describe content now at b: they are re-aimed at b and placed after
 *   the move (so the consumer moves, then pushes the new content). Other entries at or below a
 *   stay before the move and are sealed: nothing later merges with them, since the move reads
 *   what the destination holds at a at that point;
 * - rescan p: replaces pending upserts and rescans at or below p.
 *
 * Everything else is kept as it came, in order; so the consumer, applying the changes in order,
 * ends with the tree as it is.
 */
class ChangeQueue {
  private readonly order = new Set<Entry>();
  private readonly root: PathNode = { name: '', parent: null, children: null, entries: null };

  constructor(
    private readonly now: () => number,
    private readonly debounceMs: number,
    private readonly maxDelayMs: number,
  ) {}

  get size(): number {
    return this.order.size;
  }

  first(): Entry | undefined {
    return this.order.values().next().value;
  }

  clear(): void {
    this.order.clear();
    this.root.children = null;
    this.root.entries = null;
  }

  upsert(p: string, scanned: boolean, first?: number): void {
    let f = first ?? this.now();
    for (const e of this.at(p)) {
      if (e.change.kind === 'upsert') {
        f = Math.min(f, e.first);
        this.remove(e);
      } else if (e.change.kind === 'delete' && !e.change.isDir) {
        this.remove(e);
      }
    }
    this.push({ kind: 'upsert', path: p }, f, scanned, p);
  }

  delete(p: string, isDir: boolean): void {
    let dir = isDir;
    for (const e of isDir ? this.atOrBelow(p) : this.at(p)) {
      // A folder deleted, then a file of the same name: the delete must stay recursive.
      if ((e.change.kind === 'delete' && e.change.isDir) || e.change.kind === 'rescan') dir = true;
      this.remove(e);
    }
    this.push({ kind: 'delete', path: p, isDir: dir }, this.now(), false, p);
  }

  move(from: string, to: string, isDir: boolean): void {
    const carried: Entry[] = [];
    for (const e of isDir ? this.atOrBelow(from) : this.at(from)) {
      if (e.change.kind === 'upsert' || e.change.kind === 'rescan') {
        this.remove(e);
        carried.push(e);
      } else {
        this.unindex(e); // sealed
      }
    }
    this.push({ kind: 'move', from, to, isDir }, this.now(), false, undefined);
    for (const e of carried) {
      const c = e.change as Extract<Change, { kind: 'upsert' | 'rescan' }>;
      const p = to + c.path.slice(from.length);
      if (c.kind === 'upsert') this.upsert(p, e.scanned, e.first);
      else this.rescan(p, c.reason);
    }
  }

  rescan(p: string, reason: RescanReason): void {
    for (const e of this.atOrBelow(p)) {
      if (e.change.kind === 'upsert' || e.change.kind === 'rescan') this.remove(e);
    }
    this.push({ kind: 'rescan', path: p, reason }, this.now(), false, p);
  }

  remove(e: Entry): void {
    this.order.delete(e);
    this.unindex(e);
  }

  /** Puts back an entry taken from the front, at the end, one delay later. */
  requeue(e: Entry): void {
    e.due = this.now() + this.debounceMs;
    this.order.add(e);
    if (e.change.kind === 'upsert') {
      // Nothing for this path can have arrived meanwhile (all of this runs synchronously).
      this.index(e, e.change.path);
    }
  }

  private push(change: Change, first: number, scanned: boolean, key: string | undefined): void {
    const t = this.now();
    const due = t - first >= this.maxDelayMs ? t : t + this.debounceMs;
    const e: Entry = { change, due, first, scanned };
    this.order.add(e);
    if (key !== undefined) this.index(e, key);
  }

  private at(p: string): Entry[] {
    return [...(this.find(p)?.entries ?? [])];
  }

  private atOrBelow(p: string): Entry[] {
    const top = this.find(p);
    const out: Entry[] = [];
    if (top === undefined) return out;
    const stack = [top];
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (n.entries) out.push(...n.entries);
      if (n.children) stack.push(...n.children.values());
    }
    return out;
  }

  private find(p: string): PathNode | undefined {
    let n: PathNode | undefined = this.root;
    if (p === '') return n;
    for (const part of p.split('/')) {
      n = n.children?.get(part);
      if (n === undefined) return undefined;
    }
    return n;
  }

  private index(e: Entry, p: string): void {
    let n = this.root;
    if (p !== '') {
      for (const part of p.split('/')) {
        let c = n.children?.get(part);
        if (c === undefined) {
          c = { name: part, parent: n, children: null, entries: null };
          (n.children ??= new Map()).set(part, c);
        }
        n = c;
      }
    }
    (n.entries ??= []).push(e);
    e.node = n;
  }

  private unindex(e: Entry): void {
    let n = e.node;
    if (n === undefined) return;
    e.node = undefined;
    if (n.entries) {
      const i = n.entries.indexOf(e);
      if (i >= 0) n.entries.splice(i, 1);
      if (n.entries.length === 0) n.entries = null;
    }
    // Prune the branch that no longer leads to anything.
    while (n.parent !== null && n.entries === null && n.children === null) {
      const p: PathNode = n.parent;
      p.children!.delete(n.name);
      if (p.children!.size === 0) p.children = null;
      n = p;
    }
  }
}

// ---- exclusions ----------------------------------------------------------------------------

/**
 * Converts an rclone filter glob to a RegExp matched against a path relative to the root (a
 * folder with a trailing `/`). As in rclone: a leading `/` anchors it at the root, otherwise it
 * matches whole trailing path elements at any depth (`*.tmp` matches `a/b/c.tmp`, `b/c.tmp`
 * matches `a/b/c.tmp`); `*` matches within one path element, `**` across them, `?` one
 * character other than `/`, `[...]` a class (`[!...]` or `[^...]` negated), `{a,b}`
 * alternatives, `{{regexp}}` a raw regular expression, `\` escapes the next character.
 */
export function globToRegExp(glob: string): RegExp {
  let g = glob;
  let re = '(?:^|/)';
  if (g.startsWith('/')) {
    g = g.slice(1);
    re = '^';
  }
  let braces = 0;
  let i = 0;
  const bad = (why: string) => new Error(`bad glob pattern ${JSON.stringify(glob)}: ${why}`);
  while (i < g.length) {
    const c = g[i]!;
    if (c === '\\') {
      if (i + 1 >= g.length) throw bad('it ends with \\');
      re += escapeRe(g[i + 1]!);
      i += 2;
    } else if (c === '*') {
      let n = 1;
      while (g[i + n] === '*') n++;
      if (n > 2) throw bad('too many stars');
      re += n === 2 ? '.*' : '[^/]*';
      i += n;
    } else if (c === '?') {
      re += '[^/]';
      i++;
    } else if (c === '[') {
      const [cls, next] = charClass(g, i, bad);
      re += cls;
      i = next;
    } else if (c === ']') {
      throw bad("mismatched ']'");
    } else if (c === '{' && g[i + 1] === '{') {
      const end = g.indexOf('}}', i + 2);
      if (end < 0) throw bad("mismatched '{{' and '}}'");
      const raw = g.slice(i + 2, end);
      try {
        new RegExp(raw);
      } catch {
        throw bad(`bad regular expression ${JSON.stringify(raw)}`);
      }
      re += `(?:${raw})`;
      i = end + 2;
    } else if (c === '{') {
      braces++;
      re += '(?:';
      i++;
    } else if (c === '}') {
      if (braces === 0) throw bad("mismatched '{' and '}'");
      braces--;
      re += ')';
      i++;
    } else if (c === ',' && braces > 0) {
      re += '|';
      i++;
    } else {
      re += escapeRe(c);
      i++;
    }
  }
  if (braces !== 0) throw bad("mismatched '{' and '}'");
  return new RegExp(`${re}$`);
}

const POSIX_CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z',
  digit: '0-9',
  alnum: 'a-zA-Z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: '\\s',
  punct: '!-\\/:-@\\[-`{-~',
  xdigit: '0-9A-Fa-f',
  word: '\\w',
};

function charClass(g: string, start: number, bad: (why: string) => Error): [string, number] {
  let i = start + 1;
  let out = '[';
  if (g[i] === '!' || g[i] === '^') {
    out += '^';
    i++;
  }
  if (g[i] === ']') {
    out += '\\]';
    i++;
  }
  while (i < g.length && g[i] !== ']') {
    const c = g[i]!;
    if (c === '[' && g[i + 1] === ':') {
      const end = g.indexOf(':]', i + 2);
      const name = end < 0 ? undefined : g.slice(i + 2, end);
      const cls = name === undefined ? undefined : POSIX_CLASSES[name];
      if (cls === undefined) throw bad(`unknown character class in ${g.slice(i)}`);
      out += cls;
      i = end + 2;
    } else if (c === '\\') {
      if (i + 1 >= g.length) throw bad('it ends with \\');
      out += `\\${g[i + 1]}`;
      i += 2;
    } else {
      out += c === '[' || c === '/' ? `\\${c}` : c;
      i++;
    }
  }
  if (i >= g.length) throw bad("mismatched '[' and ']'");
  return [`${out}]`, i + 1];
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}

/** The pull half's files being downloaded, and the daemon's own folder: never pushed as files. */
export const notMirrored = (rel: string, isDir: boolean) =>
  rel.endsWith(PARTIAL_SUFFIX) ||
  (isDir && rel === BOOKKEEPING_DIR) ||
  rel.startsWith(`${BOOKKEEPING_DIR}/`);

/**
 * The exclusions of one source (`sources.*.exclude_patterns` and `exclude_paths`) as
 * `exclude(relPath, isDir)`, with rclone's filter meaning (what people who used rclone expect),
 * on top of what is never mirrored (`notMirrored`), for the watcher and reconciliation alike:
 * - a pattern is an rclone filter glob (see globToRegExp): without `/` it matches the base name
 *   at any depth (`*.tmp`, `.DS_Store`); with a leading `/` it is anchored at the root. A
 *   pattern applies to files, except one ending in `/` (folders only: `cache/` excludes every
 *   folder named cache and all below it) or containing `**` (both);
 * - a path (`someone@example.com/My Drive/Scratch`) excludes that folder and everything below
 *   it (rclone `--exclude /path/**`).
 * A folder is tested with a trailing `/`, as rclone does; what is inside an excluded folder is
 * not watched at all.
 */
export function globExcluder(
  patterns: string[],
  paths: string[] = [],
): (relPath: string, isDir: boolean) => boolean {
  const rules: { re: RegExp; file: boolean; dir: boolean }[] = [];
  const add = (glob: string) => {
    let g = glob;
    let dir = g.endsWith('/');
    let file = !dir;
    if (dir) g += '**';
    if (g.includes('**')) dir = file = true;
    rules.push({ re: globToRegExp(g), file, dir });
  };
  for (const p of patterns) if (p.trim() !== '') add(p);
  for (const p of paths) {
    const trimmed = p.replace(/^\/+|\/+$/g, '');
    // As rclone's `--exclude /path/**` would: a path is itself read as a glob.
    if (trimmed !== '') add(`/${trimmed}/**`);
  }
  return (relPath, isDir) => {
    if (notMirrored(relPath, isDir)) return true;
    const s = isDir ? `${relPath}/` : relPath;
    for (const r of rules) if ((isDir ? r.dir : r.file) && r.re.test(s)) return true;
    return false;
  };
}
