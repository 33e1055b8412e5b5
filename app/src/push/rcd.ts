/**
 * One long-lived `rclone rcd` child that the daemon talks to over rclone's remote control API
 * (HTTP + JSON on 127.0.0.1), restarted when it dies.
 *
 * - It listens on 127.0.0.1 on a port the kernel picks (`--rc-addr 127.0.0.1:0`); the port is
 *   read from rclone's own "Serving remote control on http://127.0.0.1:PORT/" log line, so there
 *   is no race for a free port. (rclone 1.60 has no unix-socket listener: `--rc-addr unix:...`
 *   fails with "missing port in address".)
 * - A fresh random user and password per process reach it through the environment
 *   (`RCLONE_RC_USER`, `RCLONE_RC_PASS`), never the command line, which every user can read in
 *   /proc/PID/cmdline. The environment is ours without AWS_CA_BUNDLE and without any RCLONE_*
 *   from outside, plus the remotes (RCLONE_CONFIG_*): see `rcloneEnvironment`.
 * - Where util-linux's `setpriv` exists, rclone is started through `setpriv --pdeathsig TERM`,
 *   so it ends with the daemon even when the daemon is killed with SIGKILL.
 * - An unexpected exit fails the calls in flight with a `RcloneDaemonError` (jobs included: a
 *   new process knows nothing of the old one's jobs), then the process is restarted with a
 *   capped exponential backoff, and `onRestart` listeners re-apply run-time state (the bandwidth
 *   limit).
 *
 * rclone 1.60 quirks handled here: the body is read as JSON only when the Content-Type is
 * exactly `application/json` (with `; charset=utf-8` the JSON is silently ignored and e.g.
 * `core/bwlimit` just reports the current limit); an unauthorised call gets a plain-text 401;
 * rclone logs every error answer it sends at ERROR level (forwarded at debug here: the caller
 * gets the error); its NOTICE lines appear in the JSON log as level "warning".
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';
import { RcloneMissingError, rcloneEnvironment } from './rclone.js';

type LogFn = (obj: Record<string, unknown>, msg: string) => void;

/** What this module needs of a logger (a pino logger fits). */
export interface RcdLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface RcloneDaemonOptions {
  /** RCLONE_CONFIG_* variables that define the remotes (secrets included). */
  remotes: Record<string, string>;
  /** The rclone executable; default `rclone` from the PATH. */
  binary?: string;
  logger?: RcdLogger;
  /** More rclone flags, e.g. `['-v']` to get rclone's per-file lines (at debug level). */
  extraArgs?: string[];
  /** How long a start may take until `rc/noop` answers. Default 20 s. */
  startTimeoutMs?: number;
  /** Default time limit of one `call`. Default 60 s. */
  callTimeoutMs?: number;
  /** First delay before a restart after an unexpected exit; it doubles up to the maximum. Default 500 ms. */
  restartDelayMs?: number;
  /** Default 60 s. */
  maxRestartDelayMs?: number;
  /** How long `stop` waits after SIGTERM before SIGKILL. Default 5 s. */
  stopTimeoutMs?: number;
  /** End rclone when this process ends, through `setpriv --pdeathsig` when it exists. Default true. */
  dieWithParent?: boolean;
}

export interface CallOptions {
  /** Time limit of this call; default the daemon's `callTimeoutMs`. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface JobOptions {
  /** rclone's stats group (`_group`), to read the job's progress with `stats(group)`. */
  group?: string;
  /** Aborting stops the job in rclone (`job/stop`) and rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Longest interval between two `job/status` polls; polling starts at 50 ms and doubles. Default 1000. */
  pollMs?: number;
}

export interface RestartInfo {
  reason: 'exited' | 'remotes';
  pid: number;
}

/** One file being transferred, in `core/stats`. */
export interface RcTransferring {
  name: string;
  size: number;
  bytes: number;
  percentage: number;
  speed: number;
  speedAvg: number;
  eta: number | null;
  group?: string;
}

