/**
 * The upload bandwidth limit and its weekly schedule.
 *
 * rclone takes a timetable only as a start-up flag (over rc, `core/bwlimit` refuses one with
 * "need exactly 1 bandwidth setting"), so the daemon keeps the schedule itself: `limitAt` says
 * which limit is in force at a local time, `nextChange` when that changes, and
 * `BandwidthController` sets it in the rclone process (`core/bwlimit`) at start, at each change,
 * after rclone restarts, and when the owner overrides it through the API.
 */
import { z } from 'zod';
import type { KeyMeta } from '../config/schema.js';

// ---------------------------------------------------------------------------------------------
// Rates, in rclone's notation
// ---------------------------------------------------------------------------------------------

const UNIT: Record<string, number> = {
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};
/** One rate: a number and a unit (B, K, M, G, T, P; optional i/iB), as rclone 1.60 reads it. */
const ONE_RATE = /^(\d+(?:\.\d+)?)(?:([kmgtp])(?:ib?)?|(b))$/i;

function oneRate(s: string): number | null | string {
  if (s.toLowerCase() === 'off') return null;
  if (/^\d+(\.\d+)?$/.test(s))
    return `"${s}" has no unit: write e.g. ${s}k or ${s}M (rclone would read a bare number as KiB/s)`;
  const m = ONE_RATE.exec(s);
  if (!m)
    return `"${s}" is not a rate: write a number and a unit, e.g. 512k, 1M, 1.5M or 10M (bytes per second: k = KiB/s, M = MiB/s), or off`;
  const n = Number(m[1]) * UNIT[(m[2] ?? m[3])!.toLowerCase()]!;
  if (n < 1) return `"${s}" is no limit at all: write off to lift the limit`;
  return n;
}

/**
 * Why `rate` is not a bandwidth limit rclone understands, or undefined when it is one:
 * `off`, or a number with a unit (`512k`, `1M`, `1.5M`, `10M`; binary units, so 1M is
 * 1 MiB/s), or `UPLOAD:DOWNLOAD` such as `10M:off`.
 */
export function rateProblem(rate: string): string | undefined {
  const parts = rate.trim() === rate ? rate.split(':') : [];
  if (parts.length === 0 || parts.length > 2)
    return `"${rate}" is not a rate: write e.g. 512k, 1M or 10M (bytes per second), off, or UPLOAD:DOWNLOAD such as 10M:off`;
  for (const p of parts) {
    const r = oneRate(p);
    if (typeof r === 'string') return r;
  }
  return undefined;
}

/** The upload limit in bytes per second, or null when `off` (throws when the rate is invalid). */
export function rateBytesPerSecond(rate: string): number | null {
  const problem = rateProblem(rate);
  if (problem) throw new RangeError(problem);
  return oneRate(rate.split(':')[0]!) as number | null;
}

export const isOff = (rate: string) => rate.split(':').every((p) => p.toLowerCase() === 'off');

// ---------------------------------------------------------------------------------------------
// Days and times
// ---------------------------------------------------------------------------------------------

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const FULL_DAY_NAMES = [
  'sunday',
  'monday',
  'tuesday',
  'wednesday',
  'thursday',
  'friday',
  'saturday',
];
const DAYS_HELP =
  'write a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun), a range such as Mon-Fri, a list such as Sat,Sun, or daily, weekdays, weekends';

function dayIndex(name: string): number {
  const n = name.trim().toLowerCase();
  const i = DAY_NAMES.indexOf(n);
  return i >= 0 ? i : FULL_DAY_NAMES.indexOf(n);
}

/** The days (0 = Sunday, as `Date#getDay`) an entry's `days` names, or the problem with it. */
export function parseDays(days: string): Set<number> | string {
  const out = new Set<number>();
  const tokens = days.split(',').map((t) => t.trim());
  const where = (token: string) => (tokens.length > 1 ? `"${days}": "${token}"` : `"${token}"`);
  if (days.trim() === '') return `days is empty: ${DAYS_HELP}`;
  for (const token of tokens) {
    const word = token.toLowerCase();
    if (word === 'daily' || word === 'everyday' || word === 'every day') {
      for (let d = 0; d < 7; d++) out.add(d);
    } else if (word === 'weekdays') {
      for (let d = 1; d <= 5; d++) out.add(d);
    } else if (word === 'weekends' || word === 'weekend') {
      out.add(6).add(0);
    } else if (word.includes('-')) {
      const [a, b, ...rest] = word.split('-');
      const from = dayIndex(a ?? '');
      const to = dayIndex(b ?? '');
      if (rest.length || from < 0 || to < 0)
        return `${where(token)} is not a range of days; ${DAYS_HELP}`;
      // Fri-Mon wraps over the weekend.
      for (let d = from; ; d = (d + 1) % 7) {
        out.add(d);
        if (d === to) break;
      }
    } else {
      const d = dayIndex(word);
      if (d < 0) return `${where(token)} is not a day; ${DAYS_HELP}`;
      out.add(d);
    }
  }
  return out;
}

