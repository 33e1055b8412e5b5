// The rsync delta sender without a server: its command line, rsync's statistics, and what each
// failure (as rsync 3.x and OpenSSH 9 word it) tells the owner to do.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText, resolveRuntime } from '../../src/config/index.js';
import { describeDestination } from '../../src/push/destinations.js';
import {
  classify,
  DELTA_MIN_BYTES,
  deltaWorthIt,
  fsPath,
  parseStats,
  rsyncArgs,
  RsyncError,
  sendDelta,
  sshTargetOf,
  type DeltaRequest,
} from '../../src/push/rsync.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-rsync-unit-');

const ssh = {
  host: 'u1.your-storagebox.de',
  port: 23,
  user: 'u1',
  keyFile: '/etc/backupd/box key',
  knownHostsFile: "/etc/backupd/it's known_hosts",
};
const req = (extra: Partial<DeltaRequest> = {}): DeltaRequest => ({
  ssh,
  mirrorDir: '/srv/mirror/google-drive',
  relPath: 'vm/disk.img',
  remoteDir: 'backup/google-drive',
  trashDir: 'backup/.trash/2026-11-24/google-drive',
  ...extra,
});

const STATS = `
Number of files: 2 (reg: 1, dir: 1)
Number of created files: 0
Number of deleted files: 0
Number of regular files transferred: 1
Total file size: 8,388,608 bytes
Total transferred file size: 8,388,608 bytes
Literal data: 5,792 bytes
Matched data: 8,382,816 bytes
File list size: 0
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 17,483
Total bytes received: 17,417

sent 17,483 bytes  received 17,417 bytes  69,800.00 bytes/sec
total size is 8,388,608  speedup is 240.36
`;

const CLOSED =
  'rsync: connection unexpectedly closed (0 bytes received so far) [sender]\nrsync error: error in rsync protocol data stream (code 12) at io.c(285) [sender=3.5.0]\n';
const ctx = { ssh, remoteDir: 'backup/google-drive', timeoutSeconds: 120 };

describe('deltaWorthIt', () => {
  it('sends a delta only for a large file whose previous version is there and large too', () => {
    expect(deltaWorthIt(DELTA_MIN_BYTES, DELTA_MIN_BYTES)).toBe(true);
    expect(deltaWorthIt(50 * 2 ** 30, 50 * 2 ** 30)).toBe(true);
    expect(deltaWorthIt(DELTA_MIN_BYTES - 1, DELTA_MIN_BYTES)).toBe(false);
    expect(deltaWorthIt(8 * DELTA_MIN_BYTES, undefined)).toBe(false);
    expect(deltaWorthIt(8 * DELTA_MIN_BYTES, null)).toBe(false);
    expect(deltaWorthIt(8 * DELTA_MIN_BYTES, 1000)).toBe(false);
  });
});

describe('rsyncArgs', () => {
  it('sends the file under its mirror path with the trash as a backup dir relative to the folder', () => {
    const args = rsyncArgs(req({ bwlimitKiBps: 512.7, timeoutMs: 45_500, compress: true }));
    expect(args).toContain('--backup');
    expect(args).toContain('--backup-dir=../.trash/2026-11-24/google-drive');
    expect(args).toContain('-s');
    expect(args).toContain('--times');
    expect(args).toContain('--timeout=46');
    expect(args).toContain('--bwlimit=512');
    expect(args).toContain('--compress');
    expect(args).not.toContain('--partial');
    expect(args).not.toContain('--inplace');
    expect(args.slice(-3)).toEqual([
      '--',
      '/srv/mirror/google-drive/./vm/disk.img',
      'u1@u1.your-storagebox.de:backup/google-drive/',
    ]);
  });

  it('works from the login home when there is no root folder', () => {
    const args = rsyncArgs(req({ remoteDir: 'google-drive', trashDir: '.trash/D/google-drive' }));
    expect(args).toContain('--backup-dir=../.trash/D/google-drive');
    expect(args.at(-1)).toBe('u1@u1.your-storagebox.de:google-drive/');
  });

  it('quotes the ssh command for rsync, which splits it without a shell', () => {
    const args = rsyncArgs(req());
    const rsh = args[args.indexOf('-e') + 1]!;
    expect(rsh).toContain("'-i' '/etc/backupd/box key'");
    expect(rsh).toContain("'UserKnownHostsFile=/etc/backupd/it''s known_hosts'");
    expect(rsh).toContain("'StrictHostKeyChecking=yes'");
    expect(rsh).toContain("'BatchMode=yes'");
    expect(rsh).toContain("'-p' '23'");
  });

  it('refuses paths that leave their folder and hosts that look like options', () => {
    const kind = (r: DeltaRequest) => {
      try {
        rsyncArgs(r);
        return 'accepted';
      } catch (err) {
        return (err as RsyncError).kind + ': ' + (err as RsyncError).message;
      }
    };
    expect(kind(req({ relPath: '../etc/passwd' }))).toMatch(/^invalid-request: relPath .* "\.\."/);
    expect(kind(req({ relPath: '' }))).toMatch(/^invalid-request: relPath is empty/);
    expect(kind(req({ trashDir: 'backup/google-drive/.trash' }))).toMatch(/outside/);
    expect(kind(req({ ssh: { ...ssh, host: '-oProxyCommand=sh' } }))).toMatch(/not a host name/);
    expect(kind(req({ ssh: { ...ssh, user: '-l' } }))).toMatch(/not a user name/);
    expect(kind(req({ ssh: { ...ssh, port: 0 } }))).toMatch(/not a port/);
  });
});

