// Under systemd (Type=notify, WatchdogSec=), the daemon says READY once it answers, pings the
// watchdog at half the interval, and says STOPPING on SIGTERM. The notification socket here is
// a unix datagram socket of the test's own, read the way systemd reads it.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanEnv, makeHome, startDaemon, waitFor, type Home } from '../helpers/daemon.js';

const here = path.dirname(fileURLToPath(import.meta.url));
let home: Home;
afterAll(async () => {
  await home?.cleanup();
});

describe('systemd notification', () => {
  it('sends READY, watchdog pings and STOPPING', async () => {
    home = await makeHome();
    const socket = path.join(home.dir, 'notify.sock');
    const receiver = spawn(
      'python3',
      [path.join(here, '..', 'fixtures', 'notify-socket.py'), socket],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let messages = '';
    receiver.stdout.on('data', (d: Buffer) => (messages += d));
    try {
      await waitFor('the notify socket', () => messages.includes('READY\n') || undefined);
      const started = Date.now();
      const daemon = await startDaemon(
        home,
        cleanEnv({ NOTIFY_SOCKET: socket, WATCHDOG_USEC: '1000000' }),
      );
      await waitFor(
        'READY=1',
        () =>
          /READY=1\|STATUS=waiting for first-run setup\|MAINPID=\d+/.test(messages) || undefined,
      );
      expect(messages).toContain(`MAINPID=${daemon.child.pid}`);
      // WatchdogSec=1 s: pings every 0.5 s, so at least three within two seconds.
      await waitFor(
        'three watchdog pings',
        () => (messages.match(/WATCHDOG=1/g) ?? []).length >= 3 || undefined,
        10_000,
      );
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await daemon.stop()).toBe(0);
      expect(messages).toContain('STOPPING=1');
    } finally {
      receiver.kill();
    }
  });
});
