// What the daemon derives from the file and the environment: paths, the database, the Google
// endpoints, and where each secret comes from.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  parseConfigText,
  parseDatabaseUrl,
  resolveRuntime,
  RuntimeError,
  SecretStore,
} from '../../src/config/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-runtime-');
const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;
/** Keeps the state (and its secrets store) inside the test's folder. */
const STATE = yaml('daemon:', '  state_dir: ./state');

/** A configuration file in a fresh folder, loaded as the daemon loads it. */
function setup(text: string) {
  const dir = tmp();
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, text);
  return { dir, file, loaded: parseConfigText(text, file) };
}

describe('parseDatabaseUrl', () => {
  const stateDir = '/srv/backup/.backupd';

  it('defaults to state.db in the state folder', () => {
    expect(parseDatabaseUrl(undefined, stateDir)).toEqual({
      kind: 'sqlite',
      path: '/srv/backup/.backupd/state.db',
      url: 'sqlite:////srv/backup/.backupd/state.db',
    });
    expect(parseDatabaseUrl('', stateDir).path).toBe('/srv/backup/.backupd/state.db');
  });

  it('sqlite:///relative.db is relative to the state folder', () => {
    expect(parseDatabaseUrl('sqlite:///rel.db', stateDir).path).toBe('/srv/backup/.backupd/rel.db');
    expect(parseDatabaseUrl('sqlite:///sub/rel.db', stateDir).path).toBe(
      '/srv/backup/.backupd/sub/rel.db',
    );
  });

  it('sqlite:////absolute.db is an absolute path', () => {
    expect(parseDatabaseUrl('sqlite:////var/lib/backupd/abs.db', stateDir).path).toBe(
      '/var/lib/backupd/abs.db',
    );
  });

  it('a plain path is accepted, relative ones against the state folder', () => {
    expect(parseDatabaseUrl('/data/state.db', stateDir).path).toBe('/data/state.db');
    expect(parseDatabaseUrl('other.db', stateDir).path).toBe('/srv/backup/.backupd/other.db');
  });

  it('postgres:// is refused with a clear message', () => {
    for (const url of ['postgres://u:pw@db/backupd', 'postgresql://db/backupd']) {
      expect(() => parseDatabaseUrl(url, stateDir)).toThrow(RuntimeError);
      expect(() => parseDatabaseUrl(url, stateDir)).toThrow(/PostgreSQL.*not support/);
    }
  });

  it('an unknown scheme is refused without showing the password in it', () => {
    let err: unknown;
    try {
      parseDatabaseUrl('mysql://admin:hunter2secret@db.example.com/backupd', stateDir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RuntimeError);
    expect((err as Error).message).toMatch(/not understood/);
    expect((err as Error).message).toContain('sqlite:///');
    expect((err as Error).message).not.toContain('hunter2secret');
  });
});

describe('resolveRuntime paths', () => {
  it('relative paths are resolved against the folder of the configuration file', () => {
    const { dir, loaded } = setup(
      yaml(
        'sources:',
        '  google_drive:',
        '    local_path: mirror/drive',
        '  google_photos:',
        '    local_path: /abs/photos',
        'daemon:',
        '  log_file: logs/backupd.log',
        '  pid_file: run/backupd.pid',
      ),
    );
    const rt = resolveRuntime(loaded, {});
    expect(rt.baseDir).toBe(dir);
    expect(rt.configFile).toBe(path.join(dir, 'config.yaml'));
    expect(rt.sourcePath('google_drive')).toBe(path.join(dir, 'mirror/drive'));
    expect(rt.sourcePath('google_photos')).toBe('/abs/photos');
    expect(rt.logFile).toBe(path.join(dir, 'logs/backupd.log'));
    expect(rt.pidFile).toBe(path.join(dir, 'run/backupd.pid'));
  });

  it('the state folder defaults to .backupd beside the Drive mirror folder', () => {
    const { dir, loaded } = setup(
      yaml('sources:', '  google_drive:', '    local_path: disk/drive'),
    );
    const rt = resolveRuntime(loaded, {});
    expect(rt.stateDir).toBe(path.join(dir, 'disk', '.backupd'));
    expect(rt.database.path).toBe(path.join(dir, 'disk', '.backupd', 'state.db'));
    expect(rt.logFile).toBe(path.join(dir, 'disk', '.backupd', 'logs', 'backupd.log'));
    expect(rt.secrets.file).toBe(path.join(dir, 'disk', '.backupd', 'secrets.enc'));
    // The key is kept beside the config, off the data disk.
    expect(rt.secrets.keyFile).toBe(path.join(dir, 'secrets.key'));
  });

  it('daemon.state_dir and DATABASE_URL move the state', () => {
    const { dir, loaded } = setup(STATE);
    const rt = resolveRuntime(loaded, { DATABASE_URL: 'sqlite:///custom.db' });
    expect(rt.stateDir).toBe(path.join(dir, 'state'));
    expect(rt.database.path).toBe(path.join(dir, 'state', 'custom.db'));
  });

  it('a bad DATABASE_URL stops the start with a RuntimeError', () => {
    const { loaded } = setup(STATE);
    expect(() => resolveRuntime(loaded, { DATABASE_URL: 'postgres://db/x' })).toThrow(RuntimeError);
  });
});

describe('resolveRuntime endpoints', () => {
  it('Google endpoints default to Google', () => {
    const { loaded } = setup(STATE);
    const rt = resolveRuntime(loaded, {});
    expect(rt.google).toEqual({
      apiRoot: 'https://www.googleapis.com',
      oauthTokenUrl: 'https://oauth2.googleapis.com/token',
      photosPickerRoot: 'https://photospicker.googleapis.com',
    });
  });

  it('GOOGLE_API_ROOT, GOOGLE_OAUTH_TOKEN_URL and GOOGLE_PHOTOS_PICKER_ROOT override them', () => {
    const { loaded } = setup(STATE);
    const rt = resolveRuntime(loaded, {
      GOOGLE_API_ROOT: 'http://127.0.0.1:9001/',
      GOOGLE_OAUTH_TOKEN_URL: 'http://127.0.0.1:9002/token',
      GOOGLE_PHOTOS_PICKER_ROOT: 'http://127.0.0.1:9003',
    });
    expect(rt.google).toEqual({
      apiRoot: 'http://127.0.0.1:9001',
      oauthTokenUrl: 'http://127.0.0.1:9002/token',
      photosPickerRoot: 'http://127.0.0.1:9003',
    });
  });

  it('AWS_ENDPOINT_URL in plain http is refused for a remote host, like a configured endpoint', () => {
    const enabled = setup(
      STATE + yaml('destinations:', '  aws_s3:', '    enabled: true', '    bucket: photos'),
    );
    expect(() =>
      resolveRuntime(enabled.loaded, { AWS_ENDPOINT_URL: 'http://s3.example.com' }),
    ).toThrow(/AWS_ENDPOINT_URL http:\/\/s3.example.com is plain http/);
    expect(() =>
      resolveRuntime(enabled.loaded, { AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' }),
    ).not.toThrow();
    expect(() =>
      resolveRuntime(enabled.loaded, { AWS_ENDPOINT_URL: 'https://s3.example.com' }),
    ).not.toThrow();
    const insecure = setup(
      STATE +
        yaml(
          'destinations:',
          '  aws_s3:',
          '    enabled: true',
          '    bucket: photos',
          '    ssl_verify: false',
        ),
    );
    expect(() =>
      resolveRuntime(insecure.loaded, { AWS_ENDPOINT_URL: 'http://s3.example.com' }),
    ).not.toThrow();
  });

  it('AWS_ENDPOINT_URL sets the aws_s3 endpoint only when the file has none', () => {
    const env = { AWS_ENDPOINT_URL: 'http://127.0.0.1:7480' };
    const without = setup(STATE);
    const rt1 = resolveRuntime(without.loaded, env);
    expect(rt1.destinationEndpoint('aws_s3')).toBe('http://127.0.0.1:7480');
    expect(rt1.destinationEndpoint('eu_provider')).toBeUndefined();
    expect(resolveRuntime(without.loaded, {}).destinationEndpoint('aws_s3')).toBeUndefined();

    const withEndpoint = setup(
      STATE + yaml('destinations:', '  aws_s3:', '    endpoint: https://s3.example.com'),
    );
    expect(resolveRuntime(withEndpoint.loaded, env).destinationEndpoint('aws_s3')).toBe(
      'https://s3.example.com',
    );
  });
});

describe('resolveRuntime secrets', () => {
  const KEY = 'destinations.aws_s3.secret_access_key';
  const inFile = 'secret-from-the-config-file';
  const inStore = 'secret-from-the-secrets-store';
  const inEnv = 'secret-from-the-environment';

  function withInlineSecret() {
    return setup(
      yaml(
        'daemon:',
        '  state_dir: ./state',
        'destinations:',
        '  aws_s3:',
        `    secret_access_key: ${inFile}`,
      ),
    );
  }

  it('the file is used when nothing else holds the secret', () => {
    const { loaded } = withInlineSecret();
    const rt = resolveRuntime(loaded, {});
    expect(rt.secret(KEY)).toBe(inFile);
    expect(rt.secretOrigin(KEY)).toBe('file');
  });

  it('the store wins over the file', () => {
    const { loaded } = withInlineSecret();
    resolveRuntime(loaded, {}).secrets.set(KEY, inStore);
    const rt = resolveRuntime(loaded, {});
    expect(rt.secret(KEY)).toBe(inStore);
    expect(rt.secretOrigin(KEY)).toBe('store');
  });

  it('the environment wins over the store and the file, and both values stay redacted', () => {
    const { loaded } = withInlineSecret();
    resolveRuntime(loaded, {}).secrets.set(KEY, inStore);
    const rt = resolveRuntime(loaded, { AWS_SECRET_ACCESS_KEY: inEnv });
    expect(rt.secret(KEY)).toBe(inEnv);
    expect(rt.secretOrigin(KEY)).toBe('env');
    expect(rt.secretValues()).toEqual(expect.arrayContaining([inEnv, inStore, inFile]));
  });

  it('an unset secret has no value and no origin', () => {
    const { loaded } = setup(STATE);
    const rt = resolveRuntime(loaded, {});
    expect(rt.secret('destinations.aws_s3.access_key_id')).toBeUndefined();
    expect(rt.secretOrigin('destinations.aws_s3.access_key_id')).toBeUndefined();
    expect(rt.secretValues()).toEqual([]);
  });

  it('the Google secrets come from GOOGLE_* variables or the store', () => {
    const { dir, loaded } = setup(STATE);
    new SecretStore(path.join(dir, 'state', 'secrets.enc'), path.join(dir, 'secrets.key')).set(
      'google.refresh_token',
      'refresh-token-in-store',
    );
    const rt = resolveRuntime(loaded, { GOOGLE_CLIENT_SECRET: 'client-secret-in-env' });
    expect(rt.secret('google.refresh_token')).toBe('refresh-token-in-store');
    expect(rt.secretOrigin('google.refresh_token')).toBe('store');
    expect(rt.secret('google.client_secret')).toBe('client-secret-in-env');
    expect(rt.secretOrigin('google.client_secret')).toBe('env');
    expect(rt.secretValues()).toEqual(
      expect.arrayContaining(['refresh-token-in-store', 'client-secret-in-env']),
    );
  });

  it('daemon.api_key comes from API_SECRET_KEY', () => {
    const { loaded } = setup(STATE);
    const rt = resolveRuntime(loaded, { API_SECRET_KEY: 'an-api-key-of-enough-length-42' });
    expect(rt.secret('daemon.api_key')).toBe('an-api-key-of-enough-length-42');
    expect(rt.secretOrigin('daemon.api_key')).toBe('env');
  });
});
