/**
 * What a new appliance needs to take over from this one, kept at every destination under
 * `.backupd/` (CONTRACT.md): the state (file list, hashes, accounts, history) and the
 * configuration without its secrets. `backupd sync --once` copies it at the end of each pass;
 * the running daemon shortly after it starts and then every few hours.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import type { ConfigView } from '../config/index.js';
import { BOOKKEEPING_DIR } from '../mirror/watcher.js';
import type { State } from '../state/index.js';
import type { DestinationRemote } from './destinations.js';
import { fixFor } from './fixes.js';
import { runRclone } from './rclone.js';

export async function pushMetadata(
  remote: DestinationRemote,
  state: State,
  view: ConfigView,
  /** Mirror folders whose own bookkeeping (the Drive manifests) goes beside them. */
  sourceRoots: string[] = [],
): Promise<{ ok: boolean; error?: { message: string; fix?: string } }> {
  for (const root of sourceRoots) {
    const own = join(root, BOOKKEEPING_DIR);
    if (!(await readdir(own).catch(() => undefined))) continue;
    const target = `${remote.remote}:${[remote.root, basename(root), BOOKKEEPING_DIR].filter(Boolean).join('/')}`;
    const r = await runRclone(['copy', own, target], { remotes: remote.env });
    if (r.code !== 0)
      return {
        ok: false,
        error: {
          message: `copying ${own} to the destination failed: ${r.tail.at(-1) ?? r.code}`,
          fix: fixFor(r.tail),
        },
      };
  }
  const dir = await mkdtemp(join(tmpdir(), 'backupd-meta-'));
  try {
    await state.snapshotTo(join(dir, 'state.db'));
    await writeFile(
      join(dir, 'config.yaml'),
      `# Configuration without secrets, written by backupd ${new Date().toISOString()}\n${stringify(view.config)}`,
    );
    const target = `${remote.remote}:${[remote.root, BOOKKEEPING_DIR].filter(Boolean).join('/')}`;
    const r = await runRclone(['copy', dir, target], { remotes: remote.env });
    if (r.code === 0) return { ok: true };
    const message = `copying the metadata to .backupd/ failed: ${r.tail.at(-1) ?? r.code}`;
    return { ok: false, error: { message, fix: fixFor(r.tail) } };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
