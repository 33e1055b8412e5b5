/**
 * The appliance's daemon: the ordinary one (startDaemon) in full mode while the data disk is
 * mounted, and in standby while it is not. Standby keeps the API and panel up (sign-in works: the
 * password, sessions and API keys live in the access db on the system disk), starts no pull or
 * push, and keeps its state in a volatile folder under /run, so neither the SD card nor the bare
 * mount point is written. The mount is checked every 2 s and the mode switched in-process; the
 * queue is in the state on the disk, so an unplug loses nothing and a replug resumes.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { Access } from '../auth/index.js';
import type { Config } from '../config/index.js';
import { DiskService, mountProbe } from '../disk/index.js';
import { openState, type State } from '../state/index.js';
import type { Alert } from '../status/index.js';
import { openContext, type AppContext } from './context.js';
import { startDaemon, type RunningDaemon } from './index.js';
import { systemdNotifier, type Notifier } from './systemd.js';

export type ApplianceConfig = NonNullable<Config['appliance']>;

export interface ApplianceDaemon {
  mode(): 'running' | 'standby';
  setupCode(): string | undefined;
  stop(reason: string): Promise<void>;
}

const CHECK_MS = 2000;

/** The volatile folder of the standby state: systemd's RuntimeDirectory, else /run/backupd. */
export const standbyDir = (env: NodeJS.ProcessEnv) =>
  join(env.RUNTIME_DIRECTORY?.split(':')[0] || '/run/backupd', 'standby');

export function dataDiskAlert(dataDisk: string): Alert {
  return {
    code: 'data_disk_missing',
    message: `No data disk is mounted at ${dataDisk}: backups are paused. Nothing is lost; they resume when the disk is back.`,
    fix: 'Plug the data disk in (USB or SATA). A new disk must be adopted first: Disks in the panel, or POST /api/disks/adopt. If it is plugged in and still missing, see `journalctl -u backupd-disk-scan` (docs/troubleshooting.md, "The data disk is missing").',
  };
}

/**
 * The mirror folders that live on the data disk, made when it is used: a disk just adopted is
 * empty, and a watcher started on a missing folder would watch nothing until the first pull.
 */
export function makeMirrorFolders(
  runtime: Pick<AppContext['runtime'], 'sourcePath'>,
  dataDisk: string,
): void {
  for (const source of ['google_drive', 'google_photos'] as const) {
    const dir = runtime.sourcePath(source);
    const rel = relative(dataDisk, dir);
    if (rel && !rel.startsWith('..') && !rel.startsWith('/'))
      mkdirSync(dir, { recursive: true, mode: 0o750 });
  }
}

