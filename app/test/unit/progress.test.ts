// Live push progress, driven by a fake clock, a fake rclone (core/stats, core/transferred) and a
// real state: rclone is asked once a second while something is pushed and never while nothing
// is; what is published is the progress of each file and of the backlog; totals reach the state
// rarely and survive a restart and an rclone restart; large finished files get one log line.
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RcStats, RcTransferred, RcTransferring } from '../../src/push/rcd.js';
import {
  ProgressMonitor,
  pushTotals,
  type ProgressRc,
  type PushProgress,
} from '../../src/push/progress.js';
import { openState, type State } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-progress-');
const MiB = 1024 * 1024;
const DEST = 'aws_s3';
const GROUP = `push/${DEST}`;

interface Group {
  bytes: number;
  errors: number;
  lastError?: string;
  transferring: RcTransferring[];
}

/** rclone's remote control as the monitor sees it; the test sets what it answers. */
class FakeRc implements ProgressRc {
  pid: number | undefined = 4242;
  statsCalls = 0;
  transferredCalls = 0;
  failing = false;
  finished: RcTransferred[] = [];
  private readonly groups = new Map<string, Group>();

  group(name = GROUP): Group {
    let g = this.groups.get(name);
    if (!g) this.groups.set(name, (g = { bytes: 0, errors: 0, transferring: [] }));
    return g;
  }

  async stats(group: string): Promise<RcStats> {
    this.statsCalls++;
    if (this.failing) throw new Error('rclone rcd (pid 4242) exited unexpectedly');
    const g = this.group(group);
    return {
      bytes: g.bytes,
      checks: 0,
      deletedDirs: 0,
      deletes: 0,
      elapsedTime: 1,
      errors: g.errors,
      eta: null,
      fatalError: false,
      ...(g.lastError ? { lastError: g.lastError } : {}),
      renames: 0,
      retryError: false,
      speed: 0,
      totalBytes: 0,
      totalChecks: 0,
      totalTransfers: 0,
      transferTime: 0,
      transfers: 0,
      ...(g.transferring.length ? { transferring: g.transferring.map((t) => ({ ...t })) } : {}),
    };
  }

  async transferred(group: string): Promise<RcTransferred[]> {
    this.transferredCalls++;
    return this.finished.filter((t) => t.group === group);
  }
}

const inFlight = (name: string, size: number, bytes: number, speed: number): RcTransferring => ({
  name,
  size,
  bytes,
  percentage: Math.floor((bytes / size) * 100),
  speed,
  speedAvg: speed,
  eta: 0, // rclone 1.60 says 0 long before the end
  group: GROUP,
});

const finished = (name: string, size: number, seconds: number, error = ''): RcTransferred => ({
  name,
  size,
  bytes: error ? 0 : size,
  error,
  checked: false,
  started_at: new Date(Date.now() - seconds * 1000).toISOString(),
  completed_at: new Date(Date.now()).toISOString(),
  group: GROUP,
});

let state: State;
let rc: FakeRc;
let monitor: ProgressMonitor;
let events: PushProgress[];
let lines: string[];
const logger = {
  info: (_o: Record<string, unknown>, msg: string) => lines.push(msg),
  warn: (_o: Record<string, unknown>, msg: string) => lines.push(`WARN ${msg}`),
  debug: () => {},
};

const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);
const dest = async () => (await monitor.view()).destinations[0]!;
const lastEvent = () => events.at(-1)!.destinations[0]!;

/** Queues files for the destination and lets the "engine" claim them (they are running). */
async function claim(...names: string[]) {
  await state.queue.enqueue(
    names.map((rel_path) => ({ source: 'google_drive', rel_path, op: 'upsert' as const })),
    [DEST],
    Date.now(),
  );
  return state.queue.claim(DEST, Date.now(), 100);
}
const complete = (id: number) => state.queue.complete(id, Date.now());

async function startMonitor(opts: ConstructorParameters<typeof ProgressMonitor>[0] = {}) {
  monitor = new ProgressMonitor(opts);
  monitor.subscribe((p) => events.push(p));
  await monitor.start({ rc, destinations: [DEST], state, logger });
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'], now: Date.UTC(2026, 10, 24) });
  state = openState({ kind: 'sqlite', path: path.join(tmp(), 'state.db') });
  rc = new FakeRc();
  events = [];
  lines = [];
});
afterEach(async () => {
  await monitor?.stop();
  await state.close();
  vi.useRealTimers();
});

