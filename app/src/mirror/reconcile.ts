/**
 * Reconciliation: what changed on the mirror while nobody was watching (the daemon was down,
 * the kernel's event queue overflowed, a folder could not be watched). The mirror is walked
 * and compared with the state by size, modification time and inode; only files whose size or
 * time changed are hashed. A file that vanished from one path and appeared at another with the
 * same inode, size and time is a move, so the destinations can move it instead of re-sending it.
 */
import { createHash } from 'node:crypto';
import { lstat, open, opendir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileRecord, NewChange, State } from '../state/index.js';

export interface FileFacts {
  size: number;
  mtime_ms: number;
  inode: number;
}

export interface ReconcileOptions {
  source: string;
  /** The mirror folder of the source (absolute). */
  root: string;
  state: State;
  /** Only this folder (relative to root), e.g. after a watch could not be added there. */
  subtree?: string;
  /** Paths (relative, POSIX) that are never pushed. */
  exclude: (relPath: string, isDir: boolean) => boolean;
  /** Receives the changes found, in batches, in an order that is safe to apply. */
  onChanges: (changes: NewChange[]) => Promise<void>;
  onWarning?: (message: string, detail?: Record<string, unknown>) => void;
  now?: () => number;
  signal?: AbortSignal;
  /** Only tell the changes: the state is left as it is (`backupd sync --once --dry-run`). */
  dryRun?: boolean;
}

export interface ReconcileResult {
  scanned: number;
  hashed: number;
  bytesHashed: number;
  added: number;
  changed: number;
  moved: number;
  deleted: number;
}

const BATCH = 500;

/** Read buffers of `hashFile`, kept for the next file (at most `SPARE_BUFFERS`, 1 MiB in all). */
const spareBuffers: Buffer[] = [];
const READ_BUFFER = 256 * 1024;
const SPARE_BUFFERS = 4;

/**
 * SHA-256 and MD5 of a file in one read. The read buffer is reused from file to file: a read
 * stream allocates a fresh buffer of its highWaterMark for every read, the last (empty) one
 * included, so hashing 1000 small files made about 2 GiB of buffers that only V8's next garbage
 * collection released; meanwhile they stood in the process's memory (34-51 MiB at the peaks
 * bench/memory.mjs measured). The chunk size does not matter for speed: hashing dominates.
 */
export async function hashFile(
  file: string,
  signal?: AbortSignal,
): Promise<{ sha256: string; md5: string; size: number }> {
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  let size = 0;
  signal?.throwIfAborted();
  const buf = spareBuffers.pop() ?? Buffer.allocUnsafeSlow(READ_BUFFER);
  try {
    const fh = await open(file, 'r');
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        signal?.throwIfAborted();
        const chunk = buf.subarray(0, bytesRead);
        sha.update(chunk);
        md5.update(chunk);
        size += bytesRead;
      }
    } finally {
      await fh.close();
    }
  } finally {
    if (spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(buf);
  }
  return { sha256: sha.digest('hex'), md5: md5.digest('hex'), size };
}

/**
 * Hashes a mirror file and records it in the state. `changed` is false when the state already
 * had this content there (the file was only touched), so nothing needs pushing.
 */
export async function recordFile(
  state: State,
  source: string,
  root: string,
  rel: string,
  facts: FileFacts,
  prev: FileRecord | undefined,
  at: number,
  signal?: AbortSignal,
): Promise<{ size: number; changed: boolean; existed: boolean }> {
  const h = await hashFile(join(root, rel), signal);
  await state.files.upsert({
    source,
    rel_path: rel,
    ...facts,
    size: h.size,
    sha256: h.sha256,
    md5: h.md5,
    state: 'present',
    updated_at: at,
  });
  const had = prev?.state === 'present' ? prev : undefined;
  return { size: h.size, changed: !had || had.sha256 !== h.sha256, existed: !!had };
}

export const sameFacts = (a: Pick<FileRecord, 'size' | 'mtime_ms' | 'inode'>, b: FileFacts) =>
  a.size === b.size &&
  Math.abs(a.mtime_ms - b.mtime_ms) < 0.001 &&
  (a.inode === null || a.inode === b.inode);

/**
 * Walks the mirror folder depth-first with one open directory at a time per level, yielding
 * files (relative POSIX paths) and their facts. Symbolic links and special files are skipped
 * with a warning: the mirror holds plain files only.
 */
