// The bandwidth schedule: the config keys and their messages, the limit in force at a local
// time (across days and past midnight), when it next changes, and the controller that keeps
// rclone's limit in step, driven by a fake clock and a fake rcd.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  BandwidthController,
  bandwidthConfig,
  limitAt,
  nextChange,
  parseDays,
  rateBytesPerSecond,
  rateProblem,
  type BandwidthClock,
  type BandwidthConfig,
} from '../../src/push/bandwidth.js';

const parse = (input: unknown) => bandwidthConfig.parse(input);
const problems = (input: unknown) => {
  const r = bandwidthConfig.safeParse(input);
  if (r.success) throw new Error('expected the config to be refused');
  return r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

/** A local time: 2026-03-02 is a Monday. */
const at = (day: 'Mon' | 'Tue' | 'Wed' | 'Thu' | 'Fri' | 'Sat' | 'Sun', hhmm: string, week = 0) => {
  const offset = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(day) + 7 * week;
  const [h, m] = hhmm.split(':').map(Number);
  return new Date(2026, 2, 2 + offset, h, m);
};

describe('rates', () => {
  it('accepts what rclone 1.60 accepts, with a unit', () => {
    for (const r of [
      'off',
      'OFF',
      '1M',
      '512k',
      '512K',
      '1.5M',
      '10M',
      '1Mi',
      '1MiB',
      '1G',
      '100b',
    ])
      expect(rateProblem(r), r).toBeUndefined();
    expect(rateProblem('10M:off')).toBeUndefined();
    expect(rateProblem('off:1M')).toBeUndefined();
  });

  it('refuses the rest with a message that says what to write', () => {
    expect(rateProblem('1MB')).toMatch(
      /"1MB" is not a rate: write a number and a unit, e.g. 512k, 1M/,
    );
    expect(rateProblem('1000')).toMatch(/no unit: write e.g. 1000k or 1000M .*KiB/);
    expect(rateProblem('0M')).toMatch(/write off/);
    expect(rateProblem('fast')).toMatch(/not a rate/);
    expect(rateProblem(' 1M')).toMatch(/not a rate/);
    expect(rateProblem('1M:2M:3M')).toMatch(/UPLOAD:DOWNLOAD/);
    expect(rateProblem('-1M')).toMatch(/not a rate/);
  });

  it('converts to bytes per second with binary units, as rclone does', () => {
    expect(rateBytesPerSecond('1M')).toBe(1_048_576);
    expect(rateBytesPerSecond('512k')).toBe(524_288);
    expect(rateBytesPerSecond('1.5M')).toBe(1_572_864);
    expect(rateBytesPerSecond('10M:off')).toBe(10_485_760);
    expect(rateBytesPerSecond('off')).toBeNull();
    expect(() => rateBytesPerSecond('x')).toThrow(RangeError);
  });
});

describe('the configuration keys', () => {
  it('defaults to no limit and no schedule', () => {
    expect(parse({})).toEqual({ bandwidth_limit: 'off', bandwidth_schedule: [] });
  });

  it('reads a schedule and keeps it as written', () => {
    const cfg = parse({
      bandwidth_limit: '10M',
      bandwidth_schedule: [
        { days: 'Mon-Fri', from: '08:00', to: '23:00', limit: '1M' },
        { days: 'Sat,Sun', from: '22:00', to: '06:00', limit: 'off' },
        { days: 'daily', from: '00:00', to: '24:00', limit: '512k' },
      ],
    });
    expect(cfg.bandwidth_schedule[1]).toEqual({
      days: 'Sat,Sun',
      from: '22:00',
      to: '06:00',
      limit: 'off',
    });
  });

  it('names the bad key and says what to write', () => {
    expect(problems({ bandwidth_limit: '1MB' })).toEqual([
      expect.stringMatching(/^bandwidth_limit: "1MB" is not a rate/),
    ]);
    const msgs = problems({
      bandwidth_schedule: [
        { days: 'Mo-Fr', from: '8:00', to: '25:00', limit: '1M' },
        { days: 'Mon', from: '08:00', to: '08:00', limit: 'lots' },
        { days: 'Mon', from: '08:00', to: '09:00', limit: '1M', extra: 1 },
      ],
    });
    expect(msgs).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /^bandwidth_schedule\.0\.days: "Mo-Fr" is not a range of days; write a day \(Mon/,
        ),
        expect.stringMatching(
          /^bandwidth_schedule\.0\.to: "25:00" is not a time: write HH:MM .*24:00/,
        ),
        expect.stringMatching(/^bandwidth_schedule\.1\.limit: "lots" is not a rate/),
        expect.stringMatching(
          /^bandwidth_schedule\.1\.to: from and to are both 08:00: for the whole day/,
        ),
        expect.stringMatching(/^bandwidth_schedule\.2: .*extra/),
      ]),
    );
    // 8:00 (one digit) is a fine time.
    expect(msgs.some((m) => m.includes('"8:00"'))).toBe(false);
  });

  it('reads days as names, ranges (wrapping too), lists and words', () => {
    const days = (s: string) => [...(parseDays(s) as Set<number>)].sort();
    expect(days('Mon-Fri')).toEqual([1, 2, 3, 4, 5]);
    expect(days('Fri-Mon')).toEqual([0, 1, 5, 6]);
    expect(days('Sat,Sun')).toEqual([0, 6]);
    expect(days('sunday, Wednesday')).toEqual([0, 3]);
    expect(days('daily')).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(days('weekdays')).toEqual([1, 2, 3, 4, 5]);
    expect(days('weekends')).toEqual([0, 6]);
    expect(parseDays('Mon-Fri-Sat')).toMatch(/not a range of days/);
    expect(parseDays('')).toMatch(/days is empty/);
  });

  it('shows in the JSON Schema with descriptions, defaults and the "added" mark', () => {
    const js = z.toJSONSchema(bandwidthConfig, { io: 'input', unrepresentable: 'any' }) as any;
    expect(js.properties.bandwidth_limit).toMatchObject({ default: 'off', addition: true });
    expect(js.properties.bandwidth_limit.description).toMatch(/bytes per second/);
    expect(js.properties.bandwidth_schedule).toMatchObject({ default: [], addition: true });
    expect(js.properties.bandwidth_schedule.description).toMatch(/past midnight/);
    expect(js.properties.bandwidth_schedule.items.properties.days.description).toMatch(/Mon-Fri/);
  });
});

