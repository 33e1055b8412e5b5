// `backupd start` as a user meets it: first-run setup, sign-in, API keys, the panel, the
// OpenAPI document, CORS, and a clean stop.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiClient,
  cleanEnv,
  makeHome,
  runCli,
  startDaemon,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';

const PASSWORD = 'correct horse battery staple';
const DASHBOARD = 'https://my-dashboard.vercel.app';
let home: Home;
let daemon: RunningDaemon;
/** Signed in at setup; later tests use it after the guessing test has blocked new sign-ins. */
let admin: ApiClient;

beforeAll(async () => {
  home = await makeHome(() => ({ security: { cors_origins: [DASHBOARD] } }));
  daemon = await startDaemon(home, cleanEnv());
});
afterAll(async () => {
  await daemon?.stop();
  await home?.cleanup();
});

describe('a first start', () => {
  it('answers health and version without credentials, and refuses status', async () => {
    const api = new ApiClient(daemon.url);
    expect((await api.get('/api/health')).json).toEqual({ status: 'ok', mode: 'running' });
    expect((await api.get('/api/version')).json).toMatchObject({
      name: 'backupd',
      version: expect.any(String),
    });
    const status = await api.get('/api/status');
    expect(status.status).toBe(401);
    expect(status.json.error.code).toBe('unauthorized');
    expect((await api.get('/api/setup')).json).toEqual({ needed: true });
  });

  it('prints a setup code, and no password works before setup', async () => {
    expect(daemon.setupCode()).toMatch(/^[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}$/);
    const api = new ApiClient(daemon.url);
    const login = await api.post('/api/auth/login', { password: 'admin' });
    expect(login.status).toBe(409);
  });

  it('refuses a wrong setup code and a weak password, then accepts the code once', async () => {
    const api = new ApiClient(daemon.url);
    const code = daemon.setupCode()!;
    expect(
      (await api.post('/api/setup', { code: 'AAAA-BBBB-CCCC', password: PASSWORD })).status,
    ).toBe(403);
    const weak = await api.post('/api/setup', { code, password: 'short' });
    expect(weak.status).toBe(400);
    expect(weak.json.error.message).toContain('12 characters');
    const ok = await api.post('/api/setup', { code: code.toLowerCase(), password: PASSWORD });
    expect(ok.status).toBe(200);
    admin = api;
    expect(api.cookie).toBeDefined();
    expect((await api.get('/api/status')).status).toBe(200);
    const again = await new ApiClient(daemon.url).post('/api/setup', { code, password: PASSWORD });
    expect(again.status).toBe(409);
    expect((await api.get('/api/setup')).json).toEqual({ needed: false });
  });

  it('sets an HttpOnly, SameSite=Strict session cookie at login, and signs out', async () => {
    const api = new ApiClient(daemon.url);
    const r = await api.post('/api/auth/login', { password: PASSWORD });
    expect(r.status).toBe(200);
    expect(r.headers.get('set-cookie')).toMatch(/backupd_session=.+HttpOnly/i);
    expect(r.headers.get('set-cookie')).toMatch(/samesite=strict/i);
    expect((await api.get('/api/auth/session')).json).toEqual({
      authenticated: true,
      via: 'session',
    });
    await api.post('/api/auth/logout');
    expect((await api.get('/api/status')).status).toBe(401);
  });

  it('makes API keys that work as bearer tokens until revoked, and stores only hashes', async () => {
    const admin = new ApiClient(daemon.url);
    await admin.post('/api/auth/login', { password: PASSWORD });
    const created = await admin.post('/api/keys', { name: 'remote dashboard' });
    expect(created.status).toBe(201);
    const key = created.json.key as string;
    const script = new ApiClient(daemon.url);
    script.bearer = key;
    expect((await script.get('/api/status')).status).toBe(200);
    const listed = await admin.get('/api/keys');
    expect(listed.text).not.toContain(key);
    expect(listed.json.keys).toContainEqual(
      expect.objectContaining({ name: 'remote dashboard', revoked_at: null }),
    );
    expect((await admin.request('DELETE', `/api/keys/${created.json.id}`)).status).toBe(200);
    expect((await script.get('/api/status')).status).toBe(401);
    expect((await admin.request('DELETE', `/api/keys/${created.json.id}`)).status).toBe(404);
  });

  it('rate-limits password guessing', async () => {
    const api = new ApiClient(daemon.url);
    const codes: number[] = [];
    for (let i = 0; i < 6; i++)
      codes.push((await api.post('/api/auth/login', { password: `guess number ${i}` })).status);
    expect(codes.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
    const blocked = await api.post('/api/auth/login', { password: PASSWORD });
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('answers bad requests with a clear error body', async () => {
    const api = new ApiClient(daemon.url);
    const notJson = await fetch(`${daemon.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'x',
    });
    expect(notJson.status).toBe(415);
    const broken = await fetch(`${daemon.url}/api/setup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"code":',
    });
    expect(broken.status).toBe(400);
    expect(((await broken.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    const missing = await api.post('/api/setup', {});
    expect(missing.status).toBe(400);
    expect(missing.json.error.message).toContain('code');
    const unknown = await api.get('/api/nothing-here');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.fix).toContain('openapi');
  });

  it('allows CORS only for configured origins, and refuses changes from other origins', async () => {
    const pre = await fetch(`${daemon.url}/api/status`, {
      method: 'OPTIONS',
      headers: { origin: DASHBOARD, 'access-control-request-method': 'GET' },
    });
    expect(pre.headers.get('access-control-allow-origin')).toBe(DASHBOARD);
    expect(pre.headers.get('access-control-allow-credentials')).toBe('true');
    const other = await fetch(`${daemon.url}/api/status`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
    });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const csrf = await fetch(`${daemon.url}/api/auth/login`, {
      method: 'POST',
      headers: { origin: 'https://evil.example', 'content-type': 'application/json' },
      body: JSON.stringify({ password: PASSWORD }),
    });
    expect(csrf.status).toBe(403);
  });

  it('serves an OpenAPI 3.1 document covering every route', async () => {
    const doc = (await new ApiClient(daemon.url).get('/api/openapi.json')).json;
    expect(doc.openapi).toBe('3.1.0');
    for (const p of [
      '/api/health',
      '/api/version',
      '/api/status',
      '/api/config',
      '/api/logs',
      '/api/logs/stream',
      '/api/setup',
      '/api/keys/{id}',
    ]) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
    expect(doc.paths['/api/status'].get.security).toEqual([{ session: [] }, { bearer: [] }]);
    expect(doc.paths['/api/health'].get.security).toEqual([]);
  });

  it('serves the admin panel at / and on its routes', async () => {
    const root = await fetch(`${daemon.url}/`);
    expect(root.status).toBe(200);
    expect(root.headers.get('content-type')).toContain('text/html');
    const deep = await fetch(`${daemon.url}/logs`, { headers: { accept: 'text/html' } });
    expect(deep.status).toBe(200);
    expect(await deep.text()).toContain('<html');
  });

  it('stores its events and serves them filtered and paged', async () => {
    const api = admin;
    const all = await api.get('/api/logs?limit=2');
    expect(all.json.entries).toHaveLength(2);
    expect(all.json.next_cursor).toMatch(/^\d+$/);
    const older = await api.get(`/api/logs?limit=2&cursor=${all.json.next_cursor}`);
    expect(older.json.entries[0].id).toBeLessThan(all.json.entries[1].id);
    const warn = await api.get('/api/logs?level=warn&limit=1000');
    expect(
      warn.json.entries.every((e: { level: string }) =>
        ['warn', 'error', 'fatal'].includes(e.level),
      ),
    ).toBe(true);
    const auth = await api.get('/api/logs?source=auth&limit=1000');
    expect(auth.json.entries.length).toBeGreaterThan(0);
    expect(auth.json.entries.every((e: { source: string }) => e.source === 'auth')).toBe(true);
  });

  it('refuses a second pusher on the same state: another start, or sync --once', async () => {
    const second = await runCli(['start', '--config', home.config]);
    expect(second.code).not.toBe(0);
    expect(second.stderr).toMatch(/another backupd \(start, pid \d+\) is using the state/);
    const once = await runCli(['sync', '--once', '--config', home.config]);
    expect(once.code).not.toBe(0);
    expect(once.stderr).toContain('fix:');
    expect(once.stderr).toContain('POST /api/sync/force');
    // The running daemon did not notice.
    expect((await fetch(`${daemon.url}/api/health`)).status).toBe(200);
  });

  it('stops on SIGTERM with exit code 0', async () => {
    expect(await daemon.stop()).toBe(0);
    await expect(fetch(`${daemon.url}/api/health`)).rejects.toThrow();
    // Its lock went with it: a pass can run now.
    const once = await runCli(['sync', '--once', '--json', '--config', home.config]);
    expect(once.stderr).not.toMatch(/another backupd/);
    expect(JSON.parse(once.stdout).run_id).toBeGreaterThan(0);
  });
});
