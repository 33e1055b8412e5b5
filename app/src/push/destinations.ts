/**
 * Each configured destination as an rclone remote, defined only through environment
 * variables of the rclone child (RCLONE_CONFIG_<NAME>_*), so no secret is ever written to a
 * file another process could read. The settings behind an S3 or SFTP remote are also given
 * as plain values (`s3`, `sftp`), so that what talks to the destination without rclone (the
 * S3 SDK of the configuration test, ssh) reaches exactly the same place the same way.
 */
import { resolve } from 'node:path';
import type { DestinationName, Runtime } from '../config/index.js';

export interface DestinationRemote {
  /** The rclone remote, e.g. `BKP_AWS_S3`. */
  remote: string;
  /** rclone's backend for it: S3 lists MD5s with its objects, sftp speaks SSH (and rsync). */
  backend: 's3' | 'sftp' | 'local';
  /** RCLONE_CONFIG_* variables that define it (secrets included: pass only to the child). */
  env: Record<string, string>;
  /** Path inside the remote under which the source folders, `.trash/` and `.backupd/` live. */
  root: string;
}

export interface DestinationDescription {
  name: DestinationName;
  type: string;
  /** Where the copy goes, for people: bucket/prefix, host:path or folder. */
  target: string;
  remote?: DestinationRemote;
  /** The settings the S3 remote is made of (S3-type destinations with credentials). */
  s3?: S3Settings;
  /** The settings the SFTP remote is made of (a Storage Box). */
  sftp?: SftpSettings;
  /** Why the destination cannot be used as configured, with the fix. */
  problem?: { message: string; fix: string };
}

/** An S3 destination as rclone reaches it; the SDK client is built from the same values. */
export interface S3Settings {
  /** rclone's provider: it decides rclone's quirks (AWS and Scaleway use virtual hosts). */
  provider: 'AWS' | 'Scaleway' | 'Other';
  bucket: string;
  /** Folder inside the bucket, no leading or trailing slash ('' for the whole bucket). */
  prefix: string;
  /** Signing region; absent means rclone's (and the SDK's) us-east-1. */
  region?: string;
  /** URL with its scheme; absent means AWS's own endpoint for the region. */
  endpoint?: string;
  /** Path-style addressing (https://host/bucket/key) rather than https://bucket.host/key. */
  pathStyle: boolean;
  sslVerify: boolean;
  accessKeyId: string;
  secretAccessKey: string;
  /** Storage class and encryption asked for on every upload (absent: the server's default). */
  storageClass?: string;
  serverSideEncryption?: string;
}

/** A Storage Box (SFTP) as rclone reaches it; ssh (for rsync) uses the same values. */
export interface SftpSettings {
  host: string | undefined;
  port: number;
  user: string | undefined;
  /** Absolute path of the private key. */
  keyFile: string | undefined;
  /** Absolute path of the known_hosts file pinning the host key; absent: any key is accepted. */
  knownHostsFile: string | undefined;
}

/** Public endpoints of the S3-type European providers, by region. */
export const PROVIDER_ENDPOINTS: Record<string, (region: string) => string> = {
  hetzner: (r) => `https://${r}.your-objectstorage.com`,
  scaleway: (r) => `https://s3.${r}.scw.cloud`,
  ovh: (r) => `https://s3.${r}.io.cloud.ovh.net`,
  exoscale: (r) => `https://sos-${r}.exo.io`,
};

const join = (...parts: (string | undefined)[]) =>
  parts
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .filter(Boolean)
    .join('/');

const withScheme = (e: string) => (e.includes('://') ? e : `https://${e}`);