const workdays: BandwidthConfig = {
  bandwidth_limit: '10M',
  bandwidth_schedule: [
    { days: 'Mon-Fri', from: '08:00', to: '23:00', limit: '1M' },
    { days: 'Fri,Sat', from: '22:00', to: '02:00', limit: '512k' },
  ],
};

describe('limitAt', () => {
  it('is bandwidth_limit without a schedule', () => {
    expect(limitAt({ bandwidth_limit: '2M', bandwidth_schedule: [] }, at('Wed', '12:00'))).toBe(
      '2M',
    );
  });

  it('follows the periods by day and time, from included and to not', () => {
    expect(limitAt(workdays, at('Mon', '07:59'))).toBe('10M');
    expect(limitAt(workdays, at('Mon', '08:00'))).toBe('1M');
    expect(limitAt(workdays, at('Wed', '22:59'))).toBe('1M');
    expect(limitAt(workdays, at('Wed', '23:00'))).toBe('10M');
    expect(limitAt(workdays, at('Sun', '12:00'))).toBe('10M');
  });

  it('wraps past midnight into the next day, and the first period listed wins', () => {
    // Friday 22:00-23:00 is in both periods: the first one (1M) wins.
    expect(limitAt(workdays, at('Fri', '22:30'))).toBe('1M');
    expect(limitAt(workdays, at('Fri', '23:30'))).toBe('512k');
    expect(limitAt(workdays, at('Sat', '01:59'))).toBe('512k');
    expect(limitAt(workdays, at('Sat', '02:00'))).toBe('10M');
    expect(limitAt(workdays, at('Sat', '22:00'))).toBe('512k');
    expect(limitAt(workdays, at('Sun', '01:00'))).toBe('512k');
    // Thursday is not listed: the morning after it is not in the period.
    expect(limitAt(workdays, at('Fri', '01:00'))).toBe('10M');
    // Sunday night -> Monday morning is not listed either.
    expect(limitAt(workdays, at('Mon', '01:00'))).toBe('10M');
  });

  it('takes 24:00 as the end of the day', () => {
    const cfg = {
      bandwidth_limit: 'off',
      bandwidth_schedule: [{ days: 'Sun', from: '00:00', to: '24:00', limit: '1M' }],
    };
    expect(limitAt(cfg, at('Sun', '00:00'))).toBe('1M');
    expect(limitAt(cfg, at('Sun', '23:59'))).toBe('1M');
    expect(limitAt(cfg, at('Mon', '00:00', 1))).toBe('off');
  });
});

