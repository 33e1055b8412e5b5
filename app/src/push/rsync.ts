/**
 * rsync delta transfers to a Hetzner Storage Box: one mirror file at a time, over SSH, against
 * the version already at the destination.
 *
 * rclone uploads a changed file whole; a Storage Box also speaks rsync over SSH, which sends only
 * the blocks that changed (a VM disk, a mailbox, a database changed in part). The engine asks
 * `deltaWorthIt()` whether a file qualifies and then calls `sendDelta()` instead of rclone's
 * `operations/copyfile`; what it sends lands exactly where rclone would have put it, and the
 * version it replaces goes to the same place in the trash as rclone's BackupDir puts it.
 *
 * Paths at the destination are relative to the SSH login's home, as rclone's sftp paths are:
 * a Storage Box's home is the account's root (Hetzner wants no leading `/`), the test stand-in's
 * is the `root` of services.json. No absolute path on the server is ever needed: the trash is
 * given to rsync as a `--backup-dir` relative to the destination folder.
 */
import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { access, lstat } from 'node:fs/promises';
import { constants as os } from 'node:os';
import { posix, resolve as absolute } from 'node:path';
import type { SftpSettings } from './destinations.js';

/** How to log in to the Storage Box (the destination's sftp settings). */
export interface SshTarget {
  host: string;
  /** Used as configured (a Storage Box answers SSH and rsync on port 23). */
  port: number;
  user: string;
  /** Private key; without it ssh tries its default keys. */
  keyFile?: string;
  /** known_hosts that pins the server's key; without it ssh's own (~/.ssh/known_hosts). */
  knownHostsFile?: string;
}

export interface DeltaRequest {
  ssh: SshTarget;
  /** The source's mirror folder on this machine, e.g. /srv/backup/mirror/google-drive. */
  mirrorDir: string;
  /** The file's path under `mirrorDir`, `/`-separated (the queue's rel_path). */
  relPath: string;
  /**
   * The folder at the destination that mirrors `mirrorDir`, relative to the login home:
   * `<root>/<folder>` (the engine's `fs(d, source)` without its `REMOTE:` prefix; see fsPath).
   */
  remoteDir: string;
  /**
   * Today's trash of that folder, relative to the login home: `<root>/.trash/YYYY-MM-DD/<folder>`
   * (the engine's `trashFs(d, source)` without its prefix). The replaced version goes to
   * `<trashDir>/<relPath>`.
   */
  trashDir: string;
  /** Upload limit in KiB/s (rsync's --bwlimit); none when absent or 0. */
  bwlimitKiBps?: number;
  /** Give up when no data moves for this long (rsync's --timeout, ssh's ConnectTimeout). */
  timeoutMs?: number;
  /** Compress the literal data on the wire (the spec's rsync_options carry --compress). */
  compress?: boolean;
  /** Aborting kills rsync and its ssh; the destination keeps its previous version. */
  signal?: AbortSignal;
  /** The rsync program (tests point it elsewhere). */
  binary?: string;
}

export interface DeltaResult {
  /** Bytes this machine put on the wire (rsync's "Total bytes sent"). */
  bytesSent: number;
  /** Bytes that came back: the server's block checksums of the old version, mostly. */
  bytesReceived: number;
  /** Bytes of the file that had to be sent as they are (the changed parts). */
  literalBytes: number;
  /** Bytes of the file rebuilt at the destination from blocks of the old version. */
  matchedBytes: number;
  fileSize: number;
  seconds: number;
}

export type RsyncErrorKind =
  | 'invalid-request'
  | 'unsafe-path'
  | 'rsync-missing'
  | 'ssh-missing'
  | 'key-file'
  | 'host-key-unknown'
  | 'host-key-changed'
  | 'auth'
  | 'unreachable'
  | 'rsync-missing-remote'
  | 'protocol'
  | 'no-folder'
  | 'disk-full'
  | 'permission'
  | 'partial'
  | 'vanished'
  | 'timeout'
  | 'aborted'
  | 'not-sent'
  | 'failed';

/**
 * Kinds after which an ordinary whole-file upload (rclone over SFTP) still works, so the engine
 * should fall back to it rather than fail the item: the delta path itself is unavailable.
 */