describe('parseStats', () => {
  it("reads rsync's --stats block", () => {
    expect(parseStats(STATS)).toEqual({
      filesTransferred: 1,
      fileSize: 8388608,
      literalBytes: 5792,
      matchedBytes: 8382816,
      bytesSent: 17483,
      bytesReceived: 17417,
    });
    expect(parseStats('sent 1 bytes')).toBeUndefined();
  });
});

describe('classify', () => {
  const kind = (code: number, stderr: string) => classify(code, stderr, ctx);

  it('tells an unknown host key from a changed one, whatever the exit code', () => {
    const unknown = kind(
      12,
      'No ED25519 host key is known for [u1.your-storagebox.de]:23 and you have requested strict checking.\nHost key verification failed.\n' +
        CLOSED,
    );
    expect(unknown.kind).toBe('host-key-unknown');
    expect(unknown.fix).toContain(
      "ssh-keyscan -p 23 u1.your-storagebox.de >> /etc/backupd/it's known_hosts",
    );
    const changed = kind(
      255,
      '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key for [u1.your-storagebox.de]:23 has changed and you have requested strict checking.\nHost key verification failed.\n',
    );
    expect(changed.kind).toBe('host-key-changed');
    expect(changed.retryable).toBe(false);
  });

  it('names key, login and network problems', () => {
    expect(kind(255, 'u1@u1.your-storagebox.de: Permission denied (publickey).\n').kind).toBe(
      'auth',
    );
    const open = kind(
      12,
      'Permissions 0644 for \'/etc/backupd/box key\' are too open.\nLoad key "/etc/backupd/box key": bad permissions\nu1@h: Permission denied (publickey).\n',
    );
    expect(open.kind).toBe('key-file');
    expect(open.fix).toBe('chmod 600 /etc/backupd/box key (ssh refuses a key others can read).');
    expect(
      kind(255, 'ssh: connect to host u1.your-storagebox.de port 23: Connection refused\n').kind,
    ).toBe('unreachable');
    expect(
      kind(255, 'ssh: Could not resolve hostname u1.your-storagebox.de: Name or service not known')
        .retryable,
    ).toBe(true);
  });

  it('falls back to whole uploads when the server has no rsync or the stream breaks', () => {
    const missing = kind(127, 'sh: 1: rsync: not found\n' + CLOSED);
    expect(missing.kind).toBe('rsync-missing-remote');
    expect(missing.fallback).toBe(true);
    expect(kind(12, 'Command not found\n' + CLOSED).kind).toBe('rsync-missing-remote');
    const protocol = kind(12, 'protocol version mismatch -- is your shell clean?\n' + CLOSED);
    expect(protocol.kind).toBe('protocol');
    expect(protocol.fallback).toBe(true);
    expect(
      kind(
        11,
        'rsync: [Receiver] mkdir "/home/backup/google-drive" failed: No such file or directory (2)\n',
      ).kind,
    ).toBe('no-folder');
  });

  it('maps full disks, timeouts and partial transfers', () => {
    expect(
      kind(11, 'rsync: [Receiver] write failed on "/home/x": No space left on device (28)\n').kind,
    ).toBe('disk-full');
    const timeout = kind(30, '[sender] io timeout after 120 seconds -- exiting\n');
    expect(timeout.kind).toBe('timeout');
    expect(timeout.message).toContain('120 s');
    expect(kind(24, 'file has vanished: "/srv/mirror/x"\n').kind).toBe('vanished');
    expect(kind(23, 'rsync: [Receiver] rename "/x" failed: Permission denied (13)\n').kind).toBe(
      'permission',
    );
    const unreadable = kind(
      23,
      'rsync: [sender] send_files failed to open "/srv/mirror/x": Permission denied (13)\n',
    );
    expect(unreadable.kind).toBe('permission');
    expect(unreadable.message).toContain('cannot read the mirror file');
    const partial = kind(23, 'rsync: some error\nrsync error: some files could not be transferred');
    expect(partial.kind).toBe('partial');
    expect(partial.message).toContain('rsync: some error');
  });
});

