/**
 * Live push progress: what each destination is sending now, read from rclone's `core/stats` of
 * the destination's stats group (`push/<destination>`, where the engine runs every transfer),
 * joined with the queue's counts; served by `GET /api/sync/progress` and sent on the live event
 * stream. It costs little when nothing moves, which is most of the time on a Raspberry Pi:
 *
 * - While something is pushed, rclone is asked once a second per busy destination, and each
 *   answer is published once (listeners: the SSE streams). Nothing of it goes into the stored
 *   events: a line a second would wear the SD card for nothing.
 * - Otherwise rclone is not asked at all. Two indexed queries of the queue say whether a
 *   destination has claimed work or finished some since the last look; only then is rclone
 *   polled again. They run every second while someone watches the stream (so a push shows
 *   within a second), else less and less often, up to every `idleMaxMs`; `GET` looks at once.
 * - What should survive a restart (bytes sent in total, the last activity, the last burst) goes
 *   into the state, one small settings row, at the end of a burst or `persistMs` into a long one,
 *   never twice within `persistMs` (30 s), and when the monitor stops.
 * - A large transfer (`largeFileBytes`, 16 MiB, the size from which the engine runs a copy as a
 *   job) that finished gets one log line with its size, time and rate; small files get none.
 *
 * rclone's counters are per process: a restarted rclone starts again from zero, which is told
 * by its pid or by a counter that went down, so the totals neither lose nor double bytes.
 */
import { z } from 'zod';
import type { QueueCounts, State } from '../state/index.js';
import type { RcStats, RcTransferred } from './rcd.js';

/** The part of rclone's remote control the monitor uses (RcloneDaemon fits). */
export interface ProgressRc {
  stats(group: string): Promise<RcStats>;
  transferred(group: string): Promise<RcTransferred[]>;
  /** The rclone process's id, when known: a new process starts its counters at zero. */
  readonly pid?: number | undefined;
}

type LogFn = (obj: Record<string, unknown>, msg: string) => void;

export interface ProgressStart {
  rc: ProgressRc;
  /** The destinations the engine pushes to; each one's stats group is `push/<name>`. */
  destinations: string[];
  state: Pick<State, 'queue' | 'settings'>;
  logger: { info: LogFn; warn: LogFn; debug: LogFn };
}