const FALLBACK: ReadonlySet<RsyncErrorKind> = new Set([
  'rsync-missing',
  'ssh-missing',
  'rsync-missing-remote',
  'protocol',
  'no-folder',
  'not-sent',
]);

/** Kinds that a later attempt may get past by itself (the rest need a person). */
const RETRYABLE: ReadonlySet<RsyncErrorKind> = new Set([
  'unreachable',
  'partial',
  'vanished',
  'timeout',
  'aborted',
  'failed',
]);

export class RsyncError extends Error {
  override name = 'RsyncError';
  /** Whether a whole-file upload through rclone is the thing to do instead. */
  readonly fallback: boolean;
  /** Whether retrying later without changing anything may succeed. */
  readonly retryable: boolean;
  constructor(
    readonly kind: RsyncErrorKind,
    message: string,
    /** What a person does about it. */
    readonly fix: string,
    /** rsync's exit code, when it ran. */
    readonly exitCode?: number,
    /** The last lines rsync and ssh wrote, for the log. */
    readonly detail: string[] = [],
  ) {
    super(message);
    this.fallback = FALLBACK.has(kind);
    this.retryable = RETRYABLE.has(kind);
  }
}

// ---------------------------------------------------------------------------------------------
// When a delta is worth it
// ---------------------------------------------------------------------------------------------

/**
 * Below this a whole upload is cheaper. A delta costs a new SSH connection (TCP, key exchange,
 * authentication, an exec: 4 to 6 round trips, some 0.1 to 0.3 s to a box in Germany), an
 * rsync handshake, the block checksums coming back, and the server reading the whole old version
 * to make them; rclone's upload goes over a connection that is already open. On a home uplink
 * (10 to 40 Mbit/s, 1.2 to 5 MB/s) 1 MiB takes 0.2 to 0.8 s to send whole, about what the delta's
 * set-up costs, so from there on the delta wins, and by far for large files changed in part.
 */
export const DELTA_MIN_BYTES = 1024 * 1024;

/**
 * Whether to send a changed file as an rsync delta: only when the destination holds a previous
 * version at the same path (`previousSize`, from what the engine recorded as verified there),
 * since a delta against nothing is a whole upload plus the set-up, and only when both are large
 * enough (a small old version has too few blocks to match).
 */
export function deltaWorthIt(size: number, previousSize: number | null | undefined): boolean {
  return size >= DELTA_MIN_BYTES && (previousSize ?? 0) >= DELTA_MIN_BYTES;
}

// ---------------------------------------------------------------------------------------------
// Adapters to the engine's view of a destination
// ---------------------------------------------------------------------------------------------

/**
 * The SSH login of an sftp destination (the Storage Box), from the same settings its rclone
 * remote is made of, so that rsync and rclone can never disagree on host, port, user or keys.
 * Undefined for a destination that does not speak SSH (S3, local) or lacks host or user.
 */
export function sshTargetOf(sftp: SftpSettings | undefined): SshTarget | undefined {
  if (!sftp?.host || !sftp.user) return undefined;
  return {
    host: sftp.host,
    port: sftp.port,
    user: sftp.user,
    ...(sftp.keyFile ? { keyFile: sftp.keyFile } : {}),
    ...(sftp.knownHostsFile ? { knownHostsFile: sftp.knownHostsFile } : {}),
  };
}

/** The path part of an rclone file system string: `BKP_EU_PROVIDER:box/google-drive` → `box/google-drive`. */
export function fsPath(fs: string): string {
  const colon = fs.indexOf(':');
  return colon < 0 ? fs : fs.slice(colon + 1);
}

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

/** rsync's I/O timeout in whole seconds (default 2 minutes). */
const timeoutSecondsOf = (req: DeltaRequest) =>
  Math.max(1, Math.ceil((req.timeoutMs ?? 120_000) / 1000));

const invalid = (message: string, fix: string) => new RsyncError('invalid-request', message, fix);

/** Segments of a `/`-separated path, refusing what could leave the folder it is relative to. */
function segments(p: string, what: string, allowEmpty: boolean): string[] {
  if (p.includes('\0')) throw invalid(`${what} contains a NUL character`, 'Pass a real path.');
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..'))
    throw invalid(`${what} "${p}" contains "..".`, 'Pass a path without "..".');
  if (!allowEmpty && parts.length === 0) throw invalid(`${what} is empty.`, 'Pass a file path.');
  return parts;
}

