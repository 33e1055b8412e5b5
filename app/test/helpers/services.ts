// The real servers the integration tests talk to, as started by `bash scripts/test-services.sh start`
// (Ceph RADOS Gateway for S3, OpenSSH + rsync for the Storage Box, Exim for SMTP).
// That script writes services.json into its state directory; this module reads it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface S3Service {
  /** http://127.0.0.1:PORT, path-style addressing. */
  endpoint: string;
  host: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  /** The gateway's zonegroup; any SigV4 region string works. */
  region: string;
  forcePathStyle: boolean;
  /** rclone's provider name for this server. */
  provider: string;
}

export interface SftpService {
  host: string;
  port: number;
  user: string;
  /** Private key (ed25519, no passphrase) that the server accepts for `user`. */
  keyFile: string;
  /** known_hosts line for [host]:port, so host keys can be checked strictly. */
  knownHostsFile: string;
  /** Absolute server-side directory the account owns (its home when run as root). */
  root: string;
}

export interface SmtpService {
  host: string;
  port: number;
  user: string;
  password: string;
  /** false: plain connect, then STARTTLS (AUTH is only offered after it). */
  secure: boolean;
  starttls: boolean;
  /** Self-signed certificate of the server (CN/SAN 127.0.0.1 and localhost); trust it as a CA. */
  caFile: string;
  /** Maildir that receives every accepted message (new mail appears in `<maildir>/new`). */
  maildir: string;
}

export interface TestServices {
  /** The state directory the services run from. */
  dir: string;
  s3: S3Service;
  sftp: SftpService;
  smtp: SmtpService;
}

const START_HINT = 'run `bash scripts/test-services.sh start` from the repository root';

/** The repository root: this file is <root>/app/test/helpers/services.ts. */
export const REPO_ROOT = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
);

/** Where the services run: $TEST_SERVICES_DIR, else <repo root>/.test-services. */
export function testServicesDir(): string {
  const fromEnv = process.env['TEST_SERVICES_DIR'];
  return fromEnv ? path.resolve(fromEnv) : path.join(REPO_ROOT, '.test-services');
}

type Json = Record<string, unknown>;

function section(raw: Json, name: string, file: string): Json {
  const value = raw[name];
  if (typeof value !== 'object' || value === null) {
    throw new Error(`${file} has no "${name}" section; ${START_HINT} again.`);
  }
  return value as Json;
}

function str(obj: Json, key: string, where: string): string {
  const value = obj[key];
  if (typeof value !== 'string' || value === '') {
    throw new Error(`${where}.${key} is missing or not a string; ${START_HINT} again.`);
  }
  return value;
}

function num(obj: Json, key: string, where: string): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new Error(`${where}.${key} is missing or not an integer; ${START_HINT} again.`);
  }
  return value;
}

function bool(obj: Json, key: string, where: string): boolean {
  const value = obj[key];
  if (typeof value !== 'boolean') {
    throw new Error(`${where}.${key} is missing or not a boolean; ${START_HINT} again.`);
  }
  return value;
}

/**
 * Reads services.json. Throws an error that says how to start the services when they are not
 * started (or the file is damaged).
 */