export interface ProgressOptions {
  /** Interval between two polls of rclone while something is pushed. Default 1 s. */
  activeMs?: number;
  /** Longest interval between two looks at the queue at rest, nobody watching. Default 10 s. */
  idleMaxMs?: number;
  /** Shortest interval between two writes of the totals, and longest wait of one. Default 30 s. */
  persistMs?: number;
  /** Finished transfers from this size on are logged one by one. Default 16 MiB. */
  largeFileBytes?: number;
  now?: () => number;
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

const transferView = z.object({
  name: z.string().describe('The file, relative to its source folder.'),
  size: z.number(),
  bytes: z.number().describe('Bytes sent so far.'),
  percentage: z.number(),
  speed: z.number().describe('Bytes per second, now.'),
  eta_seconds: z.number().nullable().describe('Seconds left at the current speed, if known.'),
});

export const destinationProgress = z.object({
  name: z.string(),
  state: z.enum(['pushing', 'idle']),
  started_at: z
    .string()
    .nullable()
    .describe(
      'When the current (or last) burst of pushing began (as a look at the queue saw it: up to 10 s early).',
    ),
  ended_at: z.string().nullable().describe('When the last burst ended; null while pushing.'),
  bytes: z.number().describe('Bytes sent in the current (or last) burst.'),
  speed: z.number().describe('Bytes per second over the last second, all files together.'),
  eta_seconds: z
    .number()
    .nullable()
    .describe('Seconds until the files in flight are sent, at the current speed.'),
  in_flight: z.object({
    files: z.number(),
    bytes: z.number().describe('Bytes sent of the files in flight.'),
    size: z.number().describe('Their size.'),
  }),
  transferring: z.array(transferView),
  backlog: z.object({
    done: z.number().describe('Queue items finished in the current (or last) burst.'),
    left: z.number().describe('Queue items still to do (pending and running).'),
    failed: z.number(),
    held: z.number(),
  }),
  errors: z.object({
    count: z.number().describe('Errors rclone reported in the current (or last) burst.'),
    last: z.string().nullable(),
  }),
  bytes_sent: z.number().describe('Bytes sent to this destination in total, across restarts.'),
  last_activity_at: z.string().nullable(),
});

export const pushProgress = z
  .object({
    pushing: z.boolean().describe('Something is being sent to at least one destination.'),
    updated_at: z.string(),
    destinations: z.array(destinationProgress),
  })
  .meta({ id: 'PushProgress' });
export type PushProgress = z.infer<typeof pushProgress>;
export type DestinationProgress = z.infer<typeof destinationProgress>;

/** One burst: from the first sign of work at a destination until nothing is left running. */
interface Burst {
  startedAt: number;
  endedAt: number | null;
  bytes: number;
  done: number;
  errors: number;
  lastError: string | null;
}

/** What the state keeps of each destination (settings key `push.progress`). */
export interface StoredProgress {
  bytes_sent: number;
  last_activity_at: number | null;
  last_burst: {
    started_at: number;
    ended_at: number | null;
    bytes: number;
    done: number;
    errors: number;
    last_error: string | null;
  } | null;
}

export const PROGRESS_KEY = 'push.progress';

/** The stored totals of every destination (empty when there are none, or they are unreadable). */
export async function readStoredProgress(
  settings: State['settings'],
): Promise<Record<string, StoredProgress>> {
  const raw = await settings.get(PROGRESS_KEY);
  if (!raw) return {};
  try {
    const parsed = JSON.parse(raw) as Record<string, Partial<StoredProgress>>;
    return Object.fromEntries(
      Object.entries(parsed).map(([name, p]) => [
        name,
        {
          bytes_sent: typeof p.bytes_sent === 'number' ? p.bytes_sent : 0,
          last_activity_at: typeof p.last_activity_at === 'number' ? p.last_activity_at : null,
          last_burst: p.last_burst ?? null,
        },
      ]),
    );
  } catch {
    return {}; // a damaged row costs the totals, never the daemon
  }
}

export interface PushTotals {
  bytes_sent: number;
  last_activity_at: string | null;
}

/**
 * Bytes sent in total and the last activity of each destination: the running monitor's when
 * given (newer than the state by up to `persistMs`), else what the state keeps, which is what
 * another process (`backupd status`) and a daemon after a restart see.
 */
export async function pushTotals(
  settings: State['settings'],
  live?: Record<string, PushTotals>,
): Promise<Record<string, PushTotals>> {
  const out: Record<string, PushTotals> = {};
  for (const [name, s] of Object.entries(await readStoredProgress(settings)))
    out[name] = { bytes_sent: s.bytes_sent, last_activity_at: iso(s.last_activity_at) };
  return { ...out, ...live };
}

interface Track {
  name: string;
  group: string;
  pushing: boolean;
  burst: Burst | null;
  bytesSent: number;
  lastActivityAt: number | null;
  /** rclone's counters as last read, to turn them into increments. */
  pid: number | undefined;
  rcBytes: number;
  rcErrors: number;
  polledAt: number | null;
  speed: number;
  transferring: Flight[];
  /** Finished queue items are counted up to (not including) this time. */
  checkedAt: number;
  counts: QueueCounts;
  /** `burst.done` when the counts were read: what finished since comes off `left`. */
  doneAtCount: number;
  countsDueAt: number;
  /** Large files in flight at the last poll. */
  large: Set<string>;
  /** Completion time of the newest large transfer logged. */
  loggedUpTo: number;
  failing: boolean;
}

/** A file in flight, with its speed as measured here. */
interface Flight {
  name: string;
  size: number;
  bytes: number;
  percentage: number;
  speed: number;
}

const NO_COUNTS: QueueCounts = { pending: 0, running: 0, failed: 0, held: 0 };
const MiB = 1024 * 1024;
const round1 = (n: number) => Number(n.toFixed(1));

export class ProgressMonitor {
  private readonly activeMs: number;
  private readonly idleMaxMs: number;
  private readonly persistMs: number;
  private readonly largeFileBytes: number;
  private readonly now: () => number;
  private o: ProgressStart | undefined;
  private tracks: Track[] = [];
  private stored: Record<string, StoredProgress> = {};
  private readonly listeners = new Set<(p: PushProgress) => void>();
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> = Promise.resolve();
  private lookedAt = 0;
  /** Counts the stops: a look still under way from before a stop leaves the monitor alone. */
  private generation = 0;
  private dueAt = 0;
  private idleDelay: number;
  /** Since when the state lacks something (null: it has everything). */
  private dirtySince: number | null = null;
  private persistedAt = 0;

  constructor(opts: ProgressOptions = {}) {
    this.activeMs = opts.activeMs ?? 1000;
    this.idleMaxMs = Math.max(this.activeMs, opts.idleMaxMs ?? 10_000);
    this.persistMs = opts.persistMs ?? 30_000;
    this.largeFileBytes = opts.largeFileBytes ?? 16 * MiB;
    this.now = opts.now ?? Date.now;
    this.idleDelay = this.activeMs;
  }

