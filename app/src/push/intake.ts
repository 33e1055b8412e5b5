/**
 * Where changes found on the mirror enter the durable queue, for every enabled destination.
 * The mass-deletion guard sits here: when deletions within a short window exceed a share of the
 * files (or a count), they are held, an alert is raised, and nothing is deleted at any
 * destination until the owner confirms. A disk that fails, a bad sync or a mistaken `rm -r`
 * must not empty the backups.
 */
import type { Logger } from '../log/index.js';
import type { NewChange, State } from '../state/index.js';

export interface GuardPolicy {
  /** Deletions above this share of the files, within the window, are held (0 to 1). */
  share: number;
  /** ...or above this many, whatever the share. */
  count: number;
  windowMs: number;
  /** Fewer deletions than this are never held (a small mirror losing three files is normal). */
  minimum: number;
}

export const DEFAULT_GUARD: GuardPolicy = {
  share: 0.2,
  count: 10_000,
  windowMs: 10 * 60_000,
  minimum: 20,
};

export interface HeldAlert {
  deletions: number;
  files: number;
  message: string;
  fix: string;
}

export class Intake {
  /** Times of recent deletions, oldest first. */
  private recent: number[] = [];
  private holding = false;

  constructor(
    private readonly o: {
      state: State;
      destinations: () => string[];
      logger: Logger;
      guard?: GuardPolicy;
      /** Called once when deletions start being held (mail, webhook, panel). */
      onHeld?: (alert: HeldAlert) => void;
      /** Called after new work is queued (wakes the push workers). */
      onQueued?: () => void;
      now?: () => number;
    },
  ) {}

  /** After a restart: deletions still held keep the guard closed. */
  async init(): Promise<this> {
    this.holding = (await this.o.state.queue.counts()).held > 0;
    return this;
  }

  get guard(): GuardPolicy {
    return this.o.guard ?? DEFAULT_GUARD;
  }

  async submit(changes: NewChange[]): Promise<void> {
    if (changes.length === 0) return;
    const now = (this.o.now ?? Date.now)();
    const destinations = this.o.destinations();
    if (destinations.length === 0) return;
    const deletes = changes.filter((c) => c.op === 'delete');
    const others = changes.filter((c) => c.op !== 'delete');
    // Keep the order of everything that is not held.
    let held = false;
    if (deletes.length) {
      this.recent = this.recent.filter((t) => t > now - this.guard.windowMs);
      for (let i = 0; i < deletes.length; i++) this.recent.push(now);
      const files =
        (await this.o.state.files.totals()).reduce((n, t) => n + t.files, 0) + this.recent.length;
      const n = this.recent.length;
      held =
        this.holding ||
        (n >= this.guard.minimum && (n > this.guard.share * files || n > this.guard.count));
      if (held && !this.holding) {
        this.holding = true;
        const alert: HeldAlert = {
          deletions: n,
          files,
          message: `${n} files were deleted from the mirror within ${Math.round(this.guard.windowMs / 60_000)} minutes (${Math.round((100 * n) / Math.max(1, files))}% of ${files}). The deletions are held: nothing is deleted at the destinations.`,
          fix: 'If this was intended, confirm the deletions in the panel (or POST /api/sync/deletions/confirm). If not, restore the files on the mirror and discard them (POST /api/sync/deletions/discard).',
        };
        this.o.logger.child({ source: 'guard' }).error({ deletions: n, files }, alert.message);
        this.o.onHeld?.(alert);
      }
    }
    if (held) {
      if (others.length) await this.o.state.queue.enqueue(others, destinations, now);
      await this.o.state.queue.enqueue(deletes, destinations, now, { held: true });
    } else {
      await this.o.state.queue.enqueue(changes, destinations, now);
    }
    this.o.onQueued?.();
  }

  /** The owner confirmed: held deletions go ahead; the guard watches afresh. */
  async confirm(): Promise<number> {
    const n = await this.o.state.queue.release('all', (this.o.now ?? Date.now)());
    this.reset();
    this.o.onQueued?.();
    return n;
  }

  /** The owner refused: held deletions are dropped and the destinations keep those files. */
  async discard(): Promise<number> {
    const n = await this.o.state.queue.discardHeld('all');
    this.reset();
    return n;
  }

  private reset(): void {
    this.holding = false;
    this.recent = [];
  }
}