describe('sendDelta without a server', () => {
  it('says rsync is missing, and refuses links before anything runs', async () => {
    const dir = path.join(tmp(), 'google-drive');
    mkdirSync(path.join(dir, 'vm'), { recursive: true });
    writeFileSync(path.join(dir, 'vm', 'disk.img'), 'x');
    const local = { ...ssh, keyFile: undefined, knownHostsFile: undefined };
    const err = await sendDelta(
      req({ ssh: local, mirrorDir: dir, binary: '/nonexistent/rsync' }),
    ).catch((e: unknown) => e as RsyncError);
    expect(err).toBeInstanceOf(RsyncError);
    expect((err as RsyncError).kind).toBe('rsync-missing');
    expect((err as RsyncError).fix).toContain('apt-get install rsync openssh-client');

    symlinkSync('/etc/passwd', path.join(dir, 'vm', 'passwd'));
    const link = await sendDelta(req({ ssh: local, mirrorDir: dir, relPath: 'vm/passwd' })).catch(
      (e: unknown) => e as RsyncError,
    );
    expect((link as RsyncError).kind).toBe('unsafe-path');

    const noKey = await sendDelta(
      req({ ssh: { ...ssh, keyFile: path.join(dir, 'no-such-key') }, mirrorDir: dir }),
    ).catch((e: unknown) => e as RsyncError);
    expect((noKey as RsyncError).kind).toBe('key-file');
    expect((noKey as RsyncError).message).toContain('destinations.eu_provider.ssh_key_file');
  });

  it('does not start when already aborted', async () => {
    const dir = path.join(tmp(), 'google-drive');
    mkdirSync(path.join(dir, 'vm'), { recursive: true });
    writeFileSync(path.join(dir, 'vm', 'disk.img'), 'x');
    const err = await sendDelta(
      req({
        ssh: { ...ssh, keyFile: undefined, knownHostsFile: undefined },
        mirrorDir: dir,
        signal: AbortSignal.abort(),
      }),
    ).catch((e: unknown) => e as RsyncError);
    expect((err as RsyncError).kind).toBe('aborted');
  });
});

describe('sshTargetOf', () => {
  it('reads the Storage Box login from the settings its rclone remote is made of', () => {
    const yaml =
      'destinations:\n  eu_provider:\n    enabled: true\n    type: hetzner_storage_box\n    host: u1.your-storagebox.de\n    user: u1\n    ssh_key_file: /etc/backupd/box_key\n    known_hosts_file: /etc/backupd/known_hosts\n    path: backup\n';
    const file = path.join(tmp(), 'config.yaml');
    writeFileSync(file, yaml);
    const runtime = resolveRuntime({ ...parseConfigText(yaml, file), file }, {});
    const d = describeDestination(runtime, 'eu_provider');
    expect(sshTargetOf(d.sftp)).toEqual({
      host: 'u1.your-storagebox.de',
      port: 23,
      user: 'u1',
      keyFile: '/etc/backupd/box_key',
      knownHostsFile: '/etc/backupd/known_hosts',
    });
    expect(sshTargetOf(undefined)).toBe(undefined);
    expect(fsPath('BKP_EU_PROVIDER:backup/.trash/2026-11-24/google-drive')).toBe(
      'backup/.trash/2026-11-24/google-drive',
    );
  });
});
