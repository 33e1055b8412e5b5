// The README's first command, as a new user runs it: `npm start` installs what is missing,
// builds, writes a config with a local destination, and starts the daemon and its panel.
// It runs alone, before the other tests, because it rebuilds app/dist.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient, cleanEnv, freePort, waitFor } from '../helpers/daemon.js';
import { REPO_ROOT } from '../helpers/services.js';

let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('npm start on a machine with no configuration', () => {
  it('ends with the daemon answering, status locked, and the setup code working once', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'backupd-first-run-'));
    const port = await freePort();
    // CI unset: `npm ci` would reinstall node_modules under the running test runner.
    const child = spawn('npm', ['start'], {
      cwd: REPO_ROOT,
      env: cleanEnv({ BACKUPD_HOME: dir, BACKUPD_PORT: String(port), CI: undefined }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (out += d));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    try {
      const url = `http://127.0.0.1:${port}`;
      await waitFor(
        `npm start to bring the daemon up (output: ${out})`,
        async () =>
          (await fetch(`${url}/api/health`).catch(() => undefined))?.status === 200 || undefined,
        300_000,
        500,
      );
      const config = await readFile(path.join(dir, 'config.yaml'), 'utf8');
      expect(config).toMatch(/local:\n\s+enabled: true\n\s+path: .\/data\/second-disk/);
      expect(config).toContain(`api_port: ${port}`);

      const api = new ApiClient(url);
      expect((await api.get('/api/health')).json).toEqual({ status: 'ok', mode: 'running' });
      expect((await api.get('/api/status')).status).toBe(401);
      const code = await waitFor(
        'the setup code',
        () => /setup code[^\n]*\n\s*\n\s+([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4})/.exec(out)?.[1],
      );
      expect(out).toContain(`http://127.0.0.1:${port}/`);
      expect(
        (await api.post('/api/setup', { code, password: 'a long enough password' })).status,
      ).toBe(200);
      expect((await api.get('/api/status')).status).toBe(200);
      expect(
        (await new ApiClient(url).post('/api/setup', { code, password: 'a long enough password' }))
          .status,
      ).toBe(409);
      const panel = await fetch(`${url}/`);
      expect(panel.headers.get('content-type')).toContain('text/html');
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
  });
});
