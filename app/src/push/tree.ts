/**
 * One whole-tree push of a mirror folder to a destination with `rclone sync`: what is new or
 * changed is sent, what was deleted or replaced is moved under `.trash/YYYY-MM-DD/`, never
 * deleted, and every file sent is then checked against the destination by hash.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { DestinationRemote } from './destinations.js';
import { BOOKKEEPING_DIR, PARTIAL_SUFFIX } from '../mirror/watcher.js';
import { fixFor } from './fixes.js';
import { runRclone, type RcloneLogLine } from './rclone.js';

export interface TreePushOptions {
  /** Absolute mirror folder, e.g. /srv/backup/google-drive. */
  sourceDir: string;
  remote: DestinationRemote;
  excludePatterns: string[];
  excludePaths: string[];
  retries: number;
  dryRun: boolean;
  now: Date;
  /** Allow emptying a destination folder when the mirror folder is empty. */
  allowEmptySource?: boolean;
  onLine?: (l: RcloneLogLine) => void;
  signal?: AbortSignal;
}

export interface TreePushResult {
  ok: boolean;
  transferred: string[];
  bytes: number;
  /** Files moved into the trash (deleted or replaced at the source). */
  trashed: string[];
  verified: number;
  error?: { message: string; fix?: string };
}

/** rclone's log lines for a file sent (or that would be, on a dry run). */
const SENT = /^(Copied \((new|replaced existing)\)|Skipped copy as --dry-run)/;
/** ... and for an old version going into the trash: a server-side move (local, SFTP) or copy + delete (S3). */
const TRASHED =
  /^(Moved \(server-side\)|Copied \(server-side copy\)|Moved into backup dir|Skipped move into backup dir)/;

export const remotePath = (remote: DestinationRemote, ...parts: string[]) =>
  `${remote.remote}:${[remote.root, ...parts]
    .filter(Boolean)
    .join('/')
    .replace(/\/{2,}/g, '/')}`;

export function excludeArgs(patterns: string[], paths: string[]): string[] {
  const args: string[] = ['--exclude', `*${PARTIAL_SUFFIX}`, '--exclude', `/${BOOKKEEPING_DIR}/**`];
  for (const p of patterns) args.push('--exclude', p);
  for (const p of paths) args.push('--exclude', `/${p.replace(/^\/+|\/+$/g, '')}/**`);
  return args;
}

export async function pushTree(o: TreePushOptions): Promise<TreePushResult> {
  const folder = basename(o.sourceDir);
  const dst = remotePath(o.remote, folder);
  const day = o.now.toISOString().slice(0, 10);
  const trash = remotePath(o.remote, '.trash', day, folder);

  let entries: string[];
  try {
    entries = await readdir(o.sourceDir);
  } catch {
    return failure(
      `the mirror folder ${o.sourceDir} does not exist`,
      'Check that the data disk is mounted; nothing was pushed, so nothing at the destination was touched.',
    );
  }
  if (entries.filter((e) => e !== BOOKKEEPING_DIR).length === 0 && !o.allowEmptySource) {
    if ((await objectCount(o.remote, dst, o.signal)) > 0) {
      return failure(
        `the mirror folder ${o.sourceDir} is empty but ${dst.replace(/^[^:]+:/, '')} at the destination holds files`,
        'If the data disk is not mounted, mount it. If everything was really deleted, push once with --allow-empty-source; the files will go to the trash, not away.',
      );
    }
  }

  const transferred: string[] = [];
  const trashed = new Set<string>();
  let bytes = 0;
  const result = (r: {
    verified: number;
    error?: { message: string; fix?: string };
  }): TreePushResult => ({
    ok: !r.error,
    transferred,
    bytes,
    trashed: [...trashed],
    verified: r.verified,
    ...(r.error ? { error: r.error } : {}),
  });
  const args = [
    'sync',
    o.sourceDir,
    dst,
    '--backup-dir',
    trash,
    '--retries',
    String(Math.max(1, o.retries)),
    '--low-level-retries',
    '10',
    '-v',
    ...excludeArgs(o.excludePatterns, o.excludePaths),
    ...(o.dryRun ? ['--dry-run'] : []),
  ];
  const sync = await runRclone(args, {
    remotes: o.remote.env,
    signal: o.signal,
    onLine: (l) => {
      if (l.object && SENT.test(l.msg)) transferred.push(l.object);
      else if (l.object && TRASHED.test(l.msg)) trashed.add(l.object);
      if (l.stats && typeof l.stats.bytes === 'number') bytes = l.stats.bytes;
      o.onLine?.(l);
    },
  });
  if (sync.code !== 0) {
    return result({
      verified: 0,
      error: {
        message: `rclone sync failed: ${sync.tail.at(-1) ?? `exit code ${sync.code}`}`,
        fix: fixFor(sync.tail),
      },
    });
  }
  if (o.dryRun || transferred.length === 0) return result({ verified: 0 });

  // Every file sent is checked by hash against what the destination now holds.
  const dir = await mkdtemp(join(tmpdir(), 'backupd-check-'));
  try {
    const list = join(dir, 'files');
    await writeFile(list, transferred.join('\n') + '\n');
    const check = await runRclone(['check', o.sourceDir, dst, '--one-way', '--files-from', list], {
      remotes: o.remote.env,
      signal: o.signal,
      onLine: o.onLine,
    });
    if (check.code !== 0) {
      return result({
        verified: 0,
        error: {
          message: `verification failed: ${check.tail.slice(-3).join('; ')}`,
          fix: 'The next push sends the differing files again. If it keeps failing, check the destination and the data disk.',
        },
      });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return result({ verified: transferred.length });
}

/** How many objects a destination folder holds (0 when it does not exist). */
async function objectCount(
  remote: DestinationRemote,
  dst: string,
  signal?: AbortSignal,
): Promise<number> {
  const r = await runRclone(['size', '--json', dst], { remotes: remote.env, signal, stdout: true });
  if (r.code !== 0) return 0;
  return Number((JSON.parse(r.stdout || '{}') as { count?: number }).count ?? 0);
}

function failure(message: string, fix?: string): TreePushResult {
  return {
    ok: false,
    transferred: [],
    bytes: 0,
    trashed: [],
    verified: 0,
    error: { message, ...(fix ? { fix } : {}) },
  };
}

/** Turns rclone's last error lines into advice. */