describe('ProgressMonitor at rest', () => {
  it('never asks rclone while nothing is pushed, and looks at the queue less and less often', async () => {
    const list = vi.spyOn(state.queue, 'list');
    monitor = new ProgressMonitor();
    await monitor.start({ rc, destinations: [DEST], state, logger });
    await advance(60_000);
    expect(rc.statsCalls).toBe(0);
    // After 2, 4, 8 s, then every 10 s: 8 looks in a minute, not 60.
    expect(list.mock.calls.length).toBeGreaterThanOrEqual(6);
    expect(list.mock.calls.length).toBeLessThanOrEqual(9);
    const d = await dest();
    expect(d).toMatchObject({
      state: 'idle',
      speed: 0,
      transferring: [],
      backlog: { done: 0, left: 0 },
      bytes_sent: 0,
      last_activity_at: null,
    });
  });

  it('looks every second while someone watches, and at once when asked, still without rclone', async () => {
    const list = vi.spyOn(state.queue, 'list');
    monitor = new ProgressMonitor();
    await monitor.start({ rc, destinations: [DEST], state, logger });
    await advance(60_000);
    // Asked: it looks now, and sees the work that began meanwhile.
    await claim('a.txt');
    expect((await dest()).state).toBe('pushing');
    expect(rc.statsCalls).toBe(1);
    await complete((await state.queue.list({ state: 'running', limit: 1 }))[0]!.id);
    await advance(1000);
    expect((await dest()).state).toBe('idle');

    await advance(60_000);
    const unsubscribe = monitor.subscribe((p) => events.push(p));
    const looks = list.mock.calls.length;
    const asked = rc.statsCalls;
    await advance(30_000);
    expect(list.mock.calls.length - looks).toBeGreaterThanOrEqual(29);
    expect(list.mock.calls.length - looks).toBeLessThanOrEqual(31);
    expect(rc.statsCalls).toBe(asked);
    // A push shows within a second.
    await claim('b.txt');
    await advance(1000);
    expect(lastEvent().state).toBe('pushing');
    unsubscribe();
  });
});

