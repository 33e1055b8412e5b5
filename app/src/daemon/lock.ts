/**
 * One pusher per state: `backupd start` and `backupd sync --once` each hold a lock file beside
 * the state database while they run. Two of them on one state would claim the same queue and
 * push every change twice; the second one is refused with what to do instead.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class StateLockedError extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

/** Whether a process id is a running backupd (not a stale file whose number was reused). */
function isBackupd(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.some((a) => /backupd|cli\/main\.js$/.test(a));
  } catch {
    return false; // gone
  }
}

export function lockState(stateDir: string, what: string): { release(): void } {
  const file = join(stateDir, 'backupd.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid} ${what}\n`, { flag: 'wx', mode: 0o644 });
      return {
        release() {
          try {
            if (readFileSync(file, 'utf8').startsWith(`${process.pid} `)) rmSync(file);
          } catch {
            /* already gone */
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const [pid, ...rest] = readFileSync(file, 'utf8').trim().split(' ');
      if (isBackupd(Number(pid)))
        throw new StateLockedError(
          `another backupd (${rest.join(' ') || 'process'}, pid ${pid}) is using the state in ${stateDir}`,
          rest.join(' ') === 'start'
            ? 'The daemon is running and pushes every change itself; for a pass now, use "Sync now" in the panel or POST /api/sync/force. To run sync --once instead, stop the daemon first (systemctl stop backupd).'
            : 'Wait for it to finish, or stop it, then try again.',
        );
      rmSync(file, { force: true }); // left by a process that died: take over
    }
  }
  throw new StateLockedError(
    `could not take the lock ${file}`,
    'Another backupd is starting at the same moment; try again.',
  );
}
