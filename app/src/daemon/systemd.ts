/**
 * The sd_notify protocol, for `Type=notify` and `WatchdogSec=` in backupd.service. Node cannot
 * send on a unix datagram socket itself, so the messages go through `systemd-notify`, which
 * waits until systemd has read each one (the unit sets NotifyAccess=all for it).
 */
import { execFile } from 'node:child_process';

export interface Notifier {
  ready(status: string): Promise<void>;
  status(status: string): Promise<void>;
  stopping(): Promise<void>;
  /** Starts the watchdog pings at half of WATCHDOG_USEC; returns a stop function. */
  startWatchdog(): () => void;
}

const NONE: Notifier = {
  ready: async () => {},
  status: async () => {},
  stopping: async () => {},
  startWatchdog: () => () => {},
};

export function systemdNotifier(
  env: NodeJS.ProcessEnv = process.env,
  onError: (err: Error) => void = () => {},
  binary = 'systemd-notify',
): Notifier {
  if (!env.NOTIFY_SOCKET) return NONE;
  const send = (args: string[]) =>
    new Promise<void>((resolve) => {
      execFile(binary, args, { env: { ...env }, timeout: 10_000 }, (err) => {
        if (err) onError(new Error(`systemd-notify ${args.join(' ')} failed: ${err.message}`));
        resolve();
      });
    });
  return {
    ready: (status) => send(['--ready', `--status=${status}`, `MAINPID=${process.pid}`]),
    status: (status) => send([`--status=${status}`]),
    stopping: () => send(['STOPPING=1']),
    startWatchdog() {
      const usec = Number(env.WATCHDOG_USEC);
      const pid = env.WATCHDOG_PID ? Number(env.WATCHDOG_PID) : process.pid;
      if (!usec || pid !== process.pid) return () => {};
      const timer = setInterval(() => void send(['WATCHDOG=1']), Math.max(500, usec / 2000));
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