/** Minutes after midnight of `HH:MM` (24-hour clock; 24:00 is the end of the day), or the problem. */
export function parseTime(time: string, allowEndOfDay = false): number | string {
  const m = /^(\d{1,2}):(\d{2})$/.exec(time.trim());
  const h = m ? Number(m[1]) : NaN;
  const min = m ? Number(m[2]) : NaN;
  if (m && allowEndOfDay && h === 24 && min === 0) return 24 * 60;
  if (!m || h > 23 || min > 59)
    return `"${time}" is not a time: write HH:MM on the 24-hour clock, e.g. 08:00 or 23:30${allowEndOfDay ? ' (24:00 for the end of the day)' : ''}`;
  return h * 60 + min;
}

// ---------------------------------------------------------------------------------------------
// The configuration keys (under `sync:`)
// ---------------------------------------------------------------------------------------------

const meta = (m: KeyMeta) => ({ ...m, addition: true });

const rate = z.string().superRefine((v, ctx) => {
  const problem = rateProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem, input: v });
});

const scheduleEntry = z
  .strictObject({
    days: z
      .string()
      .superRefine((v, ctx) => {
        const r = parseDays(v);
        if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r, input: v });
      })
      .meta({
        description:
          'The days the period starts on: Mon, Tue, ..., Sun, a range (Mon-Fri, Fri-Mon), a list (Sat,Sun), daily, weekdays or weekends.',
      }),
    from: z
      .string()
      .superRefine((v, ctx) => {
        const r = parseTime(v);
        if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r, input: v });
      })
      .meta({ description: 'Start, HH:MM local time (24-hour clock).' }),
    to: z
      .string()
      .superRefine((v, ctx) => {
        const r = parseTime(v, true);
        if (typeof r === 'string') ctx.addIssue({ code: 'custom', message: r, input: v });
      })
      .meta({
        description:
          'End, HH:MM local time, not included; 24:00 is midnight at the end of the day. Earlier than `from` to run past midnight into the next day.',
      }),
    limit: rate.meta({
      description: 'The limit in this period, e.g. 512k, 1M, 10M, or off.',
    }),
  })
  .superRefine((e, ctx) => {
    const from = parseTime(e.from);
    const to = parseTime(e.to, true);
    if (typeof from === 'number' && typeof to === 'number' && from === to)
      ctx.addIssue({
        code: 'custom',
        path: ['to'],
        message: `from and to are both ${e.from}: for the whole day write from: "00:00", to: "24:00"`,
        input: e.to,
      });
  });

/**
 * `sync.bandwidth_limit` and `sync.bandwidth_schedule`: spread `bandwidthConfig.shape` into
 * the `sync` section of the configuration schema.
 */
export const bandwidthConfig = z.object({
  bandwidth_limit: rate.default('off').meta(
    meta({
      description:
        "Upload bandwidth limit in bytes per second, in rclone's notation: a number and a unit, e.g. 512k, 1M, 1.5M or 10M (binary units: 1M is 1 MiB/s, about 8.4 Mbit/s), or off for none. UPLOAD:DOWNLOAD (e.g. 10M:off) limits each way separately. In force whenever no `bandwidth_schedule` period applies. An override set at run time through the API takes precedence until it ends.",
      example: '2M',
    }),
  ),
  bandwidth_schedule: z
    .array(scheduleEntry)
    .default([])
    .meta(
      meta({
        description:
          'Weekly periods with their own limit, in local time, each `{days, from, to, limit}`: `days` names the days a period starts on (Mon, Mon-Fri, Sat,Sun, daily, weekdays, weekends), `from` and `to` are HH:MM on the 24-hour clock (`to` is not included, 24:00 is the end of the day, and a `to` earlier than `from` runs past midnight into the next morning), `limit` is a rate as in `bandwidth_limit`. Where periods overlap, the first listed wins; outside every period `bandwidth_limit` applies. Example: `[{days: Mon-Fri, from: "08:00", to: "23:00", limit: 1M}]` keeps uploads to 1 MiB/s on weekdays and lifts the limit at night and at weekends.',
        example: [{ days: 'Mon-Fri', from: '08:00', to: '23:00', limit: '1M' }],
      }),
    ),
});

export type BandwidthConfig = z.output<typeof bandwidthConfig>;
export type BandwidthScheduleEntry = BandwidthConfig['bandwidth_schedule'][number];

// ---------------------------------------------------------------------------------------------
// The limit in force
// ---------------------------------------------------------------------------------------------