describe('ProgressMonitor during a push', () => {
  it('publishes each file in flight once a second with growing bytes, then rests with the backlog done', async () => {
    await startMonitor();
    const [big, small1, small2] = await claim('big.bin', 'a.txt', 'b.txt');
    const g = rc.group();
    const size = 10 * MiB;
    g.transferring = [inFlight('big.bin', size, 0, 0)];

    for (let s = 1; s <= 5; s++) {
      g.bytes = s * MiB;
      // rclone's own figure for a file swings with its buffers: the speed is measured instead.
      g.transferring = [inFlight('big.bin', size, s * MiB, 4 * MiB)];
      await advance(1000);
    }
    const d = await dest();
    expect(d.state).toBe('pushing');
    expect(d.transferring).toEqual([
      { name: 'big.bin', size, bytes: 5 * MiB, percentage: 50, speed: MiB, eta_seconds: 5 },
    ]);
    expect(d.in_flight).toEqual({ files: 1, bytes: 5 * MiB, size });
    expect(d.speed).toBe(MiB);
    expect(d.eta_seconds).toBe(5);
    expect(d.backlog).toMatchObject({ done: 0, left: 3 });
    expect(d.bytes_sent).toBe(5 * MiB);

    // The published events: one a second at most, bytes growing.
    expect(events.length).toBeGreaterThanOrEqual(4);
    expect(events.length).toBeLessThanOrEqual(6);
    const seen = events.map((e) => e.destinations[0]!.transferring[0]?.bytes ?? 0);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(new Set(seen).size).toBeGreaterThanOrEqual(4);

    // Two small files finish: the backlog follows.
    await complete(small1!.id);
    await complete(small2!.id);
    g.bytes += 2048;
    await advance(1000);
    expect(lastEvent().backlog).toMatchObject({ done: 2, left: 1 });

    // The big one finishes and is verified: the next look ends the burst.
    g.bytes = size + 2048;
    g.transferring = [];
    await complete(big!.id);
    await advance(1000);
    const end = lastEvent();
    expect(events.at(-1)!.pushing).toBe(false);
    expect(end).toMatchObject({
      state: 'idle',
      speed: 0,
      eta_seconds: null,
      transferring: [],
      in_flight: { files: 0, bytes: 0, size: 0 },
      backlog: { done: 3, left: 0, failed: 0, held: 0 },
      bytes: size + 2048,
      bytes_sent: size + 2048,
      errors: { count: 0, last: null },
    });
    expect(end.ended_at).not.toBeNull();
    expect(end.last_activity_at).not.toBeNull();

    // At rest again: nothing published, rclone not asked, for a long while.
    const calls = rc.statsCalls;
    const published = events.length;
    await advance(10 * 60_000);
    expect(rc.statsCalls).toBe(calls);
    expect(events).toHaveLength(published);
  });

  it('counts a few small files pushed between two looks', async () => {
    await startMonitor();
    await advance(20_000);
    // Claimed and finished between two looks: the queue's finished items tell.
    const items = await claim('x.txt', 'y.txt');
    rc.group().bytes = 3000;
    for (const i of items) await complete(i.id);
    await advance(1000);
    expect(rc.statsCalls).toBe(1);
    expect(events).toHaveLength(1);
    expect(lastEvent()).toMatchObject({
      state: 'idle',
      bytes: 3000,
      bytes_sent: 3000,
      backlog: { done: 2, left: 0 },
    });
    expect(lastEvent().last_activity_at).not.toBeNull();
  });

  it('reports the errors rclone counted in the burst', async () => {
    await startMonitor();
    await claim('a.txt');
    await advance(1000);
    Object.assign(rc.group(), { errors: 1, lastError: 'AccessDenied: Access Denied' });
    await advance(1000);
    expect(lastEvent().errors).toEqual({ count: 1, last: 'AccessDenied: Access Denied' });
  });

  it('rides out an rclone that does not answer, and ends the burst when nothing runs', async () => {
    await startMonitor();
    const [item] = await claim('a.txt');
    rc.group().bytes = 100;
    await advance(1000);
    rc.failing = true;
    await advance(3000);
    expect((await dest()).state).toBe('pushing');
    rc.failing = false;
    rc.group().bytes = 300;
    await advance(1000);
    expect(lastEvent()).toMatchObject({ state: 'pushing', bytes_sent: 300 });
    rc.failing = true;
    await complete(item!.id);
    await advance(1000);
    expect(lastEvent()).toMatchObject({ state: 'idle', backlog: { done: 1, left: 0 } });
  });
});

describe('ProgressMonitor totals', () => {
  it('neither loses nor doubles bytes when rclone restarts', async () => {
    await startMonitor();
    await claim('a.bin');
    rc.group().bytes = 5 * MiB;
    await advance(1000);
    // A new process (another pid) starts its counters at zero: all it counted is new, even
    // when it is more than the old process had counted.
    rc.pid = 4343;
    rc.group().bytes = 6 * MiB;
    await advance(1000);
    expect((await dest()).bytes_sent).toBe(11 * MiB);
    rc.group().bytes = 7 * MiB;
    await advance(1000);
    expect((await dest()).bytes_sent).toBe(12 * MiB);
  });

  it('takes a counter that went down for an rclone restart when the pid is not known', async () => {
    rc.pid = undefined;
    await startMonitor();
    await claim('a.bin');
    rc.group().bytes = 5 * MiB;
    await advance(1000);
    rc.group().bytes = 1 * MiB;
    await advance(1000);
    expect((await dest()).bytes_sent).toBe(6 * MiB);
  });

  it('writes them to the state at the end of a burst, and at most every 30 s', async () => {
    const set = vi.spyOn(state.settings, 'set');
    await startMonitor();
    // A long push: every 30 s.
    const items = await claim('long.bin');
    for (let s = 1; s <= 95; s++) {
      rc.group().bytes = s * MiB;
      rc.group().transferring = [inFlight('long.bin', 200 * MiB, s * MiB, MiB)];
      await advance(1000);
    }
    expect(set.mock.calls.length).toBe(3);
    // Its end, 5 s after the last write: within 30 s of that write, not before.
    rc.group().transferring = [];
    await complete(items[0]!.id);
    await advance(1000);
    expect(set.mock.calls.length).toBe(3);
    await advance(30_000);
    expect(set.mock.calls.length).toBe(4);
    // A short burst long after: written at its end.
    await advance(60_000);
    const [short] = await claim('short.txt');
    rc.group().bytes += 100;
    await advance(1000);
    await complete(short!.id);
    await advance(1000);
    expect(set.mock.calls.length).toBe(5);
    // A trickle of small bursts, one every 5 s for a minute: a write per 30 s, not one each.
    for (let i = 0; i < 12; i++) {
      const [item] = await claim(`trickle-${i}.txt`);
      rc.group().bytes += 100;
      await advance(1000);
      await complete(item!.id);
      await advance(4000);
    }
    expect(set.mock.calls.length).toBe(6);
    await advance(60_000);
    expect(set.mock.calls.length).toBe(7);
    await advance(10 * 60_000);
    expect(set.mock.calls.length).toBe(7);

    await monitor.stop();
    const again = new ProgressMonitor();
    await again.start({ rc: new FakeRc(), destinations: [DEST], state, logger });
    const d = (await again.view()).destinations[0]!;
    await again.stop();
    expect(d).toMatchObject({ state: 'idle', bytes_sent: 95 * MiB + 1300, bytes: 100 });
    expect(d.backlog.done).toBe(1);
    expect(d.last_activity_at).toBe(lastEvent().last_activity_at);
    expect((await pushTotals(state.settings))[DEST]).toEqual({
      bytes_sent: 95 * MiB + 1300,
      last_activity_at: d.last_activity_at,
    });
  });
});