/** `core/stats`: the counters of a stats group (or of all of them). */
export interface RcStats {
  bytes: number;
  checks: number;
  deletedDirs: number;
  deletes: number;
  elapsedTime: number;
  errors: number;
  eta: number | null;
  fatalError: boolean;
  lastError?: string;
  renames: number;
  retryError: boolean;
  speed: number;
  totalBytes: number;
  totalChecks: number;
  totalTransfers: number;
  transferTime: number;
  transfers: number;
  transferring?: RcTransferring[];
  checking?: string[];
}

/** One finished (or failed) transfer, in `core/transferred`. */
export interface RcTransferred {
  name: string;
  size: number;
  bytes: number;
  error: string;
  checked: boolean;
  started_at: string;
  completed_at: string;
  group?: string;
}

/** `core/bwlimit`: the limit now in force (-1: none). */
export interface RcBandwidth {
  rate: string;
  bytesPerSecond: number;
  bytesPerSecondTx: number;
  bytesPerSecondRx: number;
}

interface RcJobStatus {
  id: number;
  finished: boolean;
  success: boolean;
  error: string;
  duration: number;
  group: string;
  output?: unknown;
}

/** rclone answered a call with an error (`{error, input, path, status}`), or a job failed. */
export class RcError extends Error {
  override name = 'RcError';
  constructor(
    /** HTTP status rclone gave (404: not found, 400: bad parameters, 500: anything else). */
    readonly status: number,
    /** The rc method, e.g. `operations/copyfile`. */
    readonly path: string,
    /** rclone's own message, e.g. `object not found`. */
    readonly rcloneMessage: string,
    /** The job, for an error of an async job (its status is inferred from the message). */
    readonly jobid?: number,
  ) {
    super(`rclone ${path}${jobid === undefined ? '' : ` (job ${jobid})`}: ${rcloneMessage}`);
  }
}

export type RcloneDaemonErrorCode =
  'start-failed' | 'exited' | 'restarted' | 'stopped' | 'unreachable' | 'timeout' | 'job-lost';

