// The built daemon (app/dist), run the way a user runs it: a config file in a folder of its
// own, `backupd start` as a child process, the CLI for one-shot commands.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { REPO_ROOT } from './services.js';

export const CLI = path.join(REPO_ROOT, 'app', 'dist', 'cli', 'main.js');

/** Waits for a condition, polling, with a bound; fails with the last reason. */
export async function waitFor<T>(
  /** What is awaited; a function is asked at the timeout, to say what was seen last. */
  what: string | (() => string),
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}${last ? `: ${String(last)}` : ''}`,
  );
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface Home {
  dir: string;
  config: string;
  port: number;
  drive: string;
  photos: string;
  secondDisk: string;
  cleanup(): Promise<void>;
}

/** A folder with a config.yaml: mirror under ./data, a local destination, a free port. */
export async function makeHome(
  extra: (h: Omit<Home, 'cleanup'>) => Record<string, unknown> = () => ({}),
): Promise<Home> {
  const dir = await mkdtemp(path.join(tmpdir(), 'backupd-test-'));
  const port = await freePort();
  const h = {
    dir,
    config: path.join(dir, 'config.yaml'),
    port,
    drive: path.join(dir, 'data', 'mirror', 'google-drive'),
    photos: path.join(dir, 'data', 'mirror', 'google-photos'),
    secondDisk: path.join(dir, 'data', 'second-disk'),
  };
  await mkdir(h.drive, { recursive: true });
  await mkdir(h.photos, { recursive: true });
  const base: Record<string, unknown> = {
    sources: {
      google_drive: { local_path: './data/mirror/google-drive' },
      google_photos: { local_path: './data/mirror/google-photos' },
    },
    destinations: { local: { enabled: true, path: './data/second-disk' } },
    daemon: { api_host: '127.0.0.1', api_port: port, log_level: 'DEBUG' },
  };
  await writeFile(h.config, stringify(deepMerge(base, extra(h))));
  return { ...h, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function deepMerge(
  a: Record<string, unknown>,
  b: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      cur &&
      typeof cur === 'object' &&
      !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The environment for the daemon: this one, less anything that would configure it by accident. */
export function cleanEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const ours =
    /^(BACKUPD_|GOOGLE_|AWS_|EU_PROVIDER_|API_SECRET_KEY$|DATABASE_URL$|NOTIFY_SOCKET$|WATCHDOG_)/;
  for (const [k, v] of Object.entries(process.env))
    if (!ours.test(k) || k === 'AWS_CA_BUNDLE') env[k] = v;
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: opts.env ?? cleanEnv(),
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

export interface RunningDaemon {
  child: ChildProcess;
  url: string;
  output: () => string;
  setupCode: () => string | undefined;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export async function startDaemon(
  home: Pick<Home, 'config' | 'port'>,
  env: NodeJS.ProcessEnv = cleanEnv(),
): Promise<RunningDaemon> {
  const child = spawn(process.execPath, [CLI, 'start', '--config', home.config], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${home.port}`;
  let dead = false;
  void exited.then(() => (dead = true));
  await waitFor(`the daemon to answer on ${url} (output so far: ${out})`, async () => {
    if (dead) throw new Error(`the daemon exited: ${out}`);
    const r = await fetch(`${url}/api/health`).catch(() => undefined);
    return r?.status === 200 || undefined;
  });
  return {
    child,
    url,
    output: () => out,
    setupCode: () => /\b([2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4})\b/.exec(out)?.[1],
    async stop() {
      if (!dead) child.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (!dead) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A signed-in client of the API (cookie jar of one cookie). */
export class ApiClient {
  cookie: string | undefined;
  bearer: string | undefined;
  constructor(readonly url: string) {}

  async request(
    method: string,
    p: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; json: any; text: string; headers: Headers }> {
    const h: Record<string, string> = { ...headers };
    if (body !== undefined) h['content-type'] = 'application/json';
    if (this.cookie) h.cookie = this.cookie;
    if (this.bearer) h.authorization = `Bearer ${this.bearer}`;
    const r = await fetch(`${this.url}${p}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const set = r.headers.get('set-cookie');
    if (set) {
      const m = /backupd_session=([^;]*)/.exec(set);
      if (m) this.cookie = m[1] ? `backupd_session=${m[1]}` : undefined;
    }
    const text = await r.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.status, json, text, headers: r.headers };
  }

  get(p: string) {
    return this.request('GET', p);
  }
  post(p: string, body: unknown = {}) {
    return this.request('POST', p, body);
  }
  put(p: string, body: unknown) {
    return this.request('PUT', p, body);
  }
}

/** Runs the first-run setup with the code the daemon printed; returns a signed-in client. */
export async function setUp(
  d: RunningDaemon,
  password = 'correct horse battery staple',
): Promise<ApiClient> {
  const api = new ApiClient(d.url);
  const code = await waitFor('the setup code in the output', () => d.setupCode());
  const r = await api.post('/api/setup', { code, password });
  if (r.status !== 200) throw new Error(`setup failed: ${r.status} ${r.text}`);
  return api;
}

/** `backupd sync --once --json` for a home: its exit code and the parsed summary. */
export async function syncOnce(
  home: Pick<Home, 'config'>,
  env: NodeJS.ProcessEnv,
  extraArgs: string[] = [],
): Promise<{ code: number | null; summary: any; stderr: string }> {
  const r = await runCli(['sync', '--once', '--json', '--config', home.config, ...extraArgs], {
    env,
  });
  let summary: any;
  try {
    summary = JSON.parse(r.stdout);
  } catch {
    throw new Error(`sync printed no JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, summary, stderr: r.stderr };
}
