/**
 * What the watcher saw, turned into the state's view of the mirror and into queued changes:
 * a changed file is hashed once (only when its size or time changed), a rename stays a rename,
 * a deleted folder deletes every file the state knew below it, and lost events are reconciled.
 */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { NewChange, State } from '../state/index.js';
import { reconcile, recordFile, sameFacts } from './reconcile.js';
import type { Change } from './watcher.js';

export interface IngestContext {
  source: string;
  root: string;
  state: State;
  exclude: (relPath: string, isDir: boolean) => boolean;
  /** Where the changes go (the queue's intake). */
  submit: (changes: NewChange[]) => Promise<void>;
  onWarning?: (message: string, detail?: Record<string, unknown>) => void;
  now?: () => number;
}

export async function ingest(ctx: IngestContext, changes: Change[]): Promise<void> {
  const now = ctx.now ?? Date.now;
  const out: NewChange[] = [];
  const flush = async () => {
    if (out.length) await ctx.submit(out.splice(0));
  };
  for (const c of changes) {
    if (c.kind === 'upsert') {
      const change = await upsert(ctx, c.path, now);
      if (change) out.push(change);
    } else if (c.kind === 'delete') {
      if (c.isDir) {
        const below: string[] = [];
        for await (const f of ctx.state.files.present(ctx.source, c.path)) below.push(f.rel_path);
        for (const rel of below) {
          await ctx.state.files.markDeleted(ctx.source, rel, now());
          out.push({ source: ctx.source, rel_path: rel, op: 'delete' });
        }
      } else {
        const prev = await ctx.state.files.get(ctx.source, c.path);
        if (prev?.state === 'present') {
          await ctx.state.files.markDeleted(ctx.source, c.path, now());
          out.push({ source: ctx.source, rel_path: c.path, op: 'delete' });
        }
      }
    } else if (c.kind === 'move') {
      const moved = await ctx.state.files.move(ctx.source, c.from, c.to, c.isDir, now());
      if (moved > 0) {
        out.push({
          source: ctx.source,
          rel_path: c.to,
          op: 'move',
          from_path: c.from,
          is_dir: c.isDir,
        });
        // Events tell the past, the mirror the present: what now stands at the new place may
        // differ from what the state moved there (written since, or moved on). Check it, which
        // costs a stat per file and a hash only where something differs.
        if (c.isDir) {
          await flush();
          await rescan(ctx, c.to);
        } else {
          const change = await upsert(ctx, c.to, now);
          if (change) out.push(change);
        }
      } else if (!c.isDir) {
        // The state never knew the old path (moved in before it was seen): a new file.
        const change = await upsert(ctx, c.to, now);
        if (change) out.push(change);
      } else {
        await flush();
        await rescan(ctx, c.to);
      }
    } else {
      await flush();
      await rescan(ctx, c.path);
    }
  }
  await flush();
}

async function upsert(
  ctx: IngestContext,
  rel: string,
  now: () => number,
): Promise<NewChange | undefined> {
  const file = join(ctx.root, rel);
  let st;
  try {
    st = await lstat(file);
  } catch {
    return undefined; // gone again: the watcher reports the deletion
  }
  if (!st.isFile()) return undefined;
  const facts = { size: st.size, mtime_ms: st.mtimeMs, inode: st.ino };
  const prev = await ctx.state.files.get(ctx.source, rel);
  if (prev?.state === 'present' && sameFacts(prev, facts)) return undefined;
  try {
    const r = await recordFile(ctx.state, ctx.source, ctx.root, rel, facts, prev, now());
    if (!r.changed) return undefined;
  } catch {
    return undefined; // gone or unreadable since the stat: the watcher reports what follows
  }
  return { source: ctx.source, rel_path: rel, op: 'upsert' };
}

async function rescan(ctx: IngestContext, subtree: string): Promise<void> {
  await reconcile({
    source: ctx.source,
    root: ctx.root,
    state: ctx.state,
    ...(subtree ? { subtree } : {}),
    exclude: ctx.exclude,
    onChanges: ctx.submit,
    onWarning: ctx.onWarning,
    now: ctx.now,
  });
}