/** The rclone process could not serve a call: not started, gone, restarted, unreachable, slow. */
export class RcloneDaemonError extends Error {
  override name = 'RcloneDaemonError';
  constructor(
    readonly code: RcloneDaemonErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface Instance {
  child: ChildProcess;
  pid: number;
  url: string;
  auth: string;
  /** Keeps the connections to this process open between calls; destroyed when it is gone. */
  agent: Agent;
  /** Aborted, with the reason in-flight calls report, when the process ends or is replaced. */
  gone: AbortController;
  exited: Promise<void>;
  /** Set before we end it ourselves, so its exit is not taken for a crash. */
  intentional: boolean;
  readyAt: number;
  /** The last warning and error lines of rclone's log, for error messages. */
  tail: string[];
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a rejection nobody waits for is not an unhandled rejection
  return { promise, resolve, reject };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    // A wait never keeps the process alive by itself: a daemon that has stopped exits at once,
    // not when the longest pending time limit runs out.
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** `promise`, or the signal's reason when it aborts first. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * One POST with a JSON body, answered with the status and the body's text. Plain `node:http`,
 * not `fetch`: on Node 20 each fetch builds WHATWG streams, promises and abort signals worth
 * about 80 KiB of heap against 25 KiB here, loading undici adds 14 MiB, and a push makes two
 * calls per file: 170 of the 200 MiB the daemon allocated while pushing 1000 files were fetch's
 * (docs/benchmarks.md, "Memory").
 */
function postJson(
  url: string,
  agent: Agent,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
        // The connection broke before the whole answer came (once settled, this does nothing).
        res.on('close', () => reject(new Error('the connection closed before the answer ended')));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

interface Linked {
  signal: AbortSignal;
  timedOut: () => boolean;
  /** Detaches from the sources and clears the timer: call it when done. */
  dispose: () => void;
}

/**
 * A signal that aborts when one of `signals` does, or after `timeoutMs`. Not AbortSignal.any:
 * on Node 20 each signal it makes stays referenced by a long-lived source (the process's own
 * signal here, or a caller's for a whole sync) until that aborts: about 65 bytes a call, for ever.
 */
function link(signals: (AbortSignal | undefined)[], timeoutMs?: number): Linked {
  const ac = new AbortController();
  const handlers: [AbortSignal, () => void][] = [];
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const dispose = () => {
    clearTimeout(timer);
    for (const [s, h] of handlers.splice(0)) s.removeEventListener('abort', h);
  };
  const linked = { signal: ac.signal, timedOut: () => timedOut, dispose };
  for (const s of signals) {
    if (!s) continue;
    if (s.aborted) {
      dispose();
      ac.abort(s.reason);
      return linked;
    }
    const h = () => {
      dispose();
      ac.abort(s.reason);
    };
    s.addEventListener('abort', h, { once: true });
    handlers.push([s, h]);
  }
  if (timeoutMs !== undefined)
    timer = setTimeout(
      () => {
        timedOut = true;
        dispose();
        ac.abort(new RcloneDaemonError('timeout', `timed out after ${seconds(timeoutMs)}`));
      },
      Math.max(0, timeoutMs),
    );
  return linked;
}

const SERVING = /Serving remote control on (https?:\/\/[^\s\]/]+)/;
const SETPRIV = '/usr/bin/setpriv';
const NOOP_LOGGER: RcdLogger = { debug() {}, info() {}, warn() {}, error() {} };
const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/** An rclone job error's HTTP-like status, as rclone's rc server would give it synchronously. */
function jobErrorStatus(message: string): number {
  return /(object|directory) not found$/.test(message) ? 404 : 500;
}

export class RcloneDaemon {
  private remotes: Record<string, string>;
  private readonly binary: string;
  private readonly log: RcdLogger;
  private readonly extraArgs: string[];
  private readonly startTimeoutMs: number;
  private readonly callTimeoutMs: number;
  private readonly restartDelayMs: number;
  private readonly maxRestartDelayMs: number;
  private readonly stopTimeoutMs: number;
  private readonly dieWithParent: boolean;

  private current: Instance | undefined;
  /** Resolved when the next process is up; callers wait on it while there is none. */
  private up: Deferred<Instance> | undefined;
  private stopped = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Starts, restarts and stops run one after the other. */
  private lifecycle: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<(info: RestartInfo) => void | Promise<void>>();

  private constructor(opts: RcloneDaemonOptions) {
    this.remotes = { ...opts.remotes };
    this.binary = opts.binary ?? 'rclone';
    this.log = opts.logger ?? NOOP_LOGGER;
    this.extraArgs = opts.extraArgs ?? [];
    this.startTimeoutMs = opts.startTimeoutMs ?? 20_000;
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
    this.restartDelayMs = opts.restartDelayMs ?? 500;
    this.maxRestartDelayMs = opts.maxRestartDelayMs ?? 60_000;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 5_000;
    this.dieWithParent = opts.dieWithParent ?? true;
  }

  /** Starts `rclone rcd` and resolves once it answers `rc/noop`. */
  static async start(opts: RcloneDaemonOptions): Promise<RcloneDaemon> {
    const d = new RcloneDaemon(opts);
    await d.serialize(async () => d.install(await d.launch()));
    return d;
  }

  /** The process id of the running rclone, if one is running. */
  get pid(): number | undefined {
    return this.current?.pid;
  }

  /** The address rclone listens on, e.g. `http://127.0.0.1:40123` (it needs the password). */
  get address(): string | undefined {
    return this.current?.url;
  }

  /** Called after every restart (after a crash, or for new remotes); returns an unsubscribe function. */
  onRestart(listener: (info: RestartInfo) => void | Promise<void>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Restarts rclone with other remotes (the configuration changed). Calls in flight fail. */
  async setRemotes(remotes: Record<string, string>): Promise<void> {
    this.remotes = { ...remotes };
    await this.serialize(async () => {
      if (this.stopped) throw this.stoppedError();
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      const old = this.current;
      this.current = undefined;
      if (old) await this.terminate(old, 'restarted because the remotes changed', 'restarted');
      let inst: Instance;
      try {
        inst = await this.launch();
      } catch (err) {
        this.scheduleRestart();
        throw err;
      }
      this.failures = 0;
      this.install(inst);
      this.emitRestart({ reason: 'remotes', pid: inst.pid });
    });
  }

  /** Ends rclone (SIGTERM, then SIGKILL after `stopTimeoutMs`) and stops restarting it. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.up?.reject(this.stoppedError());
    this.up = undefined;
    await this.serialize(async () => {
      const inst = this.current;
      this.current = undefined;
      if (inst) await this.terminate(inst, 'stopped', 'stopped');
    });
  }

  /** Calls an rc method and returns rclone's JSON answer. */
  async call<T = Record<string, unknown>>(
    path: string,
    params: Record<string, unknown> = {},
    opts: CallOptions = {},
  ): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? this.callTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const inst = await this.waitForInstance(path, timeoutMs, opts.signal);
    return this.post<T>(inst, path, params, deadline - Date.now(), opts.signal);
  }

  /**
   * Runs an rc method as an async job (`_async`, `_group`) and polls `job/status` until it ends;
   * returns the job's output. A failed job throws `RcError` with rclone's message.
   */
  async job<T = Record<string, unknown>>(
    path: string,
    params: Record<string, unknown> = {},
    opts: JobOptions = {},
  ): Promise<T> {
    const { signal } = opts;
    const maxPoll = Math.max(10, opts.pollMs ?? 1000);
    const inst = await this.waitForInstance(path, this.callTimeoutMs, signal);
    const body = { ...params, _async: true, ...(opts.group ? { _group: opts.group } : {}) };
    const { jobid } = await this.post<{ jobid: number }>(
      inst,
      path,
      body,
      this.callTimeoutMs,
      signal,
    );
    const status = (s?: AbortSignal) =>
      this.post<RcJobStatus>(inst, 'job/status', { jobid }, this.callTimeoutMs, s);
    let delay = Math.min(50, maxPoll);
    for (;;) {
      try {
        await sleep(delay, signal);
        const st = await status(signal);
        if (st.finished) {
          if (st.success) return (st.output ?? {}) as T;
          throw new RcError(jobErrorStatus(st.error), path, st.error || 'failed', jobid);
        }
      } catch (err) {
        if (signal?.aborted) {
          await this.stopJob(inst, jobid, path);
          throw signal.reason;
        }
        if (
          err instanceof RcError &&
          err.path === 'job/status' &&
          /job not found/.test(err.message)
        )
          throw new RcloneDaemonError(
            'job-lost',
            `rclone forgot job ${jobid} (${path}) before it was seen to finish (finished jobs expire after a minute)`,
            { cause: err },
          );
        if (err instanceof RcloneDaemonError && err.code !== 'timeout') {
          throw new RcloneDaemonError(
            err.code === 'exited' || err.code === 'restarted' ? 'job-lost' : err.code,
            `${err.message}; job ${jobid} (${path}) was interrupted and must be run again`,
            { cause: err },
          );
        }
        throw err;
      }
      delay = Math.min(delay * 2, maxPoll);
    }
  }

  /** `core/stats` of one group, or of all transfers. */
  stats(group?: string): Promise<RcStats> {
    return this.call<RcStats>('core/stats', group ? { group } : {});
  }

  /** `core/transferred`: the last transfers (rclone keeps about 100), of one group or all. */
  async transferred(group?: string): Promise<RcTransferred[]> {
    const r = await this.call<{ transferred?: RcTransferred[] }>(
      'core/transferred',
      group ? { group } : {},
    );
    return r.transferred ?? [];
  }

  /** Sets the bandwidth limit now (rclone's notation, e.g. `1M`, `512k`; `off` lifts it). */
  setBandwidth(rate: string): Promise<RcBandwidth> {
    return this.call<RcBandwidth>('core/bwlimit', { rate });
  }

  /** Sets a group's counters back to zero. */
  async resetStats(group: string): Promise<void> {
    await this.call('core/stats-reset', { group });
  }

  /** Forgets a group's counters (rclone keeps them until told so). */
  async deleteStats(group: string): Promise<void> {
    await this.call('core/stats-delete', { group });
  }

  // ---------------------------------------------------------------------------------------

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(fn, fn);
    this.lifecycle = run.catch(() => {});
    return run;
  }

  private stoppedError() {
    return new RcloneDaemonError('stopped', 'rclone rcd is stopped');
  }

  /** The running process; while there is none, waits (at most `timeoutMs`) for the next. */
  private async waitForInstance(
    path: string,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Instance> {
    if (this.current && !this.stopped) return this.current;
    const l = link([signal], timeoutMs);
    try {
      return await this.instance(l.signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (l.timedOut())
        throw new RcloneDaemonError(
          'timeout',
          `rclone rcd was not running and did not come back within ${seconds(timeoutMs)} for ${path}`,
        );
      throw err;
    } finally {
      l.dispose();
    }
  }

  private instance(signal: AbortSignal): Promise<Instance> {
    if (this.stopped) return Promise.reject(this.stoppedError());
    if (this.current) return Promise.resolve(this.current);
    this.up ??= deferred<Instance>();
    return raceAbort(this.up.promise, signal);
  }

  private install(inst: Instance) {
    if (this.stopped) {
      void this.terminate(inst, 'stopped', 'stopped');
      throw this.stoppedError();
    }
    this.current = inst;
    this.up?.resolve(inst);
    this.up = undefined;
  }

  private emitRestart(info: RestartInfo) {
    for (const l of this.listeners) {
      Promise.resolve()
        .then(() => l(info))
        .catch((err: unknown) =>
          this.log.warn(
            { err: (err as Error)?.message ?? String(err) },
            'an rclone restart listener failed',
          ),
        );
    }
  }

  private goneError(inst: Instance, path: string, cause?: unknown): RcloneDaemonError {
    const reason = inst.gone.signal.reason as RcloneDaemonError;
    return new RcloneDaemonError(reason.code, `${reason.message} during ${path}`, { cause });
  }

  private async post<T>(
    inst: Instance,
    path: string,
    params: Record<string, unknown>,
    timeoutMs: number,
    callerSignal?: AbortSignal,
  ): Promise<T> {
    if (inst.gone.signal.aborted) throw this.goneError(inst, path);
    const l = link([inst.gone.signal, callerSignal], timeoutMs);
    let res: { status: number; text: string };
    try {
      res = await postJson(
        `${inst.url}/${path.replace(/^\/+/, '')}`,
        inst.agent,
        // Exactly application/json: rclone 1.60 ignores a JSON body sent with a charset.
        { authorization: inst.auth, 'content-type': 'application/json' },
        JSON.stringify(params),
        l.signal,
      );
    } catch (err) {
      if (callerSignal?.aborted) throw callerSignal.reason;
      if (!inst.gone.signal.aborted && !l.timedOut()) {
        // The connection broke: most likely the process just died; give its exit a moment
        // to be seen so that the error says so.
        await sleep(250, inst.gone.signal).catch(() => {});
      }
      if (inst.gone.signal.aborted) throw this.goneError(inst, path, err);
      if (l.timedOut())
        throw new RcloneDaemonError(
          'timeout',
          `rclone rcd (pid ${inst.pid}) did not answer ${path} within ${seconds(timeoutMs)}`,
        );
      const cause = (err as { cause?: { message?: string } }).cause?.message;
      throw new RcloneDaemonError(
        'unreachable',
        `cannot reach rclone rcd (pid ${inst.pid}) at ${inst.url} for ${path}: ${cause ?? (err as Error).message}`,
        { cause: err },
      );
    } finally {
      l.dispose();
    }
    if (res.status === 401)
      throw new RcError(401, path, 'rclone rcd refused our credentials (401 Unauthorized)');
    const ok = res.status >= 200 && res.status < 300;
    let body: unknown;
    try {
      body = JSON.parse(res.text);
    } catch {
      throw new RcError(
        ok ? 502 : res.status,
        path,
        `rclone answered HTTP ${res.status} with something that is not JSON: ${res.text.slice(0, 200)}`,
      );
    }
    const obj = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    if (!ok) {
      const status = typeof obj['status'] === 'number' ? obj['status'] : res.status;
      const message = typeof obj['error'] === 'string' ? obj['error'] : `HTTP ${res.status}`;
      throw new RcError(status, typeof obj['path'] === 'string' ? obj['path'] : path, message);
    }
    return body as T;
  }

  private async stopJob(inst: Instance, jobid: number, path: string) {
    const end = Date.now() + 5_000;
    try {
      await this.post(inst, 'job/stop', { jobid }, 5_000);
      // Wait (bounded) until rclone has really let go of the job's files.
      while (Date.now() < end) {
        const st = await this.post<RcJobStatus>(inst, 'job/status', { jobid }, end - Date.now());
        if (st.finished) return;
        await sleep(50);
      }
    } catch (err) {
      this.log.debug({ jobid, path, err: (err as Error).message }, 'rclone job/stop failed');
    }
  }

  private scheduleRestart() {
    if (this.stopped || this.restartTimer) return;
    const delay = Math.min(this.restartDelayMs * 2 ** this.failures, this.maxRestartDelayMs);
    this.failures++;
    this.log.warn(
      { delayMs: delay, attempt: this.failures },
      `restarting rclone rcd in ${seconds(delay)}`,
    );
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.serialize(async () => {
        if (this.stopped || this.current) return;
        let inst: Instance;
        try {
          inst = await this.launch();
        } catch (err) {
          this.log.error(
            { err: (err as Error).message, attempt: this.failures },
            'rclone rcd did not restart',
          );
          this.scheduleRestart();
          return;
        }
        if (this.stopped) {
          await this.terminate(inst, 'stopped', 'stopped');
          return;
        }
        this.install(inst);
        this.log.info({ pid: inst.pid }, 'rclone rcd restarted');
        this.emitRestart({ reason: 'exited', pid: inst.pid });
      });
    }, delay);
    this.restartTimer.unref();
  }

  private onExit(inst: Instance, code: number | null, signal: NodeJS.Signals | null) {
    const how = signal ? `signal ${signal}` : `code ${code}`;
    if (inst.intentional) {
      this.log.debug({ pid: inst.pid, code, signal }, `rclone rcd ended (${how})`);
      return;
    }
    inst.gone.abort(
      new RcloneDaemonError('exited', `rclone rcd (pid ${inst.pid}) exited unexpectedly (${how})`),
    );
    if (this.current !== inst) return;
    this.current = undefined;
    // A process that ran well for a while starts the backoff afresh.
    if (Date.now() - inst.readyAt > 60_000) this.failures = 0;
    this.log.warn(
      { pid: inst.pid, code, signal, lastLines: inst.tail.slice(-5) },
      `rclone rcd exited unexpectedly (${how})`,
    );
    this.scheduleRestart();
  }

  private async terminate(inst: Instance, what: string, code: RcloneDaemonErrorCode) {
    inst.intentional = true;
    if (!inst.gone.signal.aborted)
      inst.gone.abort(new RcloneDaemonError(code, `rclone rcd (pid ${inst.pid}) was ${what}`));
    const wait = (ms: number) =>
      Promise.race([inst.exited.then(() => true), sleep(ms).then(() => false)]);
    if (inst.child.exitCode !== null || inst.child.signalCode !== null) return;
    inst.child.kill('SIGTERM');
    if (await wait(this.stopTimeoutMs)) return;
    this.log.warn({ pid: inst.pid }, 'rclone rcd did not end on SIGTERM; sending SIGKILL');
    inst.child.kill('SIGKILL');
    if (!(await wait(5_000)))
      this.log.error({ pid: inst.pid }, 'rclone rcd did not end even on SIGKILL');
  }

  /** Starts one rclone process and resolves once it answers. */
  private async launch(): Promise<Instance> {
    const user = `backupd-${randomBytes(6).toString('hex')}`;
    const pass = randomBytes(24).toString('base64url');
    const env = { ...rcloneEnvironment(this.remotes), RCLONE_RC_USER: user, RCLONE_RC_PASS: pass };
    const args = [
      'rcd',
      '--config',
      '/dev/null',
      '--use-json-log',
      '--rc-addr',
      '127.0.0.1:0',
      ...this.extraArgs,
    ];
    const viaSetpriv = this.dieWithParent && existsSync(SETPRIV);
    const [cmd, argv] = viaSetpriv
      ? [SETPRIV, ['--pdeathsig', 'TERM', '--', this.binary, ...args]]
      : [this.binary, args];
    const child = spawn(cmd, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });

    const tail: string[] = [];
    const served = deferred<string>();
    const ended = deferred<void>();
    let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: NodeJS.ErrnoException | undefined;
    const inst: Instance = {
      child,
      pid: child.pid ?? -1,
      url: '',
      auth: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
      agent: new Agent({ keepAlive: true }),
      gone: new AbortController(),
      exited: ended.promise,
      intentional: false,
      readyAt: 0,
      tail,
    };

    inst.gone.signal.addEventListener('abort', () => inst.agent.destroy(), { once: true });

    const lines = createInterface({ input: child.stderr! });
    lines.on('line', (raw) => {
      const m = SERVING.exec(raw);
      if (m) served.resolve(m[1]!);
      this.forward(inst, raw);
    });
    child.stdout!.on('data', (d: Buffer) =>
      this.log.debug({ pid: inst.pid }, `rclone stdout: ${d.toString('utf8').trim()}`),
    );
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
      served.reject(err);
    });
    child.on('close', (code, signal) => {
      lines.close();
      exitInfo = { code, signal };
      served.reject(new Error('exited'));
      ended.resolve();
      if (inst.readyAt) this.onExit(inst, code, signal);
      else if (!inst.gone.signal.aborted)
        inst.gone.abort(new RcloneDaemonError('exited', `rclone rcd exited during start-up`));
    });