interface ParsedEntry {
  days: Set<number>;
  from: number;
  to: number;
  limit: string;
}

const parsed = new WeakMap<BandwidthScheduleEntry, ParsedEntry | null>();

function parseEntry(e: BandwidthScheduleEntry): ParsedEntry | null {
  let p = parsed.get(e);
  if (p === undefined) {
    const days = parseDays(e.days);
    const from = parseTime(e.from);
    const to = parseTime(e.to, true);
    p =
      typeof days === 'string' || typeof from === 'string' || typeof to === 'string'
        ? null // the schema refuses such an entry; one that got past it is ignored
        : { days, from, to, limit: e.limit };
    parsed.set(e, p);
  }
  return p;
}

const DAY_MS = 86_400_000;
const minuteOfDay = (d: Date) => d.getHours() * 60 + d.getMinutes();
const dayBefore = (day: number) => (day + 6) % 7;

/** The entry (by index) in force at `date`, or -1. */
function entryAt(schedule: readonly BandwidthScheduleEntry[], date: Date): number {
  const day = date.getDay();
  const minute = minuteOfDay(date);
  return schedule.findIndex((raw) => {
    const e = parseEntry(raw);
    if (!e) return false;
    if (e.from < e.to) return e.days.has(day) && minute >= e.from && minute < e.to;
    // Wraps past midnight: the evening of a listed day, or the morning after one.
    return (e.days.has(day) && minute >= e.from) || (e.days.has(dayBefore(day)) && minute < e.to);
  });
}

type LimitSource = Pick<BandwidthConfig, 'bandwidth_limit' | 'bandwidth_schedule'>;

/** The limit in force at `date` (local time): the first schedule period that covers it, else `bandwidth_limit`. */
export function limitAt(config: LimitSource, date: Date): string {
  const i = entryAt(config.bandwidth_schedule, date);
  return i >= 0 ? config.bandwidth_schedule[i]!.limit : config.bandwidth_limit;
}

/** Whether `date` falls in a schedule period. */
export function scheduledAt(config: LimitSource, date: Date): boolean {
  return entryAt(config.bandwidth_schedule, date) >= 0;
}

/** Instants in (start, end] at which local time's UTC offset changes (summer and winter time). */
function offsetChanges(start: number, end: number): { at: number; shiftMs: number }[] {
  const out: { at: number; shiftMs: number }[] = [];
  const offset = (t: number) => new Date(t).getTimezoneOffset();
  const step = 6 * 3_600_000; // no zone changes its offset twice within 6 hours
  for (let t = start; t < end; t += step) {
    const u = Math.min(t + step, end);
    if (offset(t) === offset(u)) continue;
    let lo = t;
    let hi = u;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (offset(mid) === offset(lo)) lo = mid;
      else hi = mid;
    }
    out.push({ at: hi, shiftMs: Math.abs(offset(lo) - offset(hi)) * 60_000 });
  }
  return out;
}

