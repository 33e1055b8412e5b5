/**
 * Each configured destination as an rclone remote, defined only through environment
 * variables of the rclone child (RCLONE_CONFIG_<NAME>_*), so no secret is ever written to a
 * file another process could read.
 */
import { resolve } from 'node:path';
import type { DestinationName, Runtime } from '../config/index.js';

export interface DestinationRemote {
  /** The rclone remote, e.g. `BKP_AWS_S3`. */
  remote: string;
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
  /** Why the destination cannot be used as configured, with the fix. */
  problem?: { message: string; fix: string };
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

  /** An S3-type destination: its credentials checked, its remote defined. */
  const s3 = (o: {
    type: string;
    target: string;
    keys: [string, string];
    keysFix: string;
    settings: Record<string, string | undefined>;
    sslVerify: boolean | undefined;
  }): DestinationDescription => {
    const [keyId, secret] = o.keys.map((k) => runtime.secret(k));
    if (!keyId || !secret) {
      return { name, type: o.type, target: o.target, problem: missing(['access key'], o.keysFix) };
    }
    const env = def({
      type: 's3',
      env_auth: 'false',
      access_key_id: keyId,
      secret_access_key: secret,
      ...o.settings,
      no_check_certificate:
        (o.sslVerify ?? runtime.config.security.ssl_verify) ? undefined : 'true',
    });
    return { name, type: o.type, target: o.target, remote: { remote, root: o.target, env } };
  };
  const local = (path: string): DestinationDescription => ({
    name,
    type: 'local',
    target: path,
    remote: { remote, env: def({ type: 'local' }), root: path },
  });

  if (name === 'local')
    return local(cfg.local.path ? resolve(runtime.baseDir, cfg.local.path) : '');

  if (name === 'aws_s3') {
    const c = cfg.aws_s3;
    const endpoint = runtime.destinationEndpoint('aws_s3');
    const sse = c.server_side_encryption ?? (endpoint ? 'none' : 'AES256');
    return s3({
      type: 's3',
      target: join(c.bucket, c.prefix),
      keys: ['destinations.aws_s3.access_key_id', 'destinations.aws_s3.secret_access_key'],
      keysFix:
        'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or store them with `backupd secrets set destinations.aws_s3.access_key_id` and `... secret_access_key`.',
      settings: {
        provider: endpoint ? 'Other' : 'AWS',
        region: c.region,
        endpoint: endpoint ? withScheme(endpoint) : undefined,
        force_path_style: endpoint ? 'true' : undefined,
        // AWS's own features by default on AWS only: other S3 servers often refuse them.
        storage_class: c.storage_class ?? (endpoint ? undefined : 'INTELLIGENT_TIERING'),
        server_side_encryption: sse === 'none' ? undefined : sse,
      },
      sslVerify: c.ssl_verify,
    });
  }

  const c = cfg.eu_provider;
  if (c.type === 'local') return local(resolve(runtime.baseDir, c.path ?? '.', c.prefix));
  if (c.type === 'hetzner_storage_box') {
    const root = join(c.path, c.prefix);
    return {
      name,
      type: c.type,
      target: `${c.user ?? '?'}@${c.host ?? '?'}:${c.port}/${root}`,
      remote: {
        remote,
        root,
        env: def({
          type: 'sftp',
          host: c.host,
          port: String(c.port),
          user: c.user,
          key_file: c.ssh_key_file ? resolve(runtime.baseDir, c.ssh_key_file) : undefined,
          known_hosts_file: c.known_hosts_file
            ? resolve(runtime.baseDir, c.known_hosts_file)
            : undefined,
        }),
      },
    };
  }
  const endpoint = c.endpoint ?? (c.region ? PROVIDER_ENDPOINTS[c.type]?.(c.region) : undefined);
  return s3({
    type: c.type,
    target: join(c.bucket, c.prefix),
    keys: ['destinations.eu_provider.access_key', 'destinations.eu_provider.secret_key'],
    keysFix:
      'Set EU_PROVIDER_ACCESS_KEY and EU_PROVIDER_SECRET_KEY, or store them with `backupd secrets set destinations.eu_provider.access_key` and `... secret_key`.',
    settings: {
      provider: c.type === 'scaleway' ? 'Scaleway' : 'Other',
      region: c.region,
      endpoint: endpoint ? withScheme(endpoint) : undefined,
      force_path_style: c.type === 's3' ? 'true' : undefined,
    },
    sslVerify: c.ssl_verify,
  });
}
