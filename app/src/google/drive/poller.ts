/**
 * The Drive pull in the running daemon: every `poll_interval_seconds`, each signed-in account
 * is pulled on its own (one account's failure or lost sign-in leaves the others going). A poll
 * with no change is one Drive call. Pausing the source (POST /api/sync/pause/google_drive)
 * pauses its pull as well as its push: the mirror is not changed while the owner looks at it.
 */
import type { Runtime } from '../../config/index.js';
import type { Logger } from '../../log/index.js';
import type { State } from '../../state/index.js';
import type { GoogleAccounts } from '../accounts.js';
import { DrivePuller, type AccountPassOutcome } from './puller.js';

export interface AccountActivity {
  state: 'idle' | 'pulling';
  last?: AccountPassOutcome & { finished_at: string };
}

export class DrivePoller {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private controller = new AbortController();
  private stopped = true;
  readonly activity = new Map<number, AccountActivity>();
  private readonly puller: DrivePuller;

  constructor(
    private readonly deps: {
      runtime: () => Runtime;
      state: State;
      logger: Logger;
      accounts: GoogleAccounts;
      /** Whether the source is paused (the push half's pause, shared by the pull). */
      paused: () => boolean;
    },
  ) {
    this.puller = new DrivePuller(deps);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.controller = new AbortController();
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.controller.abort(new Error('the daemon is stopping'));
    await this.running?.catch(() => {});
  }

  /** A pass now (the panel's "sync now"), unless one is under way. */
  pollNow(): Promise<void> {
    clearTimeout(this.timer);
    this.running ??= this.round().finally(() => {
      this.running = undefined;
      this.schedule();
    });
    return this.running;
  }

  private schedule(ms?: number): void {
    if (this.stopped) return;
    const cfg = this.deps.runtime().config.sources.google_drive;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pollNow(), ms ?? cfg.poll_interval_seconds * 1000);
    this.timer.unref();
  }

  private async round(): Promise<void> {
    const cfg = this.deps.runtime().config.sources.google_drive;
    if (!cfg.enabled || this.deps.paused() || this.stopped) return;
    const log = this.deps.logger.child({ source: 'google_drive' });
    let accounts;
    try {
      accounts = await this.deps.accounts.list('google_drive');
    } catch (err) {
      log.error({ err }, `could not tell which Google accounts to pull: ${(err as Error).message}`);
      return;
    }
    const records = await this.deps.state.accounts.list('google_drive');
    await Promise.all(
      accounts.map(async (a) => {
        const status = records.find((r) => r.id === a.id)?.status;
        if (status === 'paused' || status === 'needs_sign_in') return;
        const act = this.activity.get(a.id) ?? { state: 'idle' };
        this.activity.set(a.id, { ...act, state: 'pulling' });
        try {
          const o = await this.puller.pullOne(a, this.controller.signal);
          this.activity.set(a.id, {
            state: 'idle',
            last: { ...o, finished_at: new Date().toISOString() },
          });
        } catch (err) {
          this.activity.set(a.id, { ...act, state: 'idle' });
          if (!this.controller.signal.aborted)
            log.error({ err, account: a.email }, `Drive pass failed: ${(err as Error).message}`);
        }
      }),
    );
  }
}