/**
 * One argument of rsync's `-e` command. rsync splits that string itself (no shell): spaces
 * separate, and inside single quotes a doubled quote is a literal one. Every argument is quoted,
 * so a key file path with spaces or quotes reaches ssh as it is.
 */
const rshQuote = (arg: string) => `'${arg.replaceAll("'", "''")}'`;

/** The ssh command rsync runs: no user config, keys and host keys as configured, never a prompt. */
export function sshCommand(ssh: SshTarget, timeoutSeconds: number): string[] {
  const cmd = ['ssh', '-F', '/dev/null', '-p', String(ssh.port)];
  if (ssh.keyFile) cmd.push('-i', ssh.keyFile, '-o', 'IdentitiesOnly=yes');
  cmd.push(
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    // ssh would otherwise add the key it learns of a second address of the host by itself.
    '-o',
    'CheckHostIP=no',
    '-o',
    `ConnectTimeout=${Math.min(timeoutSeconds, 30)}`,
    // A dead connection (router reboot) is noticed even while rsync waits for the server.
    '-o',
    'ServerAliveInterval=15',
    '-o',
    'ServerAliveCountMax=4',
    '-o',
    'LogLevel=ERROR',
  );
  if (ssh.knownHostsFile) cmd.push('-o', `UserKnownHostsFile=${ssh.knownHostsFile}`);
  return cmd;
}

function checkTarget(ssh: SshTarget): void {
  if (!/^(?:[A-Za-z0-9_][A-Za-z0-9._-]*|\[?[0-9A-Fa-f:.]+\]?)$/.test(ssh.host))
    throw invalid(
      `"${ssh.host}" is not a host name.`,
      'Set destinations.eu_provider.host to the Storage Box host, e.g. u123456.your-storagebox.de.',
    );
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(ssh.user))
    throw invalid(
      `"${ssh.user}" is not a user name.`,
      'Set destinations.eu_provider.user to the Storage Box user, e.g. u123456.',
    );
  if (!Number.isInteger(ssh.port) || ssh.port < 1 || ssh.port > 65535)
    throw invalid(
      `${ssh.port} is not a port.`,
      'Set destinations.eu_provider.port (a Storage Box answers on 23).',
    );
}

/**
 * rsync's arguments for one file. `-R` with the `/./` marker makes the file's path under the
 * mirror folder the name rsync transfers, so the sub-folders are created as needed and the
 * backup lands at `<backup-dir>/<relPath>`, the layout of rclone's BackupDir.
 */
