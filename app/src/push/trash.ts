/**
 * Trash retention: `.trash/YYYY-MM-DD/` folders at a destination older than the retention
 * period are purged, once a day. Only folders whose name is a date are ever touched.
 */
import type { Rc } from './engine.js';
import type { DestinationRemote } from './destinations.js';

export async function purgeTrash(
  rc: Rc,
  remote: DestinationRemote,
  retentionDays: number,
  now: Date,
): Promise<string[]> {
  const trash = `${remote.remote}:${[remote.root, '.trash'].filter(Boolean).join('/')}`;
  // Asked first so that a destination without a trash yet is not an error in rclone's log.
  const base = `${remote.remote}:${remote.root}`;
  const there = await rc
    .call<{ item: unknown }>('operations/stat', { fs: base, remote: '.trash' })
    .catch(() => ({ item: null }));
  if (!there.item) return [];
  let list: { list: { Name: string; IsDir: boolean }[] };
  try {
    list = await rc.call('operations/list', { fs: trash, remote: '', opt: { dirsOnly: true } });
  } catch (err) {
    if ((err as { status?: number }).status === 404 || /not found/i.test((err as Error).message))
      return [];
    throw err;
  }
  const cutoff = new Date(now.getTime() - retentionDays * 86_400_000).toISOString().slice(0, 10);
  const old = list.list
    .filter((e) => e.IsDir && /^\d{4}-\d{2}-\d{2}$/.test(e.Name) && e.Name < cutoff)
    .map((e) => e.Name)
    .sort();
  for (const day of old) await rc.call('operations/purge', { fs: trash, remote: day });
  return old;
}
