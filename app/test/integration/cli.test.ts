// `backupd config check`, `status` and `secrets`, run as a user runs them.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanEnv, makeHome, runCli, type Home } from '../helpers/daemon.js';

let home: Home | undefined;
afterEach(async () => {
  await home?.cleanup();
  home = undefined;
});

describe('backupd config check', () => {
  it('accepts a valid file and exits 0', async () => {
    home = await makeHome();
    const r = await runCli(['config', 'check', '--config', home.config]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('is valid');
    expect(r.code).toBe(0);
  });

  it('names sync.batch_size when it is "many", with its line, and exits non-zero', async () => {
    home = await makeHome(() => ({ sync: { batch_size: 'many' } }));
    const r = await runCli(['config', 'check', '--config', home.config]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/sync\.batch_size \(line \d+\): got "many", expected a number/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('names an unknown key and suggests the right one', async () => {
    home = await makeHome(() => ({ sync: { watch_dely_seconds: 3 }, colour: 'blue' }));
    const r = await runCli(['config', 'check', '--config', home.config]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('sync.watch_dely_seconds');
    expect(r.stderr).toContain('Did you mean "watch_delay_seconds"?');
    expect(r.stderr).toMatch(/colour \(line \d+\): unknown key/);
  });

  it('reports every problem as JSON with --json', async () => {
    home = await makeHome(() => ({ sync: { batch_size: 'many', retry_attempts: -1 } }));
    const r = await runCli(['config', 'check', '--json', '--config', home.config]);
    expect(r.code).toBe(2);
    const out = JSON.parse(r.stdout) as { ok: boolean; problems: { path: string }[] };
    expect(out.ok).toBe(false);
    expect(out.problems.map((p) => p.path).sort()).toEqual([
      'sync.batch_size',
      'sync.retry_attempts',
    ]);
  });

  it('explains a missing file without a stack trace', async () => {
    home = await makeHome();
    const missing = path.join(home.dir, 'nope.yaml');
    const r = await runCli(['config', 'check', '--config', missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${missing}: no configuration file here`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('finds the file through BACKUPD_CONFIG, then ./config.yaml', async () => {
    home = await makeHome(() => ({ sync: { batch_size: 'many' } }));
    const viaEnv = await runCli(['config', 'check'], {
      env: cleanEnv({ BACKUPD_CONFIG: home.config }),
    });
    expect(viaEnv.stderr).toContain(home.config);
    const viaCwd = await runCli(['config', 'check'], { cwd: home.dir });
    // /etc/backupd/config.yaml comes before ./config.yaml; only when it is absent is the cwd used.
    if (viaCwd.stderr.includes('/etc/backupd')) return;
    expect(viaCwd.stderr).toContain(home.config);
  });

  it('refuses plain http to a remote S3 endpoint unless ssl_verify is false', async () => {
    home = await makeHome(() => ({
      destinations: {
        aws_s3: { enabled: true, bucket: 'photos', endpoint: 'http://s3.example.com' },
      },
    }));
    const r = await runCli(['config', 'check', '--config', home.config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('destinations.aws_s3.endpoint');
    expect(r.stderr).toContain('plain http://');
    await writeFile(
      home.config,
      (await readFile(home.config, 'utf8')) + 'security:\n  ssl_verify: false\n',
    );
    expect((await runCli(['config', 'check', '--config', home.config])).code).toBe(0);
  });

  it('warns about a secret written in the file and names the command that moves it', async () => {
    home = await makeHome(() => ({ daemon: { api_key: 'k'.repeat(32) } }));
    const r = await runCli(['config', 'check', '--config', home.config]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('warning: daemon.api_key');
    expect(r.stdout).toContain('backupd secrets set daemon.api_key');
    expect(r.stdout).not.toContain('k'.repeat(32));
  });
});

describe('backupd secrets', () => {
  it('stores a secret from standard input, lists its name and never prints the value', async () => {
    home = await makeHome();
    const value = 'AKIA-super-secret-value-123';
    const set = await runCli(
      ['secrets', 'set', 'destinations.aws_s3.secret_access_key', '--config', home.config],
      { input: `${value}\n` },
    );
    expect(set.stderr).toBe('');
    expect(set.code).toBe(0);
    const list = await runCli(['secrets', 'list', '--config', home.config]);
    expect(list.stdout).toContain('destinations.aws_s3.secret_access_key');
    expect(list.stdout + list.stderr + set.stdout).not.toContain(value);
    const stored = await readFile(path.join(home.dir, 'data', 'mirror', '.backupd', 'secrets.enc'));
    expect(stored.includes(Buffer.from(value))).toBe(false);
    const del = await runCli([
      'secrets',
      'delete',
      'destinations.aws_s3.secret_access_key',
      '--config',
      home.config,
    ]);
    expect(del.stdout).toContain('removed');
  });

  it('refuses an empty value and stores nothing', async () => {
    home = await makeHome();
    const r = await runCli(['secrets', 'set', 'daemon.api_key', '--config', home.config], {
      input: '\n',
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('too short');
    expect((await runCli(['secrets', 'list', '--config', home.config])).stdout).toContain(
      'No secrets stored',
    );
  });
});

describe('backupd status', () => {
  it('describes a fresh appliance', async () => {
    home = await makeHome();
    const r = await runCli(['status', '--json', '--config', home.config]);
    expect(r.stderr).toBe('');
    const s = JSON.parse(r.stdout) as {
      state: string;
      destinations: { name: string; health: string }[];
      sources: { name: string }[];
    };
    expect(s.state).toBe('idle');
    expect(s.sources.map((x) => x.name)).toEqual(['google_drive', 'google_photos']);
    expect(s.destinations).toEqual([expect.objectContaining({ name: 'local', health: 'unknown' })]);
  });

  it('refuses DATABASE_URL=postgres:// with a clear message', async () => {
    home = await makeHome();
    const r = await runCli(['status', '--config', home.config], {
      env: cleanEnv({ DATABASE_URL: 'postgres://u:p@db/backup' }),
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('PostgreSQL');
    expect(r.stderr).not.toContain('u:p@');
  });

  it('puts the state where DATABASE_URL says', async () => {
    home = await makeHome();
    const db = path.join(home.dir, 'elsewhere', 'state.db');
    const r = await runCli(['status', '--config', home.config], {
      env: cleanEnv({ DATABASE_URL: `sqlite:///${db}` }),
    });
    expect(r.code).toBe(0);
    await expect(readFile(db)).resolves.toBeInstanceOf(Buffer);
  });
});
