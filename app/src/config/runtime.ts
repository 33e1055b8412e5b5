/**
 * What the daemon derives from the configuration file and the environment: absolute paths,
 * the database location, the Google endpoints, and each secret from wherever it is kept.
 */
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configKey, secretPaths } from './keys.js';
import { getPath, type LoadedConfig } from './load.js';
import { isLoopbackHost, type Config, type DestinationName, type SourceName } from './schema.js';
import { SecretStore } from './secrets.js';

export interface Runtime {
  config: Config;
  configFile: string | undefined;
  /** Folder the relative paths of the config are relative to. */
  baseDir: string;
  stateDir: string;
  database: { kind: 'sqlite'; path: string; url: string };
  logFile: string;
  pidFile: string | undefined;
  webRoot: string;
  secrets: SecretStore;
  google: { apiRoot: string; oauthTokenUrl: string; photosPickerRoot: string };
  sourcePath(name: SourceName): string;
  /** The value of a secret: environment first, then the secrets store, then the config file. */
  secret(name: string): string | undefined;
  /** Where a secret comes from, for the API (never the value). */
  secretOrigin(name: string): 'env' | 'store' | 'file' | undefined;
  /** Every secret value known, for redaction. */
  secretValues(): string[];
  /** The configured endpoint of a destination, with the environment override applied. */
  destinationEndpoint(name: DestinationName): string | undefined;
}

export class RuntimeError extends Error {
  override name = 'RuntimeError';
}

/** Environment variables of section 10.2 that are not config keys. */
// (GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are the env of the keys google.client_id and
// google.client_secret.)
export const ENV_SECRETS: Record<string, string> = {
  'google.refresh_token': 'GOOGLE_REFRESH_TOKEN',
};

export const defaultWebRoot = () =>
  resolve(dirname(fileURLToPath(import.meta.url)), '../../../web/build');

/**
 * What the daemon changes in the paths while the appliance waits for its data disk (standby):
 * the state and its log go to a volatile folder instead of the disk that is not there.
 */
export interface RuntimeOverrides {
  stateDir?: string;
}

export function resolveRuntime(
  loaded: LoadedConfig,
  env: NodeJS.ProcessEnv = process.env,
  overrides: RuntimeOverrides = {},
): Runtime {
  const { config } = loaded;
  const baseDir = loaded.file ? dirname(loaded.file) : process.cwd();
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const sourcePath = (name: SourceName) => abs(config.sources[name].local_path);
  const volatile = overrides.stateDir !== undefined;
  const stateDir = overrides.stateDir
    ? abs(overrides.stateDir)
    : config.daemon.state_dir
      ? abs(config.daemon.state_dir)
      : join(dirname(sourcePath('google_drive')), '.backupd');

  checkEnvEndpoint(config, env);
  const database = parseDatabaseUrl(volatile ? undefined : env.DATABASE_URL, stateDir);
  const secrets = new SecretStore(
    config.security.secrets_file
      ? abs(config.security.secrets_file)
      : join(stateDir, 'secrets.enc'),
    config.security.secrets_key_file
      ? abs(config.security.secrets_key_file)
      : join(baseDir, 'secrets.key'),
  ).load();

  const envName = (name: string) => configKey(name)?.env ?? ENV_SECRETS[name];
  const secret = (name: string) => {
    const e = envName(name);
    if (e && env[e]) return env[e];
    return secrets.get(name) ?? (loaded.inlineSecrets[name] || undefined);
  };
  const secretOrigin = (name: string) => {
    const e = envName(name);
    if (e && env[e]) return 'env' as const;
    if (secrets.has(name)) return 'store' as const;
    return loaded.inlineSecrets[name] ? ('file' as const) : undefined;
  };

  return {
    config,
    configFile: loaded.file,
    baseDir,
    stateDir,
    database,
    logFile:
      config.daemon.log_file && !volatile
        ? abs(config.daemon.log_file)
        : join(stateDir, 'logs', 'backupd.log'),
    pidFile: config.daemon.pid_file ? abs(config.daemon.pid_file) : undefined,
    webRoot: config.daemon.web_root ? abs(config.daemon.web_root) : defaultWebRoot(),
    secrets,
    google: {
      apiRoot: trimSlash(env.GOOGLE_API_ROOT || 'https://www.googleapis.com'),
      oauthTokenUrl: env.GOOGLE_OAUTH_TOKEN_URL || 'https://oauth2.googleapis.com/token',
      photosPickerRoot: trimSlash(
        env.GOOGLE_PHOTOS_PICKER_ROOT || 'https://photospicker.googleapis.com',
      ),
    },
    sourcePath,
    secret,
    secretOrigin,
    secretValues: () => {
      const names = new Set([
        ...secretPaths(),
        ...Object.keys(ENV_SECRETS),
        ...secrets.list().map((s) => s.name),
      ]);
      const values = [...names].map(secret).filter((v): v is string => !!v);
      // Also values shadowed by the environment: still secrets, wherever they turn up.
      return [...new Set([...values, ...secrets.values(), ...Object.values(loaded.inlineSecrets)])];
    },
    destinationEndpoint: (name) => {
      const configured = getPath(config, `destinations.${name}.endpoint`) as string | undefined;
      if (configured) return configured;
      return name === 'aws_s3' ? env.AWS_ENDPOINT_URL || undefined : undefined;
    },
  };
}

/** The same rule as for a configured endpoint: plain http only to this machine, or when asked. */
function checkEnvEndpoint(config: Config, env: NodeJS.ProcessEnv): void {
  const s3 = config.destinations.aws_s3;
  const url = env.AWS_ENDPOINT_URL;
  if (!s3.enabled || s3.endpoint || !url || !/^http:\/\//i.test(url)) return;
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    throw new RuntimeError(
      `AWS_ENDPOINT_URL "${url}" is not a URL: expected e.g. https://s3.example.com`,
    );
  }
  if (!isLoopbackHost(host) && (s3.ssl_verify ?? config.security.ssl_verify)) {
    throw new RuntimeError(
      `AWS_ENDPOINT_URL ${url} is plain http:// to ${host}: use https://, or set destinations.aws_s3.ssl_verify: false to accept an unencrypted connection.`,
    );
  }
}

const trimSlash = (s: string) => s.replace(/\/+$/, '');

/** `sqlite:///relative.db` (relative to the state folder), `sqlite:////abs/path.db`, or a plain path. */
export function parseDatabaseUrl(url: string | undefined, stateDir: string): Runtime['database'] {
  if (!url) {
    const path = join(stateDir, 'state.db');
    return { kind: 'sqlite', path, url: `sqlite:///${path}` };
  }
  if (/^postgres(ql)?:\/\//i.test(url)) {
    throw new RuntimeError(
      'DATABASE_URL names PostgreSQL, which this version does not support yet. Use sqlite:///path/to/state.db, or unset DATABASE_URL to keep the state on the data disk.',
    );
  }
  const m = /^sqlite:\/\/\/(.+)$/i.exec(url);
  if (!m && /^[a-z][a-z0-9+.-]*:/i.test(url)) {
    throw new RuntimeError(
      `DATABASE_URL "${url.replace(/\/\/[^@/]*@/, '//***@')}" is not understood: expected sqlite:///path/to/state.db`,
    );
  }
  const p = m ? m[1]! : url;
  const path = isAbsolute(p) ? p : resolve(stateDir, p);
  return { kind: 'sqlite', path, url: `sqlite:///${path}` };
}