export async function* walk(
  root: string,
  start: string,
  exclude: ReconcileOptions['exclude'],
  onWarning: NonNullable<ReconcileOptions['onWarning']>,
): AsyncGenerator<{ rel: string } & FileFacts> {
  const stack = [start];
  while (stack.length) {
    const rel = stack.pop()!;
    let dir;
    try {
      dir = await opendir(join(root, rel));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT')
        onWarning(`cannot read the folder ${rel || '.'} on the mirror (${code}); it is skipped`, {
          path: rel,
        });
      continue;
    }
    for await (const e of dir) {
      const child = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!exclude(child, true)) stack.push(child);
      } else if (e.isFile()) {
        if (exclude(child, false)) continue;
        try {
          const st = await lstat(join(root, child));
          yield { rel: child, size: st.size, mtime_ms: st.mtimeMs, inode: st.ino };
        } catch {
          /* gone since the listing: the watcher reports it */
        }
      } else if (!exclude(child, false)) {
        onWarning(
          `${child} on the mirror is not a plain file (a link or a device); it is not pushed`,
          { path: child },
        );
      }
    }
  }
}

export async function reconcile(o: ReconcileOptions): Promise<ReconcileResult> {
  const now = o.now ?? Date.now;
  const warn = o.onWarning ?? (() => {});
  const result: ReconcileResult = {
    scanned: 0,
    hashed: 0,
    bytesHashed: 0,
    added: 0,
    changed: 0,
    moved: 0,
    deleted: 0,
  };
  let batch: NewChange[] = [];
  const emit = async (c: NewChange) => {
    batch.push(c);
    if (batch.length >= BATCH) {
      const out = batch;
      batch = [];
      await o.onChanges(out);
    }
  };

  // What the state knows of this part of the mirror, by path: ids only, to stay small.
  const known = new Map<string, number>();
  for await (const f of o.state.files.present(o.source, o.subtree)) known.set(f.rel_path, f.id);
  const firstScan = known.size === 0;
  /** Paths the state does not know, by inode: move candidates, settled after the walk. */
  const fresh = new Map<number, { rel: string } & FileFacts>();

  const record = async (rel: string, facts: FileFacts, prev: FileRecord | undefined) => {
    const r = o.dryRun
      ? await hashFile(join(o.root, rel), o.signal).then((h) => ({
          size: h.size,
          changed: prev?.state !== 'present' || prev.sha256 !== h.sha256,
          existed: prev?.state === 'present',
        }))
      : await recordFile(o.state, o.source, o.root, rel, facts, prev, now(), o.signal);
    result.hashed++;
    result.bytesHashed += r.size;
    if (!r.changed) return; // touched, not changed
    if (r.existed) result.changed++;
    else result.added++;
    await emit({ source: o.source, rel_path: rel, op: 'upsert' });
  };

  for await (const entry of walk(o.root, o.subtree ?? '', o.exclude, warn)) {
    o.signal?.throwIfAborted();
    result.scanned++;
    const { rel, ...facts } = entry;
    if (known.has(rel)) {
      known.delete(rel);
      const prev = await o.state.files.get(o.source, rel);
      if (prev && sameFacts(prev, facts)) continue;
      await record(rel, facts, prev);
    } else if (firstScan) {
      await record(rel, facts, undefined);
    } else {
      fresh.set(facts.inode, entry);
    }
  }

  // Whatever the state knows that the walk did not find moved or was deleted.
  for (const [rel] of known) {
    const prev = await o.state.files.get(o.source, rel);
    const twin = prev?.inode != null ? fresh.get(prev.inode) : undefined;
    if (prev && twin && sameFacts(prev, twin)) {
      fresh.delete(prev.inode!);
      if (!o.dryRun) await o.state.files.move(o.source, rel, twin.rel, false, now());
      result.moved++;
      await emit({ source: o.source, rel_path: twin.rel, op: 'move', from_path: rel });
    } else {
      if (!o.dryRun) await o.state.files.markDeleted(o.source, rel, now());
      result.deleted++;
      await emit({ source: o.source, rel_path: rel, op: 'delete' });
    }
  }
  for (const entry of fresh.values()) {
    const { rel, ...facts } = entry;
    await record(rel, facts, undefined);
  }
  if (batch.length) await o.onChanges(batch);
  return result;
}