describe('nextChange', () => {
  it('is the next boundary at which the limit differs', () => {
    expect(nextChange(workdays, at('Mon', '07:00'))).toEqual(at('Mon', '08:00'));
    expect(nextChange(workdays, at('Mon', '08:00'))).toEqual(at('Mon', '23:00'));
    // Friday 22:00 starts the 512k period, but 1M stays in force until 23:00.
    expect(nextChange(workdays, at('Fri', '12:00'))).toEqual(at('Fri', '23:00'));
    expect(nextChange(workdays, at('Fri', '23:00'))).toEqual(at('Sat', '02:00'));
    expect(nextChange(workdays, at('Sun', '03:00'))).toEqual(at('Mon', '08:00', 1));
  });

  it('skips boundaries where the limit stays the same', () => {
    const cfg = {
      bandwidth_limit: '1M',
      bandwidth_schedule: [
        { days: 'daily', from: '01:00', to: '02:00', limit: '1M' },
        { days: 'Wed', from: '03:00', to: '04:00', limit: 'off' },
      ],
    };
    expect(nextChange(cfg, at('Mon', '00:00'))).toEqual(at('Wed', '03:00'));
  });

  it('looks no further than 8 days, and is undefined without a change', () => {
    expect(nextChange({ bandwidth_limit: '1M', bandwidth_schedule: [] }, at('Mon', '00:00'))).toBe(
      undefined,
    );
    const weekly = {
      bandwidth_limit: 'off',
      bandwidth_schedule: [{ days: 'Sun', from: '03:00', to: '04:00', limit: '1M' }],
    };
    expect(nextChange(weekly, at('Sun', '04:00'))).toEqual(at('Sun', '03:00', 1));
    const always = {
      bandwidth_limit: 'off',
      bandwidth_schedule: [{ days: 'daily', from: '00:00', to: '24:00', limit: '1M' }],
    };
    expect(nextChange(always, at('Tue', '10:00'))).toBe(undefined);
  });

  it('walks a week minute by minute in agreement with limitAt', () => {
    expect(walk(workdays, at('Mon', '00:00'), 7 * 24 * 60)).toHaveLength(13);
  });
});

/** Every change limitAt shows, minute by minute from `from` for `minutes`, nextChange predicts. */
function walk(cfg: BandwidthConfig, from: Date, minutes: number): Date[] {
  const changes: Date[] = [];
  let t = from;
  let predicted = nextChange(cfg, t);
  let limit = limitAt(cfg, t);
  for (let i = 0; i < minutes; i++) {
    t = new Date(t.getTime() + 60_000);
    const now = limitAt(cfg, t);
    if (now !== limit) {
      expect(t, `change at ${t.toString()}`).toEqual(predicted);
      changes.push(t);
      predicted = nextChange(cfg, t);
      limit = now;
    } else expect(predicted === undefined || t < predicted, `at ${t.toString()}`).toBe(true);
  }
  return changes;
}

describe('summer and winter time (Europe/Berlin)', () => {
  const saved = process.env['TZ'];
  beforeAll(() => {
    process.env['TZ'] = 'Europe/Berlin';
  });
  afterAll(() => {
    if (saved === undefined) delete process.env['TZ'];
    else process.env['TZ'] = saved;
  });
  const night = (from: string, to: string): BandwidthConfig => ({
    bandwidth_limit: 'off',
    bandwidth_schedule: [{ days: 'daily', from, to, limit: '1M' }],
  });

  it('a period starting in the hour skipped in spring starts when the clocks jump', () => {
    // 2026-03-29 02:00 CET becomes 03:00 CEST; 02:30 never shows.
    const cfg = night('02:30', '05:00');
    const sat = new Date(2026, 2, 28, 12, 0);
    expect(nextChange(cfg, sat)).toEqual(new Date('2026-03-29T01:00:00Z')); // 03:00 CEST
    expect(walk(cfg, sat, 2 * 24 * 60).map((d) => d.toISOString())).toEqual([
      '2026-03-29T01:00:00.000Z',
      '2026-03-29T03:00:00.000Z',
      '2026-03-30T00:30:00.000Z',
      '2026-03-30T03:00:00.000Z',
    ]);
  });

  it('a period ending in the hour shown twice in autumn ends twice', () => {
    // 2026-10-25 03:00 CEST becomes 02:00 CET; 02:00-02:59 shows twice.
    const cfg = night('01:00', '02:30');
    const sat = new Date(2026, 9, 24, 12, 0);
    expect(walk(cfg, sat, 2 * 24 * 60).map((d) => d.toISOString())).toEqual([
      '2026-10-24T23:00:00.000Z', // 01:00 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T01:00:00.000Z', // 02:00 CET: the clock is back before 02:30
      '2026-10-25T01:30:00.000Z', // 02:30 CET
      '2026-10-26T00:00:00.000Z',
      '2026-10-26T01:30:00.000Z',
    ]);
  });

  it('the working-day schedule keeps its local times across the change', () => {
    walk(workdays, new Date(2026, 2, 23, 0, 0), 14 * 24 * 60);
    expect(nextChange(workdays, new Date(2026, 2, 29, 12, 0))).toEqual(
      new Date('2026-03-30T06:00:00Z'), // Monday 08:00 CEST
    );
  });
});