  /** Starts watching these destinations through this rclone (after a restart: new ones). */
  async start(o: ProgressStart): Promise<void> {
    await this.stop();
    // A look of the last run that never ended (its generation is past) must not hold up ours.
    this.ticking = Promise.resolve();
    this.o = o;
    this.stored = await readStoredProgress(o.state.settings);
    const now = this.now();
    this.tracks = o.destinations.map((name) => {
      const s = this.stored[name];
      const b = s?.last_burst;
      return {
        name,
        group: `push/${name}`,
        pushing: false,
        burst: b
          ? {
              startedAt: b.started_at,
              endedAt: b.ended_at ?? now,
              bytes: b.bytes,
              done: b.done,
              errors: b.errors,
              lastError: b.last_error,
            }
          : null,
        bytesSent: s?.bytes_sent ?? 0,
        lastActivityAt: s?.last_activity_at ?? null,
        pid: undefined,
        rcBytes: 0,
        rcErrors: 0,
        polledAt: null,
        speed: 0,
        transferring: [],
        checkedAt: now,
        counts: NO_COUNTS,
        doneAtCount: 0,
        countsDueAt: 0,
        large: new Set(),
        loggedUpTo: now,
        failing: false,
      };
    });
    for (const t of this.tracks) await this.count(t, now);
    this.running = true;
    this.idleDelay = this.activeMs;
    this.schedule(0);
  }