export function rsyncArgs(req: DeltaRequest): string[] {
  checkTarget(req.ssh);
  const rel = segments(req.relPath, 'relPath', false).join('/');
  const remoteDir = segments(req.remoteDir, 'remoteDir', true).join('/');
  const trashDir = segments(req.trashDir, 'trashDir', false).join('/');
  if (req.remoteDir.startsWith('/') !== req.trashDir.startsWith('/'))
    throw invalid(
      'remoteDir and trashDir must both be relative to the login home (or both absolute).',
      'Pass both as the engine builds them (root/folder and root/.trash/DAY/folder).',
    );
  const abs = req.remoteDir.startsWith('/') ? '/' : '';
  // A relative --backup-dir is relative to the destination folder, wherever the home is.
  const backupDir = posix.relative(`/${remoteDir}`, `/${trashDir}`);
  if (backupDir === '' || !backupDir.startsWith('..'))
    throw invalid(
      `the trash ${req.trashDir} must lie outside the destination folder ${req.remoteDir || '(home)'}.`,
      'Pass the trash of the destination root (root/.trash/DAY/folder).',
    );
  const timeoutSeconds = timeoutSecondsOf(req);
  const host =
    req.ssh.host.includes(':') && !req.ssh.host.startsWith('[')
      ? `[${req.ssh.host}]`
      : req.ssh.host;
  const args = [
    // Names travel inside rsync's protocol, never through the server's shell: spaces, quotes,
    // newlines, `*` and leading dashes arrive as they are. (-s is --protect-args, renamed
    // --secluded-args in rsync 3.3: the short name works with every version on either side.)
    '-s',
    '--times',
    '--relative',
    '--omit-dir-times',
    // The engine calls only for a changed file; this makes sure rsync's size-and-mtime quick
    // check cannot skip it (content changed, same size and mtime) and report success.
    '--ignore-times',
    '--no-whole-file',
    '--backup',
    `--backup-dir=${backupDir}`,
    // No --partial and no --inplace: the new version is built in a temporary file next to the
    // old one and renamed over it at the end, so an interrupted transfer never leaves a half file
    // at the final name. (A partial file kept for a retry would become the basis of the next
    // delta and lose the old version's blocks after the break point.)
    `--timeout=${timeoutSeconds}`,
    '--stats',
    '-e',
    sshCommand(req.ssh, timeoutSeconds).map(rshQuote).join(' '),
  ];
  if (req.bwlimitKiBps && req.bwlimitKiBps > 0)
    args.push(`--bwlimit=${Math.max(1, Math.floor(req.bwlimitKiBps))}`);
  if (req.compress) args.push('--compress');
  // No --links/--copy-links: a symlink is never followed or sent (sendDelta refuses one first).
  args.push(
    '--',
    // Absolute, so that neither a leading `-` nor a `:` in a name can make it an option or a host.
    `${absolute(req.mirrorDir)}/./${rel}`,
    `${req.ssh.user}@${host}:${abs}${remoteDir === '' ? '.' : remoteDir}/`,
  );
  return args;
}

/** rsync's environment: ours in the C locale (stats with `,` separators, English errors), minus
 * RSYNC_* variables (RSYNC_RSH, RSYNC_OLD_ARGS, ...) that would change what the arguments mean. */
function rsyncEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RSYNC_')) env[k] = v;
  return { ...env, LC_ALL: 'C', LANG: 'C' };
}

// ---------------------------------------------------------------------------------------------
// Reading rsync's answers
// ---------------------------------------------------------------------------------------------

export interface RsyncStats {
  filesTransferred: number;
  fileSize: number;
  literalBytes: number;
  matchedBytes: number;
  bytesSent: number;
  bytesReceived: number;
}

/** The figures of rsync's `--stats` block; undefined when it printed none. */
export function parseStats(out: string): RsyncStats | undefined {
  const num = (label: string) => {
    const m = new RegExp(`^${label}: ([\\d,.]+)`, 'm').exec(out);
    // Byte counts are whole numbers: `,` and `.` are only thousands separators.
    return m ? Number(m[1]!.replace(/[,.]/g, '')) : undefined;
  };
  const stats = {
    filesTransferred: num('Number of regular files transferred'),
    fileSize: num('Total file size'),
    literalBytes: num('Literal data'),
    matchedBytes: num('Matched data'),
    bytesSent: num('Total bytes sent'),
    bytesReceived: num('Total bytes received'),
  };
  if (Object.values(stats).some((v) => v === undefined || Number.isNaN(v))) return undefined;
  return stats as RsyncStats;
}

/**
 * What went wrong, from rsync's exit code and what rsync and ssh wrote. The text decides first:
 * an ssh failure shows as 255 or as 12 (rsync saw the connection close) depending on timing.
 */