/** When the limit in force next changes, after `date` and within the next 8 days; else undefined. */
export function nextChange(config: LimitSource, date: Date): Date | undefined {
  const now = limitAt(config, date);
  const start = date.getTime();
  const horizon = start + 8 * DAY_MS;
  const shifts = offsetChanges(start - DAY_MS, horizon + DAY_MS);
  const candidates = new Set<number>(shifts.map((s) => s.at));
  for (const raw of config.bandwidth_schedule) {
    const e = parseEntry(raw);
    if (!e) continue;
    for (let k = -1; k <= 8; k++) {
      for (const minute of [e.from, e.to]) {
        // The instant the local clock shows that time; a time skipped when the clocks go
        // forward comes out later (the change itself, a candidate above, is the boundary),
        // and a time shown twice when they go back comes out as the first of the two.
        const t = new Date(
          date.getFullYear(),
          date.getMonth(),
          date.getDate() + k,
          Math.floor(minute / 60),
          minute % 60,
        ).getTime();
        candidates.add(t);
        for (const s of shifts) if (Math.abs(t - s.at) <= s.shiftMs) candidates.add(t + s.shiftMs);
      }
    }
  }
  // Candidates are where the limit may change; the first where it does is the answer.
  for (const t of [...candidates].filter((c) => c > start && c <= horizon).sort((a, b) => a - b)) {
    if (limitAt(config, new Date(t)) !== now) return new Date(t);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/** The part of `RcloneDaemon` the controller uses. */
export interface BandwidthTarget {
  setBandwidth(rate: string): Promise<unknown>;
  onRestart?(listener: () => void): () => void;
}

/** The clock and timers, injectable for tests. */
export interface BandwidthClock {
  now(): Date;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: BandwidthClock = {
  now: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface BandwidthState {
  /** The limit in force, e.g. `1M` or `off`. */
  limit: string;
  /** Where it comes from: `sync.bandwidth_limit`, a schedule period, or the owner's override. */
  source: 'config' | 'schedule' | 'override';
  /** When it next changes, if known (within 8 days). */
  until?: Date;
}

type LogFn = (obj: Record<string, unknown>, msg: string) => void;

export interface BandwidthControllerOptions {
  rcd: BandwidthTarget;
  config: LimitSource;
  clock?: BandwidthClock;
  logger?: { info: LogFn; warn: LogFn };
  /**
   * Longest sleep of the timer; the limit is re-checked at least this often, so that a jump
   * of the wall clock (a Raspberry Pi has no RTC and learns the time from NTP after booting)
   * is noticed. Default 10 minutes.
   */
  maxSleepMs?: number;
  /** Delay before trying again when rclone did not take the limit. Default 30 s. */
  retryMs?: number;
}

/** Keeps rclone's bandwidth limit equal to the schedule's, or the owner's override. */
export class BandwidthController {
  private config: LimitSource;
  private readonly rcd: BandwidthTarget;
  private readonly clock: BandwidthClock;
  private readonly log: { info: LogFn; warn: LogFn } | undefined;
  private readonly maxSleepMs: number;
  private readonly retryMs: number;
  private overridden: { limit: string; until?: Date } | undefined;
  private applied: string | undefined;
  private failed = false;
  private timer: unknown;
  private running = false;
  private unsubscribe: (() => void) | undefined;
  /** setBandwidth calls, one after the other, so the last one sent is the one in force. */
  private chain: Promise<void> = Promise.resolve();

  constructor(opts: BandwidthControllerOptions) {
    this.rcd = opts.rcd;
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger;
    this.maxSleepMs = opts.maxSleepMs ?? 10 * 60_000;
    this.retryMs = opts.retryMs ?? 30_000;
  }

  /** Applies the limit in force now and keeps it up to date. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.unsubscribe = this.rcd.onRestart?.(() => {
      this.applied = undefined; // a new process starts without a limit
      void this.update();
    });
    await this.update();
  }

  stop(): void {
    this.running = false;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The configuration changed. */
  async setConfig(config: LimitSource): Promise<void> {
    this.config = config;
    await this.update();
  }

  /**
   * The owner sets (`'1M'`, `'off'`) the limit now, until `until` or else until the schedule
   * next changes the limit (for good, when it never does); `null` returns to the schedule.
   */
  async override(rate: string | null, until?: Date): Promise<BandwidthState> {
    const now = this.clock.now();
    if (rate === null) {
      this.overridden = undefined;
    } else {
      const problem = rateProblem(rate);
      if (problem) throw new RangeError(problem);
      if (until && until.getTime() <= now.getTime())
        throw new RangeError(`the override would end at ${until.toISOString()}, which is past`);
      const end = until ?? nextChange(this.config, now);
      this.overridden = { limit: rate, ...(end ? { until: end } : {}) };
    }
    await this.update();
    return this.current();
  }

  /** The limit in force and where it comes from. */
  current(): BandwidthState {
    const now = this.clock.now();
    this.expireOverride(now);
    if (this.overridden) return { source: 'override', ...this.overridden };
    const until = nextChange(this.config, now);
    return {
      limit: limitAt(this.config, now),
      source: scheduledAt(this.config, now) ? 'schedule' : 'config',
      ...(until ? { until } : {}),
    };
  }

  private expireOverride(now: Date) {
    const until = this.overridden?.until;
    if (until && until.getTime() <= now.getTime()) {
      this.log?.info({ limit: this.overridden!.limit }, 'the bandwidth override ended');
      this.overridden = undefined;
    }
  }

  /** Applies the limit in force (if it is not already) and sets the timer for the next change. */
  private update(): Promise<void> {
    const run = this.chain.then(async () => {
      if (!this.running) return;
      const state = this.current();
      if (state.limit !== this.applied || this.failed) {
        try {
          await this.rcd.setBandwidth(state.limit);
          this.applied = state.limit;
          this.failed = false;
          this.log?.info(
            { limit: state.limit, limit_from: state.source, until: state.until?.toISOString() },
            `bandwidth limit ${state.limit}`,
          );
        } catch (err) {
          this.failed = true;
          this.log?.warn(
            { limit: state.limit, err: (err as Error).message },
            'could not set the bandwidth limit; trying again soon',
          );
        }
      }
      this.arm(state);
    });
    this.chain = run.catch(() => {});
    return run;
  }

  private arm(state: BandwidthState) {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.running) return;
    const now = this.clock.now().getTime();
    let ms = this.maxSleepMs;
    if (state.until) ms = Math.min(ms, Math.max(0, state.until.getTime() - now));
    if (this.failed) ms = Math.min(ms, this.retryMs);
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.update();
    }, ms);
  }
}