export function describeDestination(
  runtime: Runtime,
  name: DestinationName,
): DestinationDescription {
  const cfg = runtime.config.destinations;
  const remote = `BKP_${name.toUpperCase()}`;
  const def = (vars: Record<string, string | undefined>) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(vars))
      if (v !== undefined && v !== '') env[`RCLONE_CONFIG_${remote}_${k.toUpperCase()}`] = v;
    return env;
  };
  const missing = (what: string[], how: string) => ({
    message: `no ${what.join(' or ')} for ${name}`,
    fix: how,
  });

  /** An S3-type destination: its credentials checked, its settings and remote defined. */
  const s3 = (o: {
    type: string;
    bucket: string | undefined;
    prefix: string;
    keys: [string, string];
    keysFix: string;
    bucketKey: string;
    settings: Omit<
      S3Settings,
      'bucket' | 'prefix' | 'accessKeyId' | 'secretAccessKey' | 'sslVerify' | 'pathStyle'
    >;
    sslVerify: boolean | undefined;
  }): DestinationDescription => {
    const target = join(o.bucket, o.prefix);
    if (!o.bucket) {
      return {
        name,
        type: o.type,
        target,
        problem: { message: `no bucket for ${name}`, fix: `Set ${o.bucketKey}.` },
      };
    }
    const [keyId, secret] = o.keys.map((k) => runtime.secret(k));
    if (!keyId || !secret) {
      return { name, type: o.type, target, problem: missing(['access key'], o.keysFix) };
    }
    const settings: S3Settings = {
      ...o.settings,
      bucket: o.bucket,
      prefix: join(o.prefix),
      accessKeyId: keyId,
      secretAccessKey: secret,
      sslVerify: o.sslVerify ?? runtime.config.security.ssl_verify,
      // rclone's rule: AWS and Scaleway are reached by virtual host, every other server by path.
      pathStyle: o.settings.provider === 'Other',
    };
    const env = def(s3RemoteOptions(settings));
    return {
      name,
      type: o.type,
      target,
      remote: { remote, backend: 's3', root: target, env },
      s3: settings,
    };
  };
  const local = (path: string): DestinationDescription => ({
    name,
    type: 'local',
    target: path,
    remote: { remote, backend: 'local', env: def({ type: 'local' }), root: path },
  });

  if (name === 'local')
    return local(cfg.local.path ? resolve(runtime.baseDir, cfg.local.path) : '');

  if (name === 'aws_s3') {
    const c = cfg.aws_s3;
    const endpoint = runtime.destinationEndpoint('aws_s3');
    const sse = c.server_side_encryption ?? (endpoint ? 'none' : 'AES256');
    return s3({
      type: 's3',
      bucket: c.bucket,
      prefix: c.prefix,
      bucketKey: 'destinations.aws_s3.bucket',
      keys: ['destinations.aws_s3.access_key_id', 'destinations.aws_s3.secret_access_key'],
      keysFix:
        'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or store them with `backupd secrets set destinations.aws_s3.access_key_id` and `... secret_access_key`.',
      settings: {
        provider: endpoint ? 'Other' : 'AWS',
        region: c.region,
        endpoint: endpoint ? withScheme(endpoint) : undefined,
        // AWS's own features by default on AWS only: other S3 servers often refuse them.
        storageClass: c.storage_class ?? (endpoint ? undefined : 'INTELLIGENT_TIERING'),
        serverSideEncryption: sse === 'none' ? undefined : sse,
      },
      sslVerify: c.ssl_verify,
    });
  }

  const c = cfg.eu_provider;
  if (c.type === 'local') return local(resolve(runtime.baseDir, c.path ?? '.', c.prefix));
  if (c.type === 'hetzner_storage_box') {
    const root = join(c.path, c.prefix);
    const sftp: SftpSettings = {
      host: c.host,
      port: c.port,
      user: c.user,
      keyFile: c.ssh_key_file ? resolve(runtime.baseDir, c.ssh_key_file) : undefined,
      knownHostsFile: c.known_hosts_file ? resolve(runtime.baseDir, c.known_hosts_file) : undefined,
    };
    return {
      name,
      type: c.type,
      target: `${c.user ?? '?'}@${c.host ?? '?'}:${c.port}/${root}`,
      sftp,
      remote: {
        remote,
        backend: 'sftp',
        root,
        env: def({
          type: 'sftp',
          host: sftp.host,
          port: String(sftp.port),
          user: sftp.user,
          key_file: sftp.keyFile,
          known_hosts_file: sftp.knownHostsFile,
        }),
      },
    };
  }
  const endpoint = c.endpoint ?? (c.region ? PROVIDER_ENDPOINTS[c.type]?.(c.region) : undefined);
  return s3({
    type: c.type,
    bucket: c.bucket,
    prefix: c.prefix,
    bucketKey: 'destinations.eu_provider.bucket',
    keys: ['destinations.eu_provider.access_key', 'destinations.eu_provider.secret_key'],
    keysFix:
      'Set EU_PROVIDER_ACCESS_KEY and EU_PROVIDER_SECRET_KEY, or store them with `backupd secrets set destinations.eu_provider.access_key` and `... secret_key`.',
    settings: {
      provider: c.type === 'scaleway' ? 'Scaleway' : 'Other',
      region: c.region,
      endpoint: endpoint ? withScheme(endpoint) : undefined,
    },
    sslVerify: c.ssl_verify,
  });
}

/** The rclone options (RCLONE_CONFIG_<NAME>_<OPTION>) of an S3 remote, from its settings. */
export function s3RemoteOptions(s: S3Settings): Record<string, string | undefined> {
  return {
    type: 's3',
    provider: s.provider,
    env_auth: 'false',
    access_key_id: s.accessKeyId,
    secret_access_key: s.secretAccessKey,
    region: s.region,
    endpoint: s.endpoint,
    force_path_style: String(s.pathStyle),
    storage_class: s.storageClass,
    server_side_encryption: s.serverSideEncryption,
    no_check_certificate: s.sslVerify ? undefined : 'true',
  };
}
