/**
 * The disk units' sandboxing, checked in the unit files themselves: the mistakes here only show
 * on a real appliance (the boot test), as a daemon stuck in standby with the disk mounted.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeMirrorFolders } from '../../src/daemon/appliance.js';
import { REPO_ROOT } from '../helpers/services.js';

const unitFile = (name: string) => readFileSync(path.join(REPO_ROOT, 'systemd', name), 'utf8');

/** `Key=value` lines of a unit, comments left out. */
const settings = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith('[') && l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);

// Each of these makes systemd run the unit in a mount namespace of its own.
const NAMESPACING =
  /^(PrivateTmp|PrivateMounts|PrivateDevices|ProtectHome|ProtectSystem|ProtectKernelTunables|ProtectKernelModules|ProtectKernelLogs|ProtectControlGroups|ProtectProc|ProcSubset|ReadWritePaths|ReadOnlyPaths|InaccessiblePaths|ExecPaths|NoExecPaths|TemporaryFileSystem|BindPaths|BindReadOnlyPaths|RootDirectory|RootImage|MountFlags|MountAPIVFS|PrivateNetwork|NetworkNamespacePath|LogNamespace)$/;

describe('the data disk units', () => {
  it.each(['backupd-disk-scan.service', 'backupd-disk-adopt.service'])(
    '%s mounts in the host namespace: no option that gives it a private one',
    (name) => {
      const found = settings(unitFile(name)).filter(
        ([k, v]) => NAMESPACING.test(k) && !/^(no|false|0)$/i.test(v),
      );
      expect(found).toEqual([]);
    },
  );

  it("lets the daemon's sandbox follow mounts at /srv/backup: its parent is bound, not the mount point", () => {
    const rw = settings(unitFile('backupd.service'))
      .filter(([k]) => k === 'ReadWritePaths')
      .flatMap(([, v]) => v.split(/\s+/))
      .map((p) => p.replace(/^[-+]/, ''));
    expect(rw).toContain('/srv');
    expect(rw).not.toContain('/srv/backup');
  });
});

describe('the mirror folders on a data disk just adopted', () => {
  it('are made for the sources that live on the disk, and only for them', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'backupd-mirror-'));
    const disk = path.join(root, 'srv-backup');
    const elsewhere = path.join(root, 'elsewhere', 'photos');
    mkdirSync(disk);
    const paths: Record<string, string> = {
      google_drive: path.join(disk, 'google-drive'),
      google_photos: elsewhere,
    };
    makeMirrorFolders({ sourcePath: (s) => paths[s]! }, disk);
    expect(readdirSync(disk)).toEqual(['google-drive']);
    expect(existsSync(elsewhere)).toBe(false);
    rmSync(root, { recursive: true, force: true });
  });
});