describe('ProgressMonitor stopping', () => {
  it('counts what was sent since the last look, and stores it', async () => {
    await startMonitor();
    await claim('a.bin');
    rc.group().bytes = 1 * MiB;
    await advance(1000);
    rc.group().bytes = 1.5 * MiB;
    await monitor.stop();
    expect(lastEvent()).toMatchObject({ state: 'idle', bytes_sent: 1.5 * MiB });
    expect((await pushTotals(state.settings))[DEST]!.bytes_sent).toBe(1.5 * MiB);
    const calls = rc.statsCalls;
    await advance(60_000);
    expect(rc.statsCalls).toBe(calls);
  });

  it('does not wait more than 2 s for an rclone that does not answer', async () => {
    await startMonitor();
    await claim('a.bin');
    rc.group().bytes = 1 * MiB;
    await advance(1000);
    rc.stats = () => new Promise<RcStats>(() => {});
    let stopped = false;
    const stopping = monitor.stop().then(() => (stopped = true));
    await advance(1900);
    expect(stopped).toBe(false);
    await advance(200);
    await stopping;
    expect(lastEvent().state).toBe('idle');
    expect((await pushTotals(state.settings))[DEST]!.bytes_sent).toBe(1 * MiB);
  });
});

describe('ProgressMonitor log lines', () => {
  it('logs each large transfer that finished, once; small and failed ones not', async () => {
    await startMonitor();
    await claim('big.bin', 'small.txt', 'broken.bin', 'quick.bin');
    const g = rc.group();
    g.transferring = [inFlight('big.bin', 20 * MiB, 4 * MiB, 2 * MiB)];
    g.bytes = 4 * MiB;
    await advance(1000);
    expect(rc.transferredCalls).toBe(0);
    g.transferring = [];
    g.bytes = 20 * MiB + 1000;
    rc.finished.push(finished('big.bin', 20 * MiB, 10), finished('small.txt', 1000, 0.1));
    await advance(1000);
    expect(lines).toEqual(['sent big.bin (20 MiB) to aws_s3 in 10 s, 2 MiB/s']);

    // One that failed, then one that came and went between two looks (its bytes show).
    g.transferring = [inFlight('broken.bin', 40 * MiB, 1 * MiB, MiB)];
    await advance(1000);
    g.transferring = [];
    rc.finished.push(finished('broken.bin', 40 * MiB, 3, 'connection reset by peer'));
    const asked = rc.transferredCalls;
    await advance(1000);
    expect(rc.transferredCalls).toBe(asked + 1);
    rc.finished.push(finished('quick.bin', 32 * MiB, 0.5));
    g.bytes += 32 * MiB;
    await advance(1000);
    await advance(3000);
    expect(lines).toEqual([
      'sent big.bin (20 MiB) to aws_s3 in 10 s, 2 MiB/s',
      'sent quick.bin (32 MiB) to aws_s3 in 0.5 s, 64 MiB/s',
    ]);
  });
});