export function classify(
  code: number,
  stderr: string,
  ctx: { ssh: SshTarget; remoteDir: string; timeoutSeconds: number },
): RsyncError {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const detail = lines.slice(-12);
  const has = (re: RegExp) => re.test(stderr);
  const { host, port, user } = ctx.ssh;
  const kh = ctx.ssh.knownHostsFile ?? '~/.ssh/known_hosts';
  const key = ctx.ssh.keyFile ?? 'the default ssh key';
  const e = (kind: RsyncErrorKind, message: string, fix: string) =>
    new RsyncError(kind, message, fix, code, detail);
  const firstError =
    lines.find((l) => /^rsync: /.test(l) && !/connection unexpectedly closed/.test(l)) ??
    lines.find((l) => !/^rsync error:/.test(l)) ??
    `rsync exited with code ${code}`;

  if (has(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/))
    return e(
      'host-key-changed',
      `the host key of ${host}:${port} is not the one pinned in ${kh}`,
      `Nothing was sent. Either the Storage Box's key changed or something is intercepting the connection: compare the fingerprints the Hetzner Console shows with the one ssh reported (in the log), and only if they match replace the line for [${host}]:${port} in ${kh} (ssh-keygen -f ${kh} -R '[${host}]:${port}', then ssh-keyscan -p ${port} ${host} >> ${kh}).`,
    );
  if (has(/Host key verification failed|No \S+ host key is known/))
    return e(
      'host-key-unknown',
      `the host key of ${host}:${port} is not in ${kh}`,
      `Pin it: ssh-keyscan -p ${port} ${host} >> ${kh}, and check that the fingerprint (ssh-keygen -lf ${kh}) matches the one the Hetzner Console shows for the Storage Box.`,
    );
  if (has(/Load key .*(bad permissions|invalid format|error in libcrypto)|UNPROTECTED PRIVATE KEY/))
    return e(
      'key-file',
      `ssh cannot use the private key ${key}${has(/bad permissions|UNPROTECTED/) ? ' (it is readable by other users)' : ''}`,
      has(/bad permissions|UNPROTECTED/)
        ? `chmod 600 ${key} (ssh refuses a key others can read).`
        : `Point destinations.eu_provider.ssh_key_file at an OpenSSH private key without a passphrase (ssh-keygen -t ed25519 -N '' -f KEY).`,
    );
  if (has(/Identity file .* not accessible/))
    return e(
      'key-file',
      `the private key ${key} cannot be read`,
      'Check destinations.eu_provider.ssh_key_file: the file must exist and be readable by the backupd user.',
    );
  if (has(/Permission denied \((publickey|password|keyboard-interactive)/))
    return e(
      'auth',
      `${host}:${port} refused the key ${key} for user ${user}`,
      `Check destinations.eu_provider.user, and install the public key on the Storage Box: enable SSH support in the Hetzner Console, then ssh-copy-id -p ${port} -s -i ${key}.pub ${user}@${host}.`,
    );
  if (code === 127 || has(/rsync: (command )?not found|command not found/i))
    return e(
      'rsync-missing-remote',
      `the server ${host} does not run rsync for this account`,
      'On a Storage Box enable SSH support in the Hetzner Console (rsync comes with it); on another server install rsync. Until then files are uploaded whole.',
    );
  if (has(/Failed to exec ssh|exec.*ssh.*No such file/))
    return e(
      'ssh-missing',
      'ssh is not installed on this machine',
      'Install it: apt-get install openssh-client (scripts/start.sh installs it). Until then files are uploaded whole.',
    );
  if (has(/No space left on device|Disk quota exceeded/))
    return e(
      'disk-full',
      `the Storage Box is full: ${firstError}`,
      'Free space (a shorter trash retention, sync.trash_retention_days, empties it sooner) or move to a larger Storage Box plan in the Hetzner Console.',
    );
  if (has(/(mkdir|change_dir|chdir).*failed: No such file or directory/))
    return e(
      'no-folder',
      `the folder ${ctx.remoteDir || '(home)'} or one above it does not exist at the destination`,
      'Upload the file whole first (rclone creates the folders); a delta needs a previous version there.',
    );
  if (has(/\[sender\].*(Permission denied|Operation not permitted)/))
    return e(
      'permission',
      `backupd cannot read the mirror file: ${firstError}`,
      'Check the owner and permissions of the file in the mirror: the backupd user must be able to read it.',
    );
  if (has(/Permission denied \(13\)|Read-only file system|Operation not permitted/))
    return e(
      'permission',
      `the Storage Box refused to write: ${firstError}`,
      `Check that ${user} may write to ${ctx.remoteDir || 'its home'} (a sub-account can be set read-only in the Hetzner Console) and that nothing there belongs to another user.`,
    );
  // After the server-side file errors: a full disk can also break the pipe.
  if (
    has(
      /Could not resolve hostname|Name or service not known|Temporary failure in name resolution|Connection refused|Connection timed out|No route to host|Network is unreachable|Connection reset by peer|Connection closed by|kex_exchange_identification|Broken pipe|Timeout, server .* not responding/,
    )
  )
    return e(
      'unreachable',
      `cannot reach ${host}:${port} over SSH: ${lines.find((l) => /^ssh:|Connection|resolve|kex_|Timeout/.test(l)) ?? firstError}`,
      `Check the network and destinations.eu_provider.host and .port (a Storage Box answers SSH/rsync on port 23, once SSH support is enabled in the Hetzner Console). It is retried.`,
    );
  if (code === 30 || code === 35)
    return e(
      'timeout',
      `no data moved to ${host} for ${ctx.timeoutSeconds} s`,
      'The connection stalled; it is retried. If it happens often, check the uplink or raise the timeout.',
    );
  if (code === 24 || has(/file has vanished/))
    return e(
      'vanished',
      'the mirror file disappeared or changed while it was being sent',
      'Nothing to do: the newer version is queued and is sent next.',
    );
  if (code === 23)
    return e(
      'partial',
      `rsync could not send everything: ${firstError}`,
      "The destination keeps its previous version; it is retried. If it repeats, rsync's message says which file and why.",
    );
  if (code === 2 || code === 5 || code === 12)
    return e(
      'protocol',
      `rsync's conversation with ${host} broke: ${firstError}`,
      `Check that ssh -p ${port} ${user}@${host} rsync --version answers with a version and prints nothing else (a login message breaks rsync); meanwhile files are uploaded whole.`,
    );
  if (code === 20)
    return e('aborted', 'rsync was stopped', 'Nothing to do: the transfer is retried.');
  if (code === 255)
    return e(
      'unreachable',
      `the SSH connection to ${host}:${port} failed: ${firstError}`,
      'Check the network and the Storage Box settings (host, port 23, user); it is retried.',
    );
  return e(
    'failed',
    `rsync failed (exit code ${code}): ${firstError}`,
    "The destination keeps its previous version; it is retried. rsync's message says why.",
  );
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

/** Only what is really in the mirror is sent: no symlink anywhere on the way, a regular file at the end. */
async function checkLocal(mirrorDir: string, relPath: string): Promise<string> {
  const parts = segments(relPath, 'relPath', false);
  let at = absolute(mirrorDir);
  for (const [i, part] of parts.entries()) {
    at = `${at}/${part}`;
    let st;
    try {
      st = await lstat(at);
    } catch (err) {
      throw new RsyncError(
        'vanished',
        `${at} is not in the mirror (${(err as NodeJS.ErrnoException).code})`,
        'Nothing to do: the change that removed it is queued and is pushed next.',
      );
    }
    const last = i === parts.length - 1;
    if (st.isSymbolicLink())
      throw new RsyncError(
        'unsafe-path',
        `${at} is a symbolic link; links are never followed out of the mirror`,
        'Nothing to do: the mirror holds files, not links. Remove the link if it was put there by hand.',
      );
    if (last ? !st.isFile() : !st.isDirectory())
      throw new RsyncError(
        'unsafe-path',
        `${at} is not a ${last ? 'regular file' : 'folder'}`,
        'Only regular files are pushed.',
      );
  }
  return at;
}

/**
 * Sends one mirror file to the Storage Box as an rsync delta against the version already there.
 * On success the destination holds the mirror's bytes and mtime at `<remoteDir>/<relPath>` and
 * the version it replaced is at `<trashDir>/<relPath>`; rsync checked the rebuilt file against
 * the sender's whole-file checksum. On failure it throws an RsyncError (kind, message, fix,
 * fallback, retryable) and the destination still holds its previous version at the final name.
 */
export async function sendDelta(req: DeltaRequest): Promise<DeltaResult> {
  const args = rsyncArgs(req);
  const timeoutSeconds = timeoutSecondsOf(req);
  for (const [file, what] of [
    [req.ssh.keyFile, 'ssh_key_file'],
    [req.ssh.knownHostsFile, 'known_hosts_file'],
  ] as const) {
    if (
      file &&
      !(await access(file, constants.R_OK).then(
        () => true,
        () => false,
      ))
    )
      throw new RsyncError(
        'key-file',
        `${file} (destinations.eu_provider.${what}) does not exist or cannot be read`,
        what === 'ssh_key_file'
          ? 'Create the key (ssh-keygen -t ed25519 -N "" -f FILE) or fix the path, and make it readable by the backupd user.'
          : 'Pin the Storage Box host key: ssh-keyscan -p 23 HOST > FILE, and compare the fingerprint with the Hetzner Console.',
      );
  }
  await checkLocal(req.mirrorDir, req.relPath);
  if (req.signal?.aborted)
    throw new RsyncError('aborted', 'the transfer was cancelled', 'Nothing to do.');

  const started = process.hrtime.bigint();
  const { code, stdout, stderr, aborted, spawnError } = await run(
    req.binary ?? 'rsync',
    args,
    req.signal,
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // Through setpriv a missing rsync is setpriv's exit 127 rather than a spawn error.
  const missing =
    spawnError?.code === 'ENOENT' ||
    (code === 127 && /^setpriv: failed to execute .*No such file/m.test(stderr));
  if (spawnError || missing)
    throw missing
      ? new RsyncError(
          'rsync-missing',
          'rsync is not installed on this machine',
          'Install them: apt-get install rsync openssh-client (scripts/start.sh installs them). Until then files are uploaded whole.',
        )
      : new RsyncError(
          'failed',
          `rsync could not be started: ${spawnError!.message}`,
          'Check the installation of rsync.',
        );
  if (aborted)
    throw new RsyncError(
      'aborted',
      'the transfer was cancelled; the destination keeps its previous version',
      'Nothing to do.',
      code,
    );
  if (code !== 0)
    throw classify(code, stderr, { ssh: req.ssh, remoteDir: req.remoteDir, timeoutSeconds });
  const stats = parseStats(stdout);
  if (!stats || stats.filesTransferred !== 1)
    throw new RsyncError(
      'not-sent',
      `rsync finished without sending ${req.relPath}${stats ? '' : ' (it printed no statistics)'}`,
      'Upload the file whole instead; if it repeats, check that the file is a regular file in the mirror.',
      code,
      stderr.split('\n').filter(Boolean).slice(-12),
    );
  return {
    bytesSent: stats.bytesSent,
    bytesReceived: stats.bytesReceived,
    literalBytes: stats.literalBytes,
    matchedBytes: stats.matchedBytes,
    fileSize: stats.fileSize,
    seconds,
  };
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  aborted: boolean;
  spawnError?: NodeJS.ErrnoException;
}

/** How long rsync gets to clean up after SIGTERM before it and its ssh are killed outright. */
const KILL_GRACE_MS = 5_000;
/** Enough of the output to explain a failure; a flood of warnings is cut from the front. */
const OUTPUT_MAX = 64 * 1024;

const SETPRIV = '/usr/bin/setpriv';

/**
 * Runs rsync in a process group of its own, so that an abort reaches its ssh child too (a
 * signal to rsync alone can leave ssh holding the connection and the server's rsync running).
 * As with rclone (rcd.ts), util-linux's `setpriv --pdeathsig` ends rsync when the daemon dies
 * even by SIGKILL; its ssh then sees its input close and ends too.
 */
function run(binary: string, args: string[], signal: AbortSignal | undefined): Promise<RunResult> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    const [cmd, argv] = existsSync(SETPRIV)
      ? [SETPRIV, ['--pdeathsig', 'TERM', '--', binary, ...args]]
      : [binary, args];
    const child = spawn(cmd, argv, {
      env: rsyncEnvironment(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const killGroup = (sig: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // Already gone.
      }
    };
    const onAbort = () => {
      aborted = true;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < OUTPUT_MAX) stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
      if (stderr.length > OUTPUT_MAX) stderr = stderr.slice(-OUTPUT_MAX);
    });
    let settled = false;
    const finish = (r: RunResult) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      resolve(r);
    };
    child.on('error', (err: NodeJS.ErrnoException) =>
      finish({ code: -1, stdout, stderr, aborted, spawnError: err }),
    );
    child.on('close', (code, sig) => {
      // Whatever rsync left running in its group (an ssh that did not notice) goes with it.
      if (aborted) killGroup('SIGKILL');
      finish({ code: code ?? (sig ? 128 + (os.signals[sig] ?? 0) : 1), stdout, stderr, aborted });
    });
  });
}
