// The configuration as the API reads and changes it: never a secret out, secrets into the
// store and never into the file, the file's comments kept, bad input refused untouched.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  ConfigService,
  loadConfigFile,
  resolveRuntime,
  SecretStore,
  type Config,
} from '../../src/config/index.js';
import type { Runtime } from '../../src/config/runtime.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-config-service-');
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

const ENV_SECRET = 'aws-secret-from-the-environment-1';
const STORE_SECRET = 'smtp-password-from-the-store-2';
const FILE_SECRET = 'eu-access-key-inline-in-the-file-3';
const GOOGLE_SECRET = 'google-refresh-token-in-the-store-4';

const ORIGINAL = yaml(
  '# Settings of the backup appliance (edited by hand)',
  'daemon:',
  '  state_dir: ./state # on the data disk',
  '  api_port: 8080',
  'sync:',
  '  # a short debounce: editors save often',
  '  watch_delay_seconds: 2',
  '  batch_size: 50',
  'destinations:',
  '  eu_provider:',
  `    access_key: ${FILE_SECRET}`,
);

/** A config file with one secret in the environment, one in the store and one inline. */
async function setup(text = ORIGINAL) {
  const dir = tmp();
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, text);
  const store = new SecretStore(
    path.join(dir, 'state', 'secrets.enc'),
    path.join(dir, 'secrets.key'),
  );
  store.set('notifications.email.smtp_password', STORE_SECRET);
  store.set('google.refresh_token', GOOGLE_SECRET);
  const env = { AWS_SECRET_ACCESS_KEY: ENV_SECRET };
  const loaded = await loadConfigFile(file);
  const service = new ConfigService(loaded, resolveRuntime(loaded, env), env);
  /** The store as a fresh start would read it. */
  const reread = () =>
    new SecretStore(path.join(dir, 'state', 'secrets.enc'), path.join(dir, 'secrets.key')).load();
  return { dir, file, service, reread };
}

/** What the panel sends: the configuration it was shown, with some changes. */
function edited(service: ConfigService, change: (c: Config) => void): Record<string, unknown> {
  const config = structuredClone(service.view().config);
  change(config);
  return config as unknown as Record<string, unknown>;
}

describe('ConfigService.view', () => {
  it('never contains a secret value, wherever the secret is kept', async () => {
    const { service } = await setup();
    const text = JSON.stringify(service.view());
    for (const value of [ENV_SECRET, STORE_SECRET, FILE_SECRET, GOOGLE_SECRET])
      expect(text).not.toContain(value);
    // The runtime does know them, so the view really removed them.
    expect(service.runtime.secret('destinations.eu_provider.access_key')).toBe(FILE_SECRET);
  });

  it('tells whether each secret is set and where from', async () => {
    const { service } = await setup();
    const { secrets } = service.view();
    expect(secrets['destinations.aws_s3.secret_access_key']).toEqual({
      set: true,
      origin: 'env',
      env: 'AWS_SECRET_ACCESS_KEY',
    });
    expect(secrets['notifications.email.smtp_password']).toMatchObject({
      set: true,
      origin: 'store',
    });
    expect(secrets['destinations.eu_provider.access_key']).toMatchObject({
      set: true,
      origin: 'file',
    });
    expect(secrets['destinations.aws_s3.access_key_id']).toEqual({
      set: false,
      origin: null,
      env: 'AWS_ACCESS_KEY_ID',
    });
    expect(secrets['google.refresh_token']).toMatchObject({ set: true, origin: 'store' });
  });

  it('carries the warning about the inline secret', async () => {
    const { service } = await setup();
    expect(service.view().warnings.map((w) => w.path)).toEqual([
      'destinations.eu_provider.access_key',
    ]);
  });
});

