/**
 * Putting the parts together: configuration, logs, state, access, API, systemd. Used by the
 * CLI's `start` (the long-running daemon) and by its one-shot commands.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startApi, type ApiServer } from '../api/index.js';
import { Access } from '../auth/index.js';
import {
  ConfigService,
  findConfigFile,
  loadConfigFile,
  pinoLevel,
  resolveRuntime,
  secretPaths,
  type Runtime,
} from '../config/index.js';
import {
  createLogger,
  EventRecorder,
  Redactor,
  type LogHandle,
  type Logger,
} from '../log/index.js';
import { openState, type State } from '../state/index.js';
import { collectStatus } from '../status/index.js';
import { lockState } from './lock.js';
import { systemdNotifier } from './systemd.js';
import { SyncService } from '../sync/service.js';
import { envGoogleAccounts } from '../google/accounts.js';
import { DrivePoller } from '../google/drive/poller.js';

export const VERSION: string = (
  JSON.parse(
    readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../../package.json'), 'utf8'),
  ) as { version: string }
).version;

export interface AppContext {
  config: ConfigService;
  readonly runtime: Runtime;
  logger: Logger;
  redactor: Redactor;
  state: State;
  events: EventRecorder;
  close(): Promise<void>;
}

export interface OpenOptions {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Readable log lines on stderr. */
  console?: boolean;
  /** Write the log file and store events (false for read-only commands such as `status`). */
  record?: boolean;
}

export async function openContext(opts: OpenOptions = {}): Promise<AppContext> {
  const env = opts.env ?? process.env;
  const { file } = findConfigFile(opts.configPath, env);
  const loaded = await loadConfigFile(file);
  const runtime = resolveRuntime(loaded, env);
  const config = new ConfigService(loaded, runtime, env);
  const redactor = new Redactor(() => config.runtime.secretValues());
  const record = opts.record ?? true;
  const cfg = runtime.config.daemon;
  const log: LogHandle = createLogger({
    level: pinoLevel(cfg.log_level),
    redactor,
    console: opts.console,
    ...(record
      ? {
          file: {
            path: runtime.logFile,
            maxBytes: cfg.log_max_size_mb * 1024 * 1024,
            maxFiles: cfg.log_max_files,
            retentionDays: cfg.log_retention_days,
          },
        }
      : {}),
  });
  for (const w of loaded.warnings)
    log.logger.warn({ source: 'config', key: w.path, line: w.line }, `${w.path}: ${w.message}`);

  let state: State;
  try {
    state = openState(runtime.database);
  } catch (err) {
    log.close();
    throw err;
  }
  const events = new EventRecorder(state.events, {}, (err) =>
    process.stderr.write(`cannot store log events: ${err.message}\n`),
  );
  if (record) log.setEventSink((e) => events.record(e));
  config.on('changed', (rt) => {
    redactor.refresh();
    log.logger.level = pinoLevel(rt.config.daemon.log_level);
  });

  return {
    config,
    get runtime() {
      return config.runtime;
    },
    logger: log.logger,
    redactor,
    state,
    events,
    async close() {
      log.setEventSink(undefined);
      await events.flush();
      await state.close();
      log.close();
    },
  };
}

export interface RunningDaemon {
  api: ApiServer;
  sync: SyncService;
  setupCode: string | undefined;
  stop(reason: string): Promise<void>;
}

