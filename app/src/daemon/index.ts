/**
 * `backupd start`: the configuration, logs and state (daemon/context.ts) put together with
 * access, the API, the push half and systemd.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { startApi, type ApiServer } from '../api/index.js';
import { Access } from '../auth/index.js';
import { secretPaths, type Runtime } from '../config/index.js';
import { createGoogle } from '../google/index.js';
import { collectStatus } from '../status/index.js';
import { housekeep } from './housekeeping.js';
import { lockState } from './lock.js';
import { systemdNotifier, type Notifier } from './systemd.js';
import type { DiskService } from '../disk/index.js';
import type { Alert } from '../status/index.js';
import { SyncService } from '../sync/service.js';
import { VERSION, type AppContext } from './context.js';
import { DrivePoller } from '../google/drive/poller.js';

export { openContext, VERSION, type AppContext, type OpenOptions } from './context.js';

export interface RunningDaemon {
  api: ApiServer;
  sync: SyncService;
  setupCode: string | undefined;
  mode: 'running' | 'standby';
  /** handover: the appliance switches modes, so systemd is not told the service stops. */
  stop(reason: string, opts?: { handover?: boolean }): Promise<void>;
}

/** What the appliance's supervisor (appliance.ts) adds; an ordinary install passes nothing. */
export interface DaemonOptions {
  /** standby: the API and panel only; nothing is pulled or pushed. */
  mode?: 'running' | 'standby';
  /** Access on the appliance's access db (kept across modes); else one on ctx.state. */
  access?: Access;
  disks?: DiskService;
  alerts?: () => Alert[];
  /** Shared across modes, so that one sd_notify channel serves the whole process. */
  notifier?: Notifier;
}

/** `backupd start`: the API and panel, the schedules, systemd readiness and watchdog. */
export async function startDaemon(
  ctx: AppContext,
  env: NodeJS.ProcessEnv = process.env,
  opts: DaemonOptions = {},
): Promise<RunningDaemon> {
  const mode = opts.mode ?? 'running';
  const standby = mode === 'standby';
  const log = ctx.logger.child({ source: 'daemon' });
  const startedAt = Date.now();
  mkdirSync(ctx.runtime.stateDir, { recursive: true });
  const lock = lockState(ctx.runtime.stateDir, 'start');
  const notifier = opts.notifier ?? systemdNotifier(env, (err) => log.warn(err.message));
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
    configView: () => ctx.config.view(),
  });
  // In standby the data disk is missing: the mirror is not there to watch, so nothing starts.
  if (!standby) {
    try {
      await sync.start();
    } catch (err) {
      log.error({ err }, `the push half did not start: ${(err as Error).message}`);
    }
  }

  // Google sign-in and the accounts; the Drive pull polls each of them, and pausing the source
  // pauses it too.
  const google = createGoogle({ config: ctx.config, state: ctx.state, logger: ctx.logger, env });
  const drive = new DrivePoller({
    runtime: () => ctx.runtime,
    state: ctx.state,
    logger: ctx.logger,
    accounts: google.accounts,
    paused: () => sync.sourcePaused('google_drive'),
  });
  if (!standby) drive.start();

  // A change of what is pushed where takes effect at once: the push half is set up again.
  let pushConfig = JSON.stringify(pushSettings(ctx.runtime));
  ctx.config.on('changed', (rt) => {
    if (standby) return;
    const next = JSON.stringify(pushSettings(rt));
    if (next === pushConfig) return;
    pushConfig = next;
    log.info('the push configuration changed: setting up the push half again');
    void sync
      .restart()
      .catch((err: Error) => log.error({ err }, `the push half did not restart: ${err.message}`));
  });

  const access =
    opts.access ??
    new Access({
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
      sync: standby ? undefined : sync,
      mode: () => mode,
      disks: opts.disks,
      // Google sign-in and the accounts: the pull takes its accounts from the same object.
      google,
      drive,
      status: () =>
        collectStatus({
          runtime: ctx.runtime,
          state: ctx.state,
          version: VERSION,
          startedAt,
          health: (name) => sync.destinationHealth(name),
          sent: () => sync.progress.totals(),
          mode,
          alerts: opts.alerts?.() ?? [],
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

  // Housekeeping: old events, finished queue items and expired sessions.
  const housekeeping = async () => {
    const retention = ctx.runtime.config.daemon.log_retention_days * 86_400_000;
    const pruned = await housekeep(ctx.state, retention, Date.now());
    if (pruned.events || pruned.queueItems) log.debug(pruned, 'pruned old events and queue items');
    // Sessions live with the password (the access database on the appliance).
    await access.deleteExpiredSessions();
  };
  await housekeeping();
  const housekeepingTimer = setInterval(
    () => void housekeeping().catch((err) => log.error({ err }, 'housekeeping failed')),
    6 * 3600_000,
  );
  housekeepingTimer.unref();

  await notifier.ready(
    standby ? 'waiting for the data disk' : setupCode ? 'waiting for first-run setup' : 'running',
  );
  const stopWatchdog = notifier.startWatchdog();

  let stopping: Promise<void> | undefined;
  const stop = (reason: string, o: { handover?: boolean } = {}) =>
    (stopping ??= (async () => {
      log.info(`stopping (${reason})`);
      if (!o.handover) await notifier.stopping();
      stopWatchdog();
      clearInterval(housekeepingTimer);
      await api.close();
      await drive.stop();
      await sync.stop();
      if (ctx.runtime.pidFile && !o.handover) rmSync(ctx.runtime.pidFile, { force: true });
      lock.release();
      log.info('stopped');
      await ctx.close();
    })());
  return { api, sync, setupCode, mode, stop };
}

/** What the push half is built from: sources, destinations (with their secrets), sync settings. */
function pushSettings(rt: Runtime) {
  const { sources, destinations, sync } = rt.config;
  const secrets = secretPaths()
    .filter((p) => p.startsWith('destinations.'))
    .map((p) => rt.secret(p));
  return { sources, destinations, sync, secrets };
}