  /** Stops polling after a last look; a burst in progress is closed and the totals are written. */
  async stop(): Promise<void> {
    if (!this.running) return;
    // What was sent since the previous look counts too; but an rclone that does not answer at
    // once (restarting) must not hold up the daemon's stop: the wait is bounded.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.tracks.some((t) => t.pushing) ? this.look() : this.ticking,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000))),
    ]);
    clearTimeout(timer);
    this.running = false;
    this.generation++;
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = this.now();
    let ended = false;
    for (const t of this.tracks) if (t.pushing) ended = this.end(t, now) || ended;
    if (this.dirtySince !== null) await this.persist(now);
    if (ended) this.publish(now);
  }

  /** Called with each new snapshot: once per `activeMs` while something moves, then once at rest. */
  subscribe(listener: (p: PushProgress) => void): () => void {
    this.listeners.add(listener);
    // Someone watches: the next look comes within a second (a look under way sees to it itself).
    if (this.running && this.timer && this.dueAt - this.now() > this.activeMs)
      this.schedule(this.activeMs);
    return () => this.listeners.delete(listener);
  }

  /** The progress now: at rest, the queue is looked at first, and the backlog counted afresh. */
  async view(): Promise<PushProgress> {
    if (this.running && !this.tracks.some((t) => t.pushing) && this.now() - this.lookedAt >= 100)
      await this.look();
    const now = this.now();
    if (this.o) for (const t of this.tracks) if (!t.pushing) await this.count(t, now);
    return this.snapshot(now);
  }

  /** Bytes sent in total and the last activity of each destination watched, live. */
  totals(): Record<string, PushTotals> {
    return Object.fromEntries(
      this.tracks.map((t) => [
        t.name,
        { bytes_sent: t.bytesSent, last_activity_at: iso(t.lastActivityAt) },
      ]),
    );
  }

  // ---------------------------------------------------------------------------------------

  private schedule(ms: number) {
    clearTimeout(this.timer);
    this.dueAt = this.now() + ms;
    this.timer = setTimeout(() => void this.look(), ms);
    // The monitor never keeps the process alive by itself.
    this.timer.unref();
  }

  /** One look now, after the one under way if any; the next is scheduled at its end. */
  private look(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const run = this.ticking.then(() => (this.running ? this.tick() : undefined));
    this.ticking = run.catch(() => {});
    return this.ticking;
  }

  private async tick(): Promise<void> {
    const now = this.now();
    const generation = this.generation;
    const current = () => this.running && generation === this.generation;
    this.lookedAt = now;
    let news = false;
    let ended = false;
    for (const t of this.tracks) {
      if (!current()) return;
      const was = t.pushing;
      try {
        news = (await this.step(t, now)) || news;
        if (t.failing)
          this.o!.logger.debug({ destination: t.name }, 'push progress: rclone answers again');
        t.failing = false;
      } catch (err) {
        // rclone restarting, say: the next look catches up (the counters say what was missed).
        if (!t.failing)
          this.o!.logger.debug(
            { destination: t.name, err: (err as Error).message },
            'push progress: cannot read the stats now',
          );
        t.failing = true;
      }
      if (was && !t.pushing) ended = news = true;
    }
    if (!current()) return;
    if (news) this.publish(now);
    // Writes are at least `persistMs` apart: at the end of a burst when the last one is that
    // old, else once the state has lacked something for that long (a trickle of small bursts
    // costs one write every `persistMs`, not one each).
    if (
      this.dirtySince !== null &&
      now - this.persistedAt >= this.persistMs &&
      (ended || now - this.dirtySince >= this.persistMs)
    )
      await this.persist(now);
    const active = this.tracks.some((t) => t.pushing);
    this.idleDelay =
      active || this.listeners.size > 0
        ? this.activeMs
        : Math.min(this.idleDelay * 2, this.idleMaxMs);
    if (current()) this.schedule(this.idleDelay);
  }

  /** One look at a destination; true when there is something new to publish. */
  private async step(t: Track, now: number): Promise<boolean> {
    const { queue } = this.o!.state;
    const running = (await queue.list({ destination: t.name, state: 'running', limit: 1 })).length;
    const done = await queue.countDone(t.name, t.checkedAt, now);
    const since = t.checkedAt;
    t.checkedAt = now;
    if (!t.pushing && running === 0 && done === 0) return false; // at rest: rclone is not asked
    if (!t.pushing) {
      // Work began since the last look (or even ended: a few small files between two looks).
      t.pushing = true;
      t.burst = { startedAt: since, endedAt: null, bytes: 0, done: 0, errors: 0, lastError: null };
      t.polledAt = null;
      t.countsDueAt = 0;
      t.doneAtCount = 0;
    }
    t.burst!.done += done;
    if (done > 0) t.lastActivityAt = now;
    this.dirtySince ??= now;
    try {
      await this.poll(t, now);
    } catch (err) {
      // No answer, and nothing claimed either: the burst is over all the same.
      if (running === 0) {
        await this.count(t, now);
        this.end(t, now);
      }
      throw err;
    }
    const moving = running > 0 || t.transferring.length > 0;
    if (!moving || now >= t.countsDueAt) await this.count(t, now);
    if (!moving) this.end(t, now);
    return true;
  }

  private async poll(t: Track, now: number): Promise<void> {
    const { rc } = this.o!;
    const s = await rc.stats(t.group);
    const pid = rc.pid;
    const fresh = pid !== t.pid || s.bytes < t.rcBytes || s.errors < t.rcErrors;
    const bytes = fresh ? s.bytes : s.bytes - t.rcBytes;
    const errors = fresh ? s.errors : s.errors - t.rcErrors;
    Object.assign(t, { pid, rcBytes: s.bytes, rcErrors: s.errors });
    const burst = t.burst!;
    t.bytesSent += bytes;
    burst.bytes += bytes;
    if (errors > 0) {
      burst.errors += errors;
      burst.lastError = s.lastError ?? burst.lastError;
    }
    const seconds = t.polledAt === null ? 0 : (now - t.polledAt) / 1000;
    const before = new Map(t.transferring.map((x) => [x.name, x.bytes]));
    // Speeds are measured between two polls: rclone's `speed` of a group averages its whole
    // life, and a file's swings with its buffers (twice the bandwidth limit, at times). A file
    // seen for the first time has rclone's average since it started, if any.
    t.transferring = (s.transferring ?? []).map((x) => {
      const prev = before.get(x.name);
      const measured = prev !== undefined && seconds > 0 && x.bytes >= prev;
      return {
        name: x.name,
        size: x.size,
        bytes: x.bytes,
        percentage: x.percentage,
        speed: measured ? (x.bytes - prev) / seconds : x.speedAvg || 0,
      };
    });
    t.speed = seconds > 0 ? bytes / seconds : t.transferring.reduce((sum, x) => sum + x.speed, 0);
    t.polledAt = now;
    if (bytes > 0 || t.transferring.length > 0) t.lastActivityAt = now;
    await this.logLarge(t, bytes);
  }

  /** One line per large transfer that finished since the last poll (from `core/transferred`). */
  private async logLarge(t: Track, bytes: number): Promise<void> {
    const L = this.largeFileBytes;
    const big = new Set(t.transferring.filter((x) => x.size >= L).map((x) => x.name));
    const gone = [...t.large].some((n) => !big.has(n));
    t.large = big;
    // A large file may also have come and gone between two polls: then its bytes show.
    if (!gone && bytes < L) return;
    let upTo = t.loggedUpTo;
    for (const e of await this.o!.rc.transferred(t.group)) {
      const end = Date.parse(e.completed_at);
      if (!(end > t.loggedUpTo) || e.error || e.checked || e.size < L) continue;
      const seconds = Math.max((end - Date.parse(e.started_at)) / 1000, 0.001);
      this.o!.logger.info(
        {
          destination: t.name,
          path: e.name,
          bytes: e.size,
          seconds: round1(seconds),
          bytes_per_second: Math.round(e.size / seconds),
        },
        `sent ${e.name} (${round1(e.size / MiB)} MiB) to ${t.name} in ${round1(seconds)} s, ${round1(e.size / MiB / seconds)} MiB/s`,
      );
      upTo = Math.max(upTo, end);
    }
    t.loggedUpTo = upTo;
  }

  /**
   * The queue's counts of a destination. They cost a read of every open item, which during a
   * first backup can be a million: so, while pushing, they are read again only after twenty
   * times as long as the last read took (at most 5 % of the time), and `left` meanwhile
   * follows the items finished.
   */
  private async count(t: Track, now: number): Promise<void> {
    const began = performance.now();
    t.counts = await this.o!.state.queue.counts(t.name);
    t.doneAtCount = t.burst?.done ?? 0;
    t.countsDueAt = now + Math.max(this.activeMs, 20 * (performance.now() - began));
  }

  /** The burst is over; true when it was one. */
  private end(t: Track, now: number): boolean {
    if (!t.pushing) return false;
    t.pushing = false;
    if (t.burst) t.burst.endedAt = now;
    t.speed = 0;
    t.transferring = [];
    t.large = new Set();
    this.dirtySince ??= now;
    return true;
  }

  private async persist(now: number): Promise<void> {
    const all = { ...this.stored };
    for (const t of this.tracks) {
      const b = t.burst;
      all[t.name] = {
        bytes_sent: t.bytesSent,
        last_activity_at: t.lastActivityAt,
        last_burst: b && {
          started_at: b.startedAt,
          ended_at: b.endedAt,
          bytes: b.bytes,
          done: b.done,
          errors: b.errors,
          last_error: b.lastError,
        },
      };
    }
    try {
      await this.o!.state.settings.set(PROGRESS_KEY, JSON.stringify(all));
      this.stored = all;
      this.dirtySince = null;
      this.persistedAt = now;
    } catch (err) {
      this.o!.logger.warn(
        { err: (err as Error).message },
        `cannot store the push totals: ${(err as Error).message}`,
      );
    }
  }

  private publish(now: number): void {
    if (this.listeners.size === 0) return;
    const p = this.snapshot(now);
    for (const l of this.listeners) {
      try {
        l(p);
      } catch {
        /* a listener's trouble (a closed stream) is its own */
      }
    }
  }

  private snapshot(now: number): PushProgress {
    const destinations = this.tracks.map((t): DestinationProgress => {
      const b = t.burst;
      const inFlight = t.transferring.reduce(
        (a, x) => ({ files: a.files + 1, bytes: a.bytes + x.bytes, size: a.size + x.size }),
        { files: 0, bytes: 0, size: 0 },
      );
      const finished = t.pushing ? (b?.done ?? 0) - t.doneAtCount : 0;
      return {
        name: t.name,
        state: t.pushing ? 'pushing' : 'idle',
        started_at: iso(b?.startedAt),
        ended_at: iso(b?.endedAt),
        bytes: b?.bytes ?? 0,
        speed: Math.round(t.speed),
        eta_seconds:
          t.speed > 0 && inFlight.files > 0
            ? Math.ceil(Math.max(0, inFlight.size - inFlight.bytes) / t.speed)
            : null,
        in_flight: inFlight,
        transferring: t.transferring.map((x) => ({
          name: x.name,
          size: x.size,
          bytes: x.bytes,
          percentage: x.percentage,
          speed: Math.round(x.speed),
          // rclone 1.60 often reports a file's eta as 0 long before the end: ours is computed.
          eta_seconds: x.speed > 0 ? Math.ceil(Math.max(0, x.size - x.bytes) / x.speed) : null,
        })),
        backlog: {
          done: b?.done ?? 0,
          left: Math.max(0, t.counts.pending + t.counts.running - finished),
          failed: t.counts.failed,
          held: t.counts.held,
        },
        errors: { count: b?.errors ?? 0, last: b?.lastError ?? null },
        bytes_sent: t.bytesSent,
        last_activity_at: iso(t.lastActivityAt),
      };
    });
    return {
      pushing: this.tracks.some((t) => t.pushing),
      updated_at: new Date(now).toISOString(),
      destinations,
    };
  }
}
