// Trash retention at a destination: day folders older than the retention period are purged,
// nothing else is touched.
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RcloneDaemon } from '../../src/push/rcd.js';
import { purgeTrash } from '../../src/push/trash.js';

let dir: string;
let rcd: RcloneDaemon | undefined;
afterAll(async () => {
  await rcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('purgeTrash', () => {
  it('purges only dated trash folders older than the retention', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'backupd-trash-'));
    const now = new Date('2026-11-24T12:00:00Z');
    for (const d of ['2026-10-01', '2026-10-24', '2026-10-26', '2026-11-24', 'keep-me']) {
      await mkdir(path.join(dir, 'backup', '.trash', d, 'google-drive'), { recursive: true });
      await writeFile(path.join(dir, 'backup', '.trash', d, 'google-drive', 'old.txt'), 'x');
    }
    await mkdir(path.join(dir, 'backup', 'google-drive'), { recursive: true });
    await writeFile(path.join(dir, 'backup', 'google-drive', 'live.txt'), 'x');
    rcd = await RcloneDaemon.start({ remotes: { RCLONE_CONFIG_T_TYPE: 'local' } });
    const remote = {
      remote: 'T',
      backend: 'local' as const,
      root: path.join(dir, 'backup'),
      env: {},
    };
    expect(await purgeTrash(rcd, remote, 30, now)).toEqual(['2026-10-01', '2026-10-24']);
    expect((await readdir(path.join(dir, 'backup', '.trash'))).sort()).toEqual([
      '2026-10-26',
      '2026-11-24',
      'keep-me',
    ]);
    expect(await readdir(path.join(dir, 'backup', 'google-drive'))).toEqual(['live.txt']);
    expect(
      await purgeTrash(rcd, { ...remote, root: path.join(dir, 'nothing-here') }, 30, now),
    ).toEqual([]);
  });
});