/** `backupd start`: the API and panel, the schedules, systemd readiness and watchdog. */
export async function startDaemon(
  ctx: AppContext,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RunningDaemon> {
  const log = ctx.logger.child({ source: 'daemon' });
  const startedAt = Date.now();
  mkdirSync(ctx.runtime.stateDir, { recursive: true });
  const lock = lockState(ctx.runtime.stateDir, 'start');
  const notifier = systemdNotifier(env, (err) => log.warn(err.message));
  const interrupted = await ctx.state.runs.interruptStale(startedAt);
  if (interrupted)
    log.warn(
      { runs: interrupted },
      `${interrupted} run(s) were cut short when the daemon last stopped; they are redone as needed`,
    );

  // The push half: watch the mirror, queue, push. A failure here (rclone missing, say) is
  // reported, and the API and panel still come up so the owner can see and fix it.
  const sync = new SyncService({
    runtime: () => ctx.runtime,
    state: ctx.state,
    logger: ctx.logger,
  });
  try {
    await sync.start();
  } catch (err) {
    log.error({ err }, `the push half did not start: ${(err as Error).message}`);
  }

  // The Drive pull: polls each account; pausing the source pauses it too.
  const drive = new DrivePoller({
    runtime: () => ctx.runtime,
    state: ctx.state,
    logger: ctx.logger,
    accounts: envGoogleAccounts({ state: ctx.state, logger: ctx.logger }),
    paused: () => sync.sourcePaused('google_drive'),
  });
  drive.start();

  // A change of what is pushed where takes effect at once: the push half is set up again.
  let pushConfig = JSON.stringify(pushSettings(ctx.runtime));
  ctx.config.on('changed', (rt) => {
    const next = JSON.stringify(pushSettings(rt));
    if (next === pushConfig) return;
    pushConfig = next;
    log.info('the push configuration changed: setting up the push half again');
    void sync
      .restart()
      .catch((err: Error) => log.error({ err }, `the push half did not restart: ${err.message}`));
  });

  const access = new Access({
    state: ctx.state,
    configuredApiKey: () => ctx.runtime.secret('daemon.api_key'),
  });
  const cfg = ctx.runtime.config.daemon;
  const api = await startApi(
    {
      config: ctx.config,
      state: ctx.state,
      access,
      events: ctx.events,
      logger: ctx.logger,
      redactor: ctx.redactor,
      version: VERSION,
      sync,
      drive,
      status: () =>
        collectStatus({
          runtime: ctx.runtime,
          state: ctx.state,
          version: VERSION,
          startedAt,
          health: (name) => sync.destinationHealth(name),
          sent: () => sync.progress.totals(),
        }),
    },
    { host: cfg.api_host, port: cfg.api_port, webRoot: ctx.runtime.webRoot },
  );
  if (ctx.runtime.pidFile) {
    mkdirSync(dirname(ctx.runtime.pidFile), { recursive: true });
    writeFileSync(ctx.runtime.pidFile, `${process.pid}\n`);
  }

  const setupCode = await access.issueSetupCode();
  const panelUrl =
    cfg.api_host === '0.0.0.0' || cfg.api_host === '::'
      ? `http://127.0.0.1:${cfg.api_port}`
      : api.url;
  log.info(
    { url: panelUrl, version: VERSION, pid: process.pid, state: ctx.runtime.database.path },
    `backupd ${VERSION} listening on ${api.url}`,
  );
  if (setupCode) {
    // Printed on purpose: the owner needs it to set the admin password. It works once.
    log.warn(
      { setup_url: `${panelUrl}/setup` },
      `first-run setup: open ${panelUrl}/setup and enter the setup code ${setupCode}`,
    );
  }

  // Housekeeping: old events and sessions.
  const housekeeping = async () => {
    const retention = ctx.runtime.config.daemon.log_retention_days * 86_400_000;
    await ctx.state.events.prune(Date.now() - retention);
    await ctx.state.auth.deleteExpiredSessions(Date.now());
  };
  await housekeeping();
  const housekeepingTimer = setInterval(
    () => void housekeeping().catch((err) => log.error({ err }, 'housekeeping failed')),
    6 * 3600_000,
  );
  housekeepingTimer.unref();

  await notifier.ready(setupCode ? 'waiting for first-run setup' : 'running');
  const stopWatchdog = notifier.startWatchdog();

  let stopping: Promise<void> | undefined;
  const stop = (reason: string) =>
    (stopping ??= (async () => {
      log.info(`stopping (${reason})`);
      await notifier.stopping();
      stopWatchdog();
      clearInterval(housekeepingTimer);
      await api.close();
      await drive.stop();
      await sync.stop();
      if (ctx.runtime.pidFile) rmSync(ctx.runtime.pidFile, { force: true });
      lock.release();
      log.info('stopped');
      await ctx.close();
    })());
  return { api, sync, setupCode, stop };
}

/** What the push half is built from: sources, destinations (with their secrets), sync settings. */
function pushSettings(rt: Runtime) {
  const { sources, destinations, sync } = rt.config;
  const secrets = secretPaths()
    .filter((p) => p.startsWith('destinations.'))
    .map((p) => rt.secret(p));
  return { sources, destinations, sync, secrets };
}
