// No secret value, wherever it is kept (the config file, the environment, the encrypted store,
// set through the API), appears in any log line, any API answer, the daemon's console output or
// the metadata copied to the destinations, even when a user pastes one into the wrong field.
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  ApiClient,
  cleanEnv,
  makeHome,
  runCli,
  setUp,
  startDaemon,
  type Home,
} from '../helpers/daemon.js';
import { loadTestServices } from '../helpers/services.js';
import { testRclone } from '../helpers/trees.js';

const secret = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;
let home: Home;
afterAll(async () => {
  await home?.cleanup();
});

async function readAll(dir: string): Promise<string> {
  let text = '';
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) text += await readFile(path.join(e.parentPath, e.name), 'utf8');
  }
  return text;
}

describe('secrets never leave', () => {
  it('stay out of logs, answers, console output and the metadata at the destinations', async () => {
    const svc = loadTestServices();
    const bucket = `secrets-${randomBytes(4).toString('hex')}`;
    const s = {
      apiKeyInFile: secret('apikey-in-file'),
      googleClientSecret: secret('google-client'),
      googleRefresh: secret('google-refresh'),
      smtpPassword: secret('smtp-password'),
    };
    home = await makeHome(() => ({
      daemon: { api_key: s.apiKeyInFile },
      destinations: {
        local: { enabled: false },
        aws_s3: {
          enabled: true,
          bucket,
          endpoint: svc.s3.endpoint,
          region: svc.s3.region,
          storage_class: 'STANDARD',
          server_side_encryption: 'none',
        },
        eu_provider: {
          enabled: true,
          type: 's3',
          bucket,
          prefix: 'eu',
          endpoint: svc.s3.endpoint,
          region: svc.s3.region,
        },
      },
    }));
    // The S3 keys: for aws_s3 from the environment, for eu_provider from the encrypted store.
    const env = cleanEnv({
      AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
      GOOGLE_CLIENT_ID: 'client-id.apps.googleusercontent.com',
      GOOGLE_CLIENT_SECRET: s.googleClientSecret,
      GOOGLE_REFRESH_TOKEN: s.googleRefresh,
    });
    for (const [name, value] of [
      ['destinations.eu_provider.access_key', svc.s3.accessKeyId],
      ['destinations.eu_provider.secret_key', svc.s3.secretAccessKey],
    ]) {
      expect(
        (await runCli(['secrets', 'set', name!, '--config', home.config], { env, input: value }))
          .code,
      ).toBe(0);
    }
    const values = [...Object.values(s), svc.s3.secretAccessKey];
    const answers: string[] = [];

    let daemon = await startDaemon(home, env);
    try {
      const admin = await setUp(daemon);
      // The key from the file works as a bearer token: the secret is really in use.
      const script = new ApiClient(daemon.url);
      script.bearer = s.apiKeyInFile;
      expect((await script.get('/api/status')).status).toBe(200);

      const view = await admin.get('/api/config');
      expect(view.json.secrets['daemon.api_key']).toEqual({
        set: true,
        origin: 'file',
        env: 'API_SECRET_KEY',
      });
      expect(view.json.secrets['destinations.aws_s3.secret_access_key']).toMatchObject({
        set: true,
        origin: 'env',
      });
      expect(view.json.secrets['destinations.eu_provider.secret_key']).toMatchObject({
        set: true,
        origin: 'store',
      });
      answers.push(view.text);

      // A secret set through the API, and one pasted into the wrong field.
      const config = view.json.config;
      config.notifications.email = {
        enabled: true,
        smtp_server: svc.smtp.host,
        smtp_port: svc.smtp.port,
        from: 'box@example.com',
        to: 'me@example.com',
        smtp_password: s.smtpPassword,
      };
      const put = await admin.put('/api/config', config);
      expect(put.status).toBe(200);
      expect(put.json.secrets['notifications.email.smtp_password']).toMatchObject({
        set: true,
        origin: 'store',
      });
      // The inline api_key moved from the file into the store.
      expect(put.json.secrets['daemon.api_key']).toMatchObject({ set: true, origin: 'store' });
      answers.push(put.text);
      const wrongField = await admin.put('/api/config', {
        ...put.json.config,
        sync: { mode: s.googleRefresh },
      });
      expect(wrongField.status).toBe(400);
      expect(wrongField.json.error.message).toContain('sync.mode');
      answers.push(wrongField.text);

      // One pusher per state: the pass runs while the daemon is stopped, then the daemon comes
      // back (same address, same sessions) and serves what the pass logged.
      expect(await daemon.stop()).toBe(0);
      const sync = await runCli(['sync', '--once', '--json', '--config', home.config], { env });
      expect(sync.code).toBe(0);
      answers.push(sync.stdout, sync.stderr);
      daemon = await startDaemon(home, env);
      expect(daemon.url).toBe(admin.url);

      for (const p of [
        '/api/status',
        '/api/config',
        '/api/keys',
        '/api/logs?limit=1000',
        '/api/openapi.json',
        '/api/auth/session',
        '/api/setup',
        '/api/version',
      ]) {
        const r = await admin.get(p);
        expect(r.status).toBe(200);
        answers.push(r.text);
      }
      const stream = await fetch(`${daemon.url}/api/logs/stream`, {
        headers: { cookie: admin.cookie!, 'last-event-id': '1' },
      });
      const reader = stream.body!.getReader();
      let sse = '';
      while (!sse.includes('sync pass finished'))
        sse += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
      answers.push(sse);
    } finally {
      expect(await daemon.stop()).toBe(0);
    }

    const logs = await readAll(path.join(home.dir, 'data', 'mirror', '.backupd', 'logs'));
    expect(logs).toContain('sync pass finished');
    const configFile = await readFile(home.config, 'utf8');
    const metaDir = path.join(home.dir, 'meta');
    await testRclone('copy', `S3:${bucket}/.backupd`, metaDir);
    const meta = await readFile(path.join(metaDir, 'config.yaml'), 'utf8');
    expect(meta).toContain('smtp_server');
    await testRclone('purge', `S3:${bucket}`);

    const everything = {
      logs,
      console: daemon.output(),
      answers: answers.join('\n'),
      configFile,
      meta,
    };
    for (const [where, text] of Object.entries(everything)) {
      for (const v of values) expect(text.includes(v), `${where} contains a secret`).toBe(false);
    }
  });
});
