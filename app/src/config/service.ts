/**
 * The configuration as the running daemon holds it: read through the API without secrets,
 * changed through the API with validation, secrets moved into the store, the file rewritten
 * atomically, and every listener told.
 */
import { EventEmitter } from 'node:events';
import { configKey, secretPaths } from './keys.js';
import {
  ConfigError,
  getPath,
  setPath,
  validateConfig,
  writeConfigFile,
  type ConfigProblem,
  type LoadedConfig,
} from './load.js';
import { resolveRuntime, type Runtime, type RuntimeOverrides } from './runtime.js';
import type { Config } from './schema.js';
import { MIN_SECRET_LENGTH } from '../log/redact.js';

export interface SecretStatus {
  set: boolean;
  origin: 'env' | 'store' | 'file' | null;
  env: string | null;
}

export interface ConfigView {
  file: string | null;
  config: Config;
  secrets: Record<string, SecretStatus>;
  warnings: ConfigProblem[];
}

/** Keys whose change takes effect only after a restart. */
const RESTART_KEYS = [
  'daemon.api_port',
  'daemon.api_host',
  'daemon.state_dir',
  'daemon.log_file',
  'daemon.pid_file',
  'daemon.web_root',
  'security.secrets_file',
  'security.secrets_key_file',
  'sources.google_drive.local_path',
  'sources.google_photos.local_path',
];

export class ConfigService extends EventEmitter<{ changed: [Runtime] }> {
  constructor(
    private loaded: LoadedConfig,
    private current: Runtime,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly overrides: RuntimeOverrides = {},
  ) {
    super();
  }

  get runtime(): Runtime {
    return this.current;
  }

  /** The configuration with every secret value removed. */
  view(): ConfigView {
    const config = structuredClone(this.current.config) as unknown as Record<string, unknown>;
    const secrets: Record<string, SecretStatus> = {};
    for (const p of secretPaths()) {
      setPath(config, p, undefined);
      const origin = this.current.secretOrigin(p) ?? null;
      secrets[p] = { set: origin !== null, origin, env: configKey(p)?.env ?? null };
    }
    for (const { name } of this.current.secrets.list()) {
      secrets[name] ??= {
        set: true,
        origin: this.current.secretOrigin(name) ?? 'store',
        env: null,
      };
    }
    return {
      file: this.loaded.file ?? null,
      config: config as unknown as Config,
      secrets,
      warnings: this.loaded.warnings,
    };
  }

  /**
   * Changes the configuration: `input` is merged onto the current one (a key absent keeps its
   * value, null returns it to its default, lists are replaced whole), so a client that sends one
   * section cannot reset the rest. Secret keys: a string sets it in the store, null removes it
   * from the store, absent leaves it as it is. Secrets never reach the file.
   */
  async update(input: unknown): Promise<{ view: ConfigView; restartRequired: string[] }> {
    if (input === null || typeof input !== 'object' || Array.isArray(input)) {
      throw new ConfigError(undefined, [
        { path: '', message: 'expected the configuration as a JSON object' },
      ]);
    }
    const body = mergeConfig(
      this.view().config as unknown as Record<string, unknown>,
      input as Record<string, unknown>,
    );
    const secretChanges: [string, string | null][] = [];
    const problems: ConfigProblem[] = [];
    for (const p of secretPaths()) {
      const v = getPath(body, p);
      if (v === undefined) continue;
      if (v !== null && (typeof v !== 'string' || v.length < MIN_SECRET_LENGTH)) {
        problems.push({
          path: p,
          message: `expected a text of at least ${MIN_SECRET_LENGTH} characters, or null to remove it`,
        });
      } else secretChanges.push([p, v as string | null]);
      setPath(body, p, undefined);
    }
    dropNulls(body);
    const result = validateConfig(body);
    if (!result.ok || problems.length)
      throw new ConfigError(undefined, [...problems, ...(result.ok ? [] : result.problems)]);

    const file = this.loaded.file;
    if (!file)
      throw new ConfigError(undefined, [
        {
          path: '',
          message: 'this daemon was started without a configuration file, so it cannot save one',
        },
      ]);
    // Secrets first: were the file written first, a failure here would lose an inline secret.
    const store = this.current.secrets;
    for (const p of secretPaths()) {
      const inline = this.loaded.inlineSecrets[p];
      if (inline && !secretChanges.some(([name]) => name === p) && !store.has(p))
        store.set(p, inline);
    }
    for (const [p, v] of secretChanges) {
      if (v === null) store.delete(p);
      else store.set(p, v);
    }
    await writeConfigFile(file, body);

    const before = this.current.config;
    this.loaded = { ...result.loaded, file, inlineSecrets: {}, warnings: [] };
    this.current = resolveRuntime(this.loaded, this.env, this.overrides);
    const restartRequired = RESTART_KEYS.filter(
      (k) => JSON.stringify(getPath(before, k)) !== JSON.stringify(getPath(this.current.config, k)),
    );
    this.emit('changed', this.current);
    return { view: this.view(), restartRequired };
  }

  /** Sets one secret in the store (the CLI's `secrets set`, and the API). */
  setSecret(name: string, value: string | null): void {
    if (value === null) this.current.secrets.delete(name);
    else this.current.secrets.set(name, value);
    this.emit('changed', this.current);
  }
}

/** `patch` over `base`: objects merged key by key, null removes a key, anything else replaces. */
function mergeConfig(
  base: Record<string, unknown>,
  patch: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    const cur = out[k];
    if (v === null) {
      // Kept as null: for a secret it means "remove from the store", for any other key "default".
      out[k] = null;
    } else if (
      v &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      cur &&
      typeof cur === 'object' &&
      !Array.isArray(cur)
    ) {
      out[k] = mergeConfig(cur as Record<string, unknown>, v as Record<string, unknown>);
    } else out[k] = v;
  }
  return out;
}

/** A key set to null returns to its default: it leaves the file. */
function dropNulls(obj: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(obj)) {
    if (v === null) delete obj[k];
    else if (v && typeof v === 'object' && !Array.isArray(v))
      dropNulls(v as Record<string, unknown>);
  }
}