describe('ConfigService.update', () => {
  it('a secret given as text goes into the store and not into the file', async () => {
    const { file, service, reread } = await setup();
    const value = 'AKIA-a-new-access-key-id-5';
    await service.update(
      edited(service, (c) => {
        c.destinations.aws_s3.access_key_id = value;
      }),
    );
    expect(readFileSync(file, 'utf8')).not.toContain(value);
    expect(reread().get('destinations.aws_s3.access_key_id')).toBe(value);
    expect(service.runtime.secret('destinations.aws_s3.access_key_id')).toBe(value);
    expect(service.view().secrets['destinations.aws_s3.access_key_id']).toMatchObject({
      set: true,
      origin: 'store',
    });
    expect(JSON.stringify(service.view())).not.toContain(value);
  });

  it('null removes a secret from the store; absent leaves it as it is', async () => {
    const { service, reread } = await setup();
    await service.update(edited(service, () => {}));
    expect(reread().get('notifications.email.smtp_password')).toBe(STORE_SECRET);

    const body = edited(service, () => {}) as { notifications: { email: Record<string, unknown> } };
    body.notifications.email.smtp_password = null;
    await service.update(body);
    expect(reread().has('notifications.email.smtp_password')).toBe(false);
    expect(service.view().secrets['notifications.email.smtp_password']).toMatchObject({
      set: false,
      origin: null,
    });
    // Other secrets in the store are untouched.
    expect(reread().get('google.refresh_token')).toBe(GOOGLE_SECRET);
  });

  it('moves a secret written inline in the file into the store', async () => {
    const { file, service, reread } = await setup();
    await service.update(edited(service, (c) => void (c.sync.batch_size = 60)));
    expect(readFileSync(file, 'utf8')).not.toContain(FILE_SECRET);
    expect(reread().get('destinations.eu_provider.access_key')).toBe(FILE_SECRET);
    expect(service.runtime.secret('destinations.eu_provider.access_key')).toBe(FILE_SECRET);
    const view = service.view();
    expect(view.secrets['destinations.eu_provider.access_key']!.origin).toBe('store');
    expect(view.warnings).toEqual([]);
  });

  it('the secret from the environment is never written anywhere', async () => {
    const { dir, file, service, reread } = await setup();
    await service.update(edited(service, (c) => void (c.sync.batch_size = 60)));
    expect(readFileSync(file, 'utf8')).not.toContain(ENV_SECRET);
    expect(reread().has('destinations.aws_s3.secret_access_key')).toBe(false);
    expect(readFileSync(path.join(dir, 'state', 'secrets.enc')).includes(ENV_SECRET)).toBe(false);
  });

  it('keeps the comments of the file when another key changes', async () => {
    const { file, service } = await setup();
    await service.update(edited(service, (c) => void (c.sync.batch_size = 200)));
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('# Settings of the backup appliance (edited by hand)');
    expect(text).toContain('# a short debounce: editors save often');
    expect(text).toContain('# on the data disk');
    expect(text).toMatch(/batch_size: 200/);
    expect(text).toMatch(/watch_delay_seconds: 2/);
    // What was written is what a restart reads.
    const again = await loadConfigFile(file);
    expect(again.config.sync.batch_size).toBe(200);
    expect(again.config.sync.watch_delay_seconds).toBe(2);
    expect(again.inlineSecrets).toEqual({});
  });

  it('invalid input is refused naming the key, and the file is unchanged', async () => {
    const { file, service } = await setup();
    const before = readFileSync(file, 'utf8');
    const body = edited(service, () => {}) as { sync: Record<string, unknown> };
    body.sync.batch_size = 'many';
    const err = await service.update(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual(['sync.batch_size']);
    expect((err as ConfigError).problems[0]!.message).toContain('many');
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(service.runtime.config.sync.batch_size).toBe(50);
  });

  it('a secret too short to be redacted is refused, and nothing is stored', async () => {
    const { file, service, reread } = await setup();
    const before = readFileSync(file, 'utf8');
    const err = await service
      .update(edited(service, (c) => void (c.destinations.aws_s3.access_key_id = 'abc')))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path)).toEqual([
      'destinations.aws_s3.access_key_id',
    ]);
    expect(reread().has('destinations.aws_s3.access_key_id')).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('an unknown key is refused', async () => {
    const { service } = await setup();
    const body = edited(service, () => {}) as { sync: Record<string, unknown> };
    body.sync.watch_dely_seconds = 3;
    const err = await service.update(body).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems[0]!.path).toBe('sync.watch_dely_seconds');
  });

  it('reports the keys that need a restart, and tells its listeners', async () => {
    const { service } = await setup();
    const seen: Runtime[] = [];
    service.on('changed', (rt) => seen.push(rt));

    const batch = await service.update(edited(service, (c) => void (c.sync.batch_size = 70)));
    expect(batch.restartRequired).toEqual([]);
    expect(batch.view.config.sync.batch_size).toBe(70);

    const port = await service.update(edited(service, (c) => void (c.daemon.api_port = 9090)));
    expect(port.restartRequired).toEqual(['daemon.api_port']);
    expect(seen.map((rt) => rt.config.daemon.api_port)).toEqual([8080, 9090]);
    expect(service.runtime.config.daemon.api_port).toBe(9090);
  });

  it('a body that is not an object is refused', async () => {
    const { service } = await setup();
    await expect(service.update([1, 2])).rejects.toBeInstanceOf(ConfigError);
    await expect(service.update(null)).rejects.toBeInstanceOf(ConfigError);
  });

  it('keeps every key a partial update does not name, and null returns a key to its default', async () => {
    const { file, service } = await setup();
    await service.update({ sync: { batch_size: 7 } });
    const after = service.view().config;
    expect(after.sync.batch_size).toBe(7);
    expect(after.sync.watch_delay_seconds).toBe(2);
    expect(after.daemon.state_dir).toBe('./state');
    await service.update({ sync: { watch_delay_seconds: null } });
    expect(service.view().config.sync.watch_delay_seconds).toBe(5);
    expect(service.view().config.sync.batch_size).toBe(7);
    expect(readFileSync(file, 'utf8')).not.toContain('watch_delay_seconds');
  });
});