export async function startAppliance(
  appliance: ApplianceConfig,
  opts: {
    configPath?: string;
    env?: NodeJS.ProcessEnv;
    onSetupCode?: (code: string) => void;
    /** A mode switch failed and nothing answers any more: the process should exit. */
    onFatal?: (err: Error) => void;
  } = {},
): Promise<ApplianceDaemon> {
  const env = opts.env ?? process.env;
  const probe = mountProbe(env);
  const mounted = () => probe(appliance.data_disk);

  // The access db outlives the modes: one State, one Access, opened once on the system disk.
  mkdirSync(dirname(appliance.access_db), { recursive: true });
  const accessState: State = openState({ kind: 'sqlite', path: appliance.access_db });
  let ctx: AppContext | undefined;
  const access = new Access({
    state: accessState,
    configuredApiKey: () => ctx?.runtime.secret('daemon.api_key'),
    setupCodeFile: appliance.setup_code_file,
  });
  let daemon: RunningDaemon | undefined;
  // Set before the daemon starts: its API answers (and asks for alerts) before startDaemon returns.
  let mode: 'running' | 'standby' = 'standby';
  let unusable: string | undefined; // the disk is mounted but the daemon could not use it
  const disks = new DiskService({
    dataDisk: appliance.data_disk,
    spool: appliance.disk_spool,
    probe,
    log: (m) => ctx?.logger.child({ source: 'disk' }).info(m),
  });
  const systemd = systemdNotifier(env, (err) => ctx?.logger.warn(err.message));
  // One watchdog for the process, not one per mode: a switch stops one daemon and starts the
  // next, which on a Raspberry Pi (or in the boot test's emulated machine) takes longer than
  // WatchdogSec, and systemd then killed the daemon in the middle of its switch. The pings come
  // from a timer of this process, so a frozen process is still caught.
  const stopWatchdog = systemd.startWatchdog();
  const notifier: Notifier = { ...systemd, startWatchdog: () => () => {} };
  const alerts = (): Alert[] =>
    mode === 'standby'
      ? [
          unusable
            ? {
                code: 'data_disk_unusable',
                message: `The data disk at ${appliance.data_disk} is mounted but could not be used: ${unusable}`,
                fix: 'Check the disk (docs/troubleshooting.md, "The data disk is missing"); unplug and plug it again to retry.',
              }
            : dataDiskAlert(appliance.data_disk),
        ]
      : [];

  const open = async (next: 'running' | 'standby') => {
    mode = next;
    ctx = await openContext({
      configPath: opts.configPath,
      env,
      console: true,
      ...(mode === 'standby' ? { overrides: { stateDir: standbyDir(env) } } : {}),
    });
    try {
      if (mode === 'running') makeMirrorFolders(ctx.runtime, appliance.data_disk);
      daemon = await startDaemon(ctx, env, { mode, access, disks, alerts, notifier });
    } catch (err) {
      await ctx.close().catch(() => {});
      throw err;
    }
    if (mode === 'standby') {
      const a = alerts()[0]!;
      ctx.logger
        .child({ source: 'disk' })
        .warn({ code: a.code }, `standby: ${a.message} Fix: ${a.fix}`);
    } else {
      ctx.logger
        .child({ source: 'disk' })
        .info(`data disk mounted at ${appliance.data_disk}: running`);
    }
    if (daemon.setupCode) opts.onSetupCode?.(daemon.setupCode);
  };

  const start = async (mode: 'running' | 'standby') => {
    try {
      await open(mode);
    } catch (err) {
      if (mode === 'standby') throw err;
      unusable = (err as Error).message;
      process.stderr.write(`backupd: the data disk cannot be used: ${unusable}\n`);
      await open('standby');
    }
  };

  const stopCurrent = async (reason: string, handover: boolean) => {
    const d = daemon;
    daemon = undefined;
    // A disk pulled out from under the state makes closing it fail; the switch goes on.
    await d
      ?.stop(reason, { handover })
      .catch((err: Error) =>
        process.stderr.write(`backupd: stopping cleanly failed (${err.message})\n`),
      );
    ctx = undefined;
  };

  let chain: Promise<void> = Promise.resolve();
  let stopped = false;
  const check = () => {
    chain = chain.then(async () => {
      if (stopped || !daemon) return;
      const isMounted = mounted();
      if (!isMounted) unusable = undefined;
      const want = isMounted && !unusable ? 'running' : 'standby';
      if (want === daemon.mode) return;
      if (want === 'standby') {
        ctx?.logger
          .child({ source: 'disk' })
          .error(
            { code: 'data_disk_missing' },
            `the data disk at ${appliance.data_disk} is gone: stopping the sync and going to standby; the queue is kept on the disk and resumes when it is back`,
          );
      } else {
        ctx?.logger
          .child({ source: 'disk' })
          .info(`the data disk appeared at ${appliance.data_disk}: leaving standby`);
      }
      await stopCurrent(`switching to ${want}`, true);
      await start(want);
    });
    chain = chain.catch((err: Error) => {
      process.stderr.write(`backupd: switching modes failed: ${err.message}\n`);
      opts.onFatal?.(err);
    });
  };

  // A disk pulled out mid-push makes writes fail wherever they are (the log file, the state,
  // the watcher, rclone's temporary files), some of them in timers and streams with no caller to
  // catch them. Those are expected: while the disk is gone they lead to standby, not to a crash
  // (a crash would still end in standby, through systemd, but through a restart that counts
  // against its start limit). Anything else, or the same with the disk still there, is a bug:
  // reported and fatal as before.
  const diskGoneOrFatal = (err: unknown) => {
    if (daemon?.mode === 'running' && !mounted()) {
      process.stderr.write(
        `backupd: ${(err as Error)?.message ?? String(err)} (the data disk is gone: going to standby)\n`,
      );
      check();
      return;
    }
    process.stderr.write(`backupd: uncaught error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', diskGoneOrFatal);
  process.on('unhandledRejection', diskGoneOrFatal);

  await start(mounted() ? 'running' : 'standby');
  const timer = setInterval(check, CHECK_MS);

  return {
    mode: () => daemon?.mode ?? 'standby',
    setupCode: () => daemon?.setupCode,
    async stop(reason) {
      stopped = true;
      clearInterval(timer);
      process.off('uncaughtException', diskGoneOrFatal);
      process.off('unhandledRejection', diskGoneOrFatal);
      stopWatchdog();
      await chain;
      await stopCurrent(reason, false);
      await accessState.close();
    },
  };
}
