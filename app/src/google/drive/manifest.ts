/**
 * The manifest of an account: one JSON line per Drive item, with what a restore needs and a
 * file system cannot carry (Drive id, owners, sharing, description, starred, times, original
 * name, checksums, the local path given). Written atomically under the daemon's own folder.
 */
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { DriveItemRecord } from '../../state/index.js';

export function manifestPath(dir: string, email: string): string {
  return join(dir, 'drive', `${email}.jsonl`);
}

export async function writeManifest(
  dir: string,
  email: string,
  items: DriveItemRecord[],
  paths: Map<string, string>,
): Promise<string> {
  const file = manifestPath(dir, email);
  await mkdir(join(dir, 'drive'), { recursive: true });
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    const sorted = [...items].sort((a, b) => a.file_id.localeCompare(b.file_id));
    let buf = '';
    for (const r of sorted) {
      const m = { ...(r.meta ?? {}) };
      delete m.exportLinks;
      buf +=
        JSON.stringify({
          id: r.file_id,
          name: r.name,
          path: paths.get(r.file_id) ?? null,
          mimeType: r.mime_type,
          kind: r.kind,
          size: r.size,
          md5: r.md5,
          sha256: r.sha256,
          version: r.version,
          state: r.state,
          ...(r.note ? { note: r.note } : {}),
          ...m,
        }) + '\n';
      if (buf.length > 1 << 20) {
        await fh.write(buf);
        buf = '';
      }
    }
    await fh.write(buf);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  return file;
}