    const failed = (why: string) => {
      const last = tail.slice(-3).join(' | ');
      return new RcloneDaemonError(
        'start-failed',
        `rclone rcd did not start: ${why}${last ? `; rclone said: ${last}` : ''}`,
      );
    };
    const missing = () =>
      new RcloneMissingError(
        `rclone is not installed (${this.binary} not found). Install it with \`apt-get install rclone\` (the appliance image has it).`,
      );

    const deadline = Date.now() + this.startTimeoutMs;
    const starting = link([inst.gone.signal], this.startTimeoutMs);
    try {
      inst.url = await raceAbort(served.promise, starting.signal);
      for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
        try {
          await this.post(inst, 'rc/noop', {}, deadline - Date.now(), starting.signal);
          break;
        } catch (err) {
          if (err instanceof RcError || starting.signal.aborted || exitInfo) throw err;
          await sleep(delay, starting.signal);
        }
      }
    } catch (err) {
      const killed = !exitInfo && !spawnError;
      if (killed) {
        inst.intentional = true;
        child.kill('SIGKILL');
        await Promise.race([ended.promise, sleep(5_000)]);
      } else await Promise.race([ended.promise, sleep(1_000)]); // let the last log lines arrive
      if (spawnError?.code === 'ENOENT') throw missing();
      if (spawnError) throw failed(spawnError.message);
      if (!killed && exitInfo) {
        if (exitInfo.code === 127 && viaSetpriv && tail.some((l) => /failed to execute/.test(l)))
          throw missing();
        const how = exitInfo.signal ? `signal ${exitInfo.signal}` : `code ${exitInfo.code}`;
        throw failed(`it exited during start-up (${how})`);
      }
      if (starting.timedOut() || Date.now() >= deadline)
        throw failed(`no answer within ${seconds(this.startTimeoutMs)}`);
      throw failed((err as Error).message);
    } finally {
      starting.dispose();
    }
    inst.readyAt = Date.now();
    this.log.debug({ pid: inst.pid, url: inst.url }, 'rclone rcd is ready');
    return inst;
  }

  /** One line of rclone's log (JSON with `--use-json-log`; plain for fatal start-up errors). */
  private forward(inst: Instance, raw: string) {
    if (!raw.trim()) return;
    let line: { level?: string; msg?: string; object?: string; source?: string };
    try {
      line = JSON.parse(raw) as typeof line;
    } catch {
      line = { level: 'plain', msg: raw };
    }
    const msg = `rclone: ${line.object ? `${line.object}: ` : ''}${line.msg ?? raw}`;
    const fields = { pid: inst.pid, ...(line.object ? { object: line.object } : {}) };
    switch (line.level) {
      case 'critical':
      case 'error':
      case 'plain':
        inst.tail.push(msg);
        if (inst.tail.length > 20) inst.tail.shift();
        // rclone logs each error answer it sends; the caller has it, so it is not news here.
        if (/^rc: "[^"]*": error: /.test(line.msg ?? '')) this.log.debug(fields, msg);
        else this.log.warn(fields, msg);
        break;
      case 'warning': // rclone's NOTICE level
        if (SERVING.test(line.msg ?? '')) this.log.debug(fields, msg);
        else this.log.info(fields, msg);
        break;
      default:
        this.log.debug(fields, msg);
    }
  }
}