export function loadTestServices(): TestServices {
  const dir = testServicesDir();
  const file = path.join(dir, 'services.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(
      `The test services are not running: ${file} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`}. ` +
        `Integration tests need the real S3, SFTP and SMTP servers: ${START_HINT} ` +
        '(set TEST_SERVICES_DIR if you started them in another directory).',
    );
  }
  let raw: Json;
  try {
    raw = JSON.parse(text) as Json;
  } catch (err) {
    throw new Error(`${file} is not valid JSON (${(err as Error).message}); ${START_HINT} again.`);
  }
  const s3 = section(raw, 's3', file);
  const sftp = section(raw, 'sftp', file);
  const smtp = section(raw, 'smtp', file);
  return {
    dir: typeof raw['dir'] === 'string' ? raw['dir'] : dir,
    s3: {
      endpoint: str(s3, 'endpoint', 's3'),
      host: str(s3, 'host', 's3'),
      port: num(s3, 'port', 's3'),
      accessKeyId: str(s3, 'accessKeyId', 's3'),
      secretAccessKey: str(s3, 'secretAccessKey', 's3'),
      region: str(s3, 'region', 's3'),
      forcePathStyle: bool(s3, 'forcePathStyle', 's3'),
      provider: str(s3, 'provider', 's3'),
    },
    sftp: {
      host: str(sftp, 'host', 'sftp'),
      port: num(sftp, 'port', 'sftp'),
      user: str(sftp, 'user', 'sftp'),
      keyFile: str(sftp, 'keyFile', 'sftp'),
      knownHostsFile: str(sftp, 'knownHostsFile', 'sftp'),
      root: str(sftp, 'root', 'sftp'),
    },
    smtp: {
      host: str(smtp, 'host', 'smtp'),
      port: num(smtp, 'port', 'smtp'),
      user: str(smtp, 'user', 'smtp'),
      password: str(smtp, 'password', 'smtp'),
      secure: bool(smtp, 'secure', 'smtp'),
      starttls: bool(smtp, 'starttls', 'smtp'),
      caFile: str(smtp, 'caFile', 'smtp'),
      maildir: str(smtp, 'maildir', 'smtp'),
    },
  };
}

/**
 * The environment for an rclone child process: ours without AWS_CA_BUNDLE (set on these
 * machines, it makes every rclone S3 call fail with LoadCustomCABundleError), with `extra`
 * added. An `undefined` value in `extra` removes that variable.
 */
export function rcloneEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['AWS_CA_BUNDLE'];
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

function remoteVars(name: string, vars: Record<string, string>): Record<string, string> {
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`bad rclone remote name: ${name}`);
  const prefix = `RCLONE_CONFIG_${name.toUpperCase()}_`;
  return Object.fromEntries(Object.entries(vars).map(([k, v]) => [prefix + k, v]));
}

/** RCLONE_CONFIG_<NAME>_* variables that define an rclone S3 remote `<name>:` for the gateway. */
export function s3RemoteEnv(name: string, s3: S3Service): Record<string, string> {
  return remoteVars(name, {
    TYPE: 's3',
    PROVIDER: s3.provider,
    ENDPOINT: s3.endpoint,
    ACCESS_KEY_ID: s3.accessKeyId,
    SECRET_ACCESS_KEY: s3.secretAccessKey,
    REGION: s3.region,
    FORCE_PATH_STYLE: String(s3.forcePathStyle),
  });
}

/** RCLONE_CONFIG_<NAME>_* variables that define an rclone SFTP remote `<name>:` for the ssh server. */
export function sftpRemoteEnv(name: string, sftp: SftpService): Record<string, string> {
  return remoteVars(name, {
    TYPE: 'sftp',
    HOST: sftp.host,
    PORT: String(sftp.port),
    USER: sftp.user,
    KEY_FILE: sftp.keyFile,
    KNOWN_HOSTS_FILE: sftp.knownHostsFile,
  });
}

/** `destinations.eu_provider` for the Storage Box stand-in, its files under `path` in the account's home. */
export function storageBoxConfig(sftp: SftpService, path: string) {
  return {
    enabled: true,
    type: 'hetzner_storage_box',
    host: sftp.host,
    port: sftp.port,
    user: sftp.user,
    ssh_key_file: sftp.keyFile,
    known_hosts_file: sftp.knownHostsFile,
    path,
  };
}

/** The ssh command line (for `rsync -e`) that logs in to the SFTP server with strict host keys. */
export function sshCommand(sftp: SftpService): string[] {
  return [
    'ssh',
    '-F',
    '/dev/null',
    '-p',
    String(sftp.port),
    '-i',
    sftp.keyFile,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${sftp.knownHostsFile}`,
    '-o',
    'LogLevel=ERROR',
  ];
}