/** A clock whose time moves only when told, with timers that fire as it passes them. */
class FakeClock implements BandwidthClock {
  private timers = new Map<number, { at: number; fn: () => void }>();
  private ids = 0;
  constructor(public t: number) {}
  now = () => new Date(this.t);
  setTimeout = (fn: () => void, ms: number) => {
    const id = ++this.ids;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (h: unknown) => void this.timers.delete(h as number);
  get pending() {
    return [...this.timers.values()].map((x) => new Date(x.at));
  }
  /** Moves to `to`, firing each due timer at its time, and lets the promises they start run. */
  async advance(to: Date) {
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, x]) => x.at <= to.getTime())
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
      await settle();
    }
    this.t = to.getTime();
    await settle();
  }
}

const settle = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

class FakeRcd {
  calls: string[] = [];
  fail = false;
  private listeners = new Set<() => void>();
  async setBandwidth(rate: string) {
    if (this.fail) throw new Error('rclone rcd is restarting');
    this.calls.push(rate);
    return { rate };
  }
  onRestart(l: () => void) {
    this.listeners.add(l);
    return () => void this.listeners.delete(l);
  }
  restart() {
    for (const l of this.listeners) l();
  }
  get last() {
    return this.calls.at(-1);
  }
}

describe('BandwidthController', () => {
  const setup = (start: Date, config: BandwidthConfig = workdays) => {
    const clock = new FakeClock(start.getTime());
    const rcd = new FakeRcd();
    const ctl = new BandwidthController({ rcd, config, clock, maxSleepMs: 24 * 3600_000 });
    return { clock, rcd, ctl };
  };

  it('applies the limit at start and at each change, with one timer', async () => {
    const { clock, rcd, ctl } = setup(at('Mon', '07:00'));
    await ctl.start();
    expect(rcd.calls).toEqual(['10M']);
    expect(ctl.current()).toEqual({ limit: '10M', source: 'config', until: at('Mon', '08:00') });
    expect(clock.pending).toEqual([at('Mon', '08:00')]);

    await clock.advance(at('Mon', '08:30'));
    expect(rcd.calls).toEqual(['10M', '1M']);
    expect(ctl.current()).toEqual({ limit: '1M', source: 'schedule', until: at('Mon', '23:00') });
    expect(clock.pending).toHaveLength(1);

    await clock.advance(at('Sat', '03:00'));
    // Mon 23:00 10M, Tue 08:00 1M, ... Fri 23:00 512k, Sat 02:00 10M.
    expect(rcd.calls).toEqual([
      '10M',
      '1M',
      '10M',
      '1M',
      '10M',
      '1M',
      '10M',
      '1M',
      '10M',
      '1M',
      '512k',
      '10M',
    ]);
    expect(clock.pending).toHaveLength(1);
    ctl.stop();
    expect(clock.pending).toHaveLength(0);
  });

  it('re-checks at least every maxSleepMs, so a jump of the wall clock is caught', async () => {
    const clock = new FakeClock(at('Mon', '07:00').getTime());
    const rcd = new FakeRcd();
    const ctl = new BandwidthController({ rcd, config: workdays, clock, maxSleepMs: 600_000 });
    await ctl.start();
    expect(clock.pending).toEqual([at('Mon', '07:10')]);
    // NTP sets the clock forward to Monday noon; the next wake-up sees it.
    clock.t = at('Mon', '12:00').getTime();
    await clock.advance(at('Mon', '12:10'));
    expect(rcd.calls).toEqual(['10M', '1M']);
    ctl.stop();
  });

  it('re-applies the limit after rclone restarts', async () => {
    const { rcd, ctl } = setup(at('Tue', '09:00'));
    await ctl.start();
    expect(rcd.calls).toEqual(['1M']);
    rcd.restart();
    await settle();
    expect(rcd.calls).toEqual(['1M', '1M']);
    ctl.stop();
    rcd.restart();
    await settle();
    expect(rcd.calls).toEqual(['1M', '1M']);
  });

  it('tries again soon when rclone does not take the limit', async () => {
    const clock = new FakeClock(at('Tue', '09:00').getTime());
    const rcd = new FakeRcd();
    const warnings: string[] = [];
    const ctl = new BandwidthController({
      rcd,
      config: workdays,
      clock,
      retryMs: 30_000,
      logger: { info: () => {}, warn: (_o, m) => warnings.push(m) },
    });
    rcd.fail = true;
    await ctl.start();
    expect(warnings).toEqual([expect.stringMatching(/could not set the bandwidth limit/)]);
    expect(clock.pending).toEqual([new Date(at('Tue', '09:00').getTime() + 30_000)]);
    rcd.fail = false;
    await clock.advance(new Date(at('Tue', '09:00').getTime() + 30_000));
    expect(rcd.calls).toEqual(['1M']);
    ctl.stop();
  });

  it('lets the owner override until the next change of the schedule', async () => {
    const { clock, rcd, ctl } = setup(at('Tue', '09:00'));
    await ctl.start();
    expect(await ctl.override('off')).toEqual({
      limit: 'off',
      source: 'override',
      until: at('Tue', '23:00'),
    });
    expect(rcd.last).toBe('off');
    await clock.advance(at('Tue', '22:59'));
    expect(rcd.last).toBe('off');
    await clock.advance(at('Tue', '23:00'));
    expect(ctl.current()).toMatchObject({ limit: '10M', source: 'config' });
    expect(rcd.calls).toEqual(['1M', 'off', '10M']);
    // The schedule goes on as before.
    await clock.advance(at('Wed', '08:00'));
    expect(rcd.last).toBe('1M');
    ctl.stop();
  });

  it('lets the owner override until a given time, and go back to the schedule', async () => {
    const { clock, rcd, ctl } = setup(at('Tue', '09:00'));
    await ctl.start();
    await ctl.override('5M', at('Tue', '10:00'));
    expect(ctl.current()).toEqual({ limit: '5M', source: 'override', until: at('Tue', '10:00') });
    expect(clock.pending).toEqual([at('Tue', '10:00')]);
    await clock.advance(at('Tue', '10:00'));
    expect(ctl.current().source).toBe('schedule');
    expect(rcd.calls).toEqual(['1M', '5M', '1M']);

    // An override that outlasts schedule boundaries, then cancelled.
    await ctl.override('off', at('Thu', '12:00'));
    await clock.advance(at('Wed', '09:00'));
    expect(rcd.last).toBe('off');
    expect(await ctl.override(null)).toEqual({
      limit: '1M',
      source: 'schedule',
      until: at('Wed', '23:00'),
    });
    expect(rcd.last).toBe('1M');

    await expect(ctl.override('1MB')).rejects.toThrow(/not a rate/);
    await expect(ctl.override('1M', at('Mon', '00:00'))).rejects.toThrow(/past/);
    ctl.stop();
  });

  it('without a schedule, an override lasts until it is lifted', async () => {
    const { clock, rcd, ctl } = setup(at('Tue', '09:00'), {
      bandwidth_limit: '2M',
      bandwidth_schedule: [],
    });
    await ctl.start();
    expect(await ctl.override('off')).toEqual({ limit: 'off', source: 'override' });
    await clock.advance(at('Sun', '09:00', 2));
    expect(rcd.calls).toEqual(['2M', 'off']);
    await ctl.override(null);
    expect(rcd.calls).toEqual(['2M', 'off', '2M']);
    ctl.stop();
  });

  it('follows a changed configuration', async () => {
    const { rcd, ctl } = setup(at('Tue', '09:00'));
    await ctl.start();
    await ctl.setConfig({ bandwidth_limit: '3M', bandwidth_schedule: [] });
    expect(rcd.calls).toEqual(['1M', '3M']);
    expect(ctl.current()).toEqual({ limit: '3M', source: 'config' });
    ctl.stop();
  });

  it('sends the limits in order, so the last one asked for is the one in force', async () => {
    const clock = new FakeClock(at('Tue', '09:00').getTime());
    const sent: string[] = [];
    const done: string[] = [];
    let slow = false;
    let release: () => void = () => {};
    const rcd = {
      // While `slow`, a call hangs until released; a later call must not overtake it.
      setBandwidth: (rate: string) => {
        sent.push(rate);
        return new Promise<void>((resolve) => {
          const finish = () => {
            done.push(rate);
            resolve();
          };
          if (slow) release = finish;
          else finish();
        });
      },
    };
    const ctl = new BandwidthController({ rcd, config: workdays, clock });
    await ctl.start();
    slow = true;
    const o1 = ctl.override('off');
    await settle();
    slow = false;
    const o2 = ctl.override('7M');
    await settle();
    expect(sent).toEqual(['1M', 'off']);
    release();
    await Promise.all([o1, o2]);
    expect(done).toEqual(['1M', 'off', '7M']);
    ctl.stop();
  });
});
