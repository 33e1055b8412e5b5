// Logs: no secret reaches the file or the stored events, the file rotates by size and by day
// and keeps a bounded history, and events are stored in batches and streamed in order.
import { readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createLogger,
  EventRecorder,
  MIN_SECRET_LENGTH,
  REDACTED,
  Redactor,
  RotatingFile,
} from '../../src/log/index.js';
import { openState, type EventRecord, type NewEvent, type State } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-log-');
const DAY = 86_400_000;

describe('Redactor', () => {
  it('scrubs a secret wherever it appears', () => {
    const r = new Redactor(() => ['s3cr3t-token-value']);
    expect(r.redact('token s3cr3t-token-value and again s3cr3t-token-value.')).toBe(
      `token ${REDACTED} and again ${REDACTED}.`,
    );
    expect(r.contains('xx s3cr3t-token-value')).toBe(true);
    expect(r.contains('nothing here')).toBe(false);
  });

  it('scrubs the JSON-escaped form of a secret', () => {
    const secret = 'pa"ss\\word\nline2';
    const r = new Redactor(() => [secret]);
    const line = JSON.stringify({ msg: `server said: bad credential ${secret}` });
    expect(line).not.toContain(secret); // the raw form is not in the line, the escaped one is
    const out = r.redact(line);
    expect(out).not.toContain(JSON.stringify(secret).slice(1, -1));
    expect(JSON.parse(out)).toEqual({ msg: `server said: bad credential ${REDACTED}` });
  });

  it('scrubs the URL-encoded form of a secret', () => {
    const secret = 'a b&c=d/ef+gh';
    const r = new Redactor(() => [secret]);
    const url = `https://example.com/hook?token=${encodeURIComponent(secret)}&x=1`;
    expect(r.redact(url)).toBe(`https://example.com/hook?token=${REDACTED}&x=1`);
  });

  it('ignores values too short to be secrets, so ordinary words survive', () => {
    const short = 'x'.repeat(MIN_SECRET_LENGTH - 1);
    const r = new Redactor(() => [short, 'true', '']);
    const text = `keep ${short} and true as they are`;
    expect(r.redact(text)).toBe(text);
    expect(new Redactor(() => ['y'.repeat(MIN_SECRET_LENGTH)]).redact('a yyyyyy b')).toBe(
      `a ${REDACTED} b`,
    );
  });

  it('scrubs the longest secret first, so one containing another goes whole', () => {
    const r = new Redactor(() => ['abcdefgh', 'abcdefgh-ijklmnop']);
    expect(r.redact('x abcdefgh-ijklmnop y abcdefgh z')).toBe(`x ${REDACTED} y ${REDACTED} z`);
  });

  it('picks up new secrets on refresh', () => {
    const values = ['first-secret-1'];
    const r = new Redactor(() => values);
    values.push('second-secret-2');
    expect(r.redact('second-secret-2')).toBe('second-secret-2');
    r.refresh();
    expect(r.redact('second-secret-2')).toBe(REDACTED);
  });
});

describe('createLogger', () => {
  const SECRET = 'the-aws-secret-key-987';

  function logger(level: 'debug' | 'info' | 'warn' | 'error' = 'info') {
    const file = path.join(tmp(), 'logs', 'backupd.log');
    const handle = createLogger({
      level,
      file: { path: file, maxBytes: 1_000_000, maxFiles: 3, retentionDays: 30 },
      redactor: new Redactor(() => [SECRET]),
    });
    const read = () => {
      handle.close();
      return readFileSync(file, 'utf8');
    };
    const lines = () =>
      read()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    return { handle, file, read, lines };
  }

  it('writes one JSON object per line', () => {
    const { handle, lines } = logger();
    handle.logger.info({ files: 3 }, 'pushed');
    handle.logger.child({ source: 'push' }).warn('slow');
    const [a, b] = lines();
    expect(a).toMatchObject({ level: 30, msg: 'pushed', files: 3 });
    expect(typeof a!.time).toBe('string');
    expect(b).toMatchObject({ level: 40, msg: 'slow', source: 'push' });
  });

  it('keeps logging when the file cannot be written: said once on stderr, the lines still stored', () => {
    // /dev/full refuses every write (ENOSPC), as a full or vanished disk does.
    const stored: NewEvent[] = [];
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const handle = createLogger({
        level: 'info',
        file: { path: '/dev/full', maxBytes: 1_000_000, maxFiles: 3, retentionDays: 30 },
        redactor: new Redactor(() => []),
      });
      handle.setEventSink((e) => stored.push(e));
      expect(() => {
        handle.logger.error('the data disk is gone');
        handle.logger.info('going to standby');
      }).not.toThrow();
      expect(stored.map((e) => e.message)).toEqual(['the data disk is gone', 'going to standby']);
      const said = stderr.mock.calls.map(([text]) => String(text));
      expect(said).toHaveLength(1);
      expect(said[0]).toMatch(/cannot write the log file \/dev\/full \(.*ENOSPC.*\)/);
      handle.close();
    } finally {
      stderr.mockRestore();
    }
  });

  it('writes the source of a line once, so the JSON stays unambiguous', () => {
    const { handle, read } = logger();
    handle.logger.child({ source: 'push' }).info('sent');
    expect(read().match(/"source"/g)).toHaveLength(1);
  });

  it('redacts fields by name', () => {
    const { handle, read, lines } = logger();
    handle.logger.info(
      {
        password: 'hunter2-plain',
        headers: { authorization: 'Bearer tok-plain-123', accept: 'json' },
        account: { refresh_token: '1//refresh-plain', email: 'me@example.com' },
      },
      'request',
    );
    const [line] = lines();
    expect(line!.password).toBe(REDACTED);
    expect(line!.headers).toEqual({ authorization: REDACTED, accept: 'json' });
    expect(line!.account).toEqual({ refresh_token: REDACTED, email: 'me@example.com' });
    const text = read();
    for (const v of ['hunter2-plain', 'tok-plain-123', 'refresh-plain'])
      expect(text).not.toContain(v);
  });

  it('redacts a known secret value inside a message and inside an error', () => {
    const { handle, read } = logger();
    handle.logger.warn(`S3 refused the key ${SECRET}`);
    handle.logger.error(
      { err: new Error(`signature for ${SECRET} does not match`) },
      'push failed',
    );
    const text = read();
    expect(text).not.toContain(SECRET);
    const [warn, error] = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; err?: { message: string; stack: string } });
    expect(warn!.msg).toBe(`S3 refused the key ${REDACTED}`);
    expect(error!.err!.message).toBe(`signature for ${REDACTED} does not match`);
    expect(error!.err!.stack).toContain(REDACTED);
  });

  it('drops lines below its level', () => {
    const { handle, lines } = logger('warn');
    handle.logger.info('not shown');
    handle.logger.warn('shown');
    expect(lines().map((l) => l.msg)).toEqual(['shown']);
  });

  it('hands each line to the event sink, redacted, with level, source, message and data', () => {
    const { handle } = logger();
    const events: NewEvent[] = [];
    handle.setEventSink((e) => events.push(e));
    handle.logger
      .child({ source: 'push' })
      .warn({ destination: 'aws_s3', secret: 'x' }, `retrying with ${SECRET}`);
    handle.logger.info('plain');
    handle.setEventSink(undefined);
    handle.logger.info('after the sink is gone');
    handle.close();

    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      level: 'warn',
      source: 'push',
      message: `retrying with ${REDACTED}`,
      data: { destination: 'aws_s3', secret: REDACTED },
    });
    expect(Math.abs(events[0]!.time - Date.now())).toBeLessThan(60_000);
    expect(events[1]).toMatchObject({
      level: 'info',
      source: 'daemon',
      message: 'plain',
      data: null,
    });
  });
});

describe('RotatingFile', () => {
  const T0 = Date.parse('2025-03-10T08:00:00.000Z');
  const line = (n: number) => `${String(n).padStart(3, '0')} ${'x'.repeat(35)}\n`; // 40 bytes

  function rotating(policy: { maxBytes?: number; maxFiles?: number; retentionDays?: number } = {}) {
    const dir = tmp();
    const clock = { now: T0 };
    const file = path.join(dir, 'backupd.log');
    const rf = new RotatingFile(
      file,
      { maxBytes: 100, maxFiles: 5, retentionDays: 30, ...policy },
      () => clock.now,
    );
    return { dir, file, clock, rf };
  }

  it('rotates before a line would take the file over its size limit', () => {
    const { file, clock, rf } = rotating({ maxBytes: 100 });
    rf.write(line(1));
    rf.write(line(2)); // 80 bytes
    expect(rf.rotated()).toEqual([]);
    clock.now += 1000;
    rf.write(line(3)); // would be 120
    rf.close();
    const rotated = rf.rotated();
    expect(rotated).toHaveLength(1);
    expect(readFileSync(rotated[0]!, 'utf8')).toBe(line(1) + line(2));
    expect(readFileSync(file, 'utf8')).toBe(line(3));
  });

  it('a line longer than the limit is still written, alone in its file', () => {
    const { file, rf } = rotating({ maxBytes: 10 });
    rf.write(line(1));
    rf.close();
    expect(readFileSync(file, 'utf8')).toBe(line(1));
    expect(rf.rotated()).toEqual([]);
  });

  it('rotates at a change of day', () => {
    const { file, clock, rf } = rotating({ maxBytes: 1_000_000 });
    clock.now = Date.parse('2025-03-10T23:59:00.000Z');
    rf.write(line(1));
    clock.now = Date.parse('2025-03-10T23:59:59.000Z');
    rf.write(line(2));
    expect(rf.rotated()).toEqual([]);
    clock.now = Date.parse('2025-03-11T00:00:01.000Z');
    rf.write(line(3));
    rf.close();
    expect(rf.rotated()).toHaveLength(1);
    expect(readFileSync(rf.rotated()[0]!, 'utf8')).toBe(line(1) + line(2));
    expect(readFileSync(file, 'utf8')).toBe(line(3));
  });

  it('keeps at most maxFiles rotated files, the newest', () => {
    const { clock, rf } = rotating({ maxBytes: 50, maxFiles: 2 });
    for (let i = 1; i <= 6; i++) {
      clock.now += 1000;
      rf.write(line(i)); // each line fills a file
    }
    rf.close();
    const rotated = rf.rotated();
    expect(rotated).toHaveLength(2);
    expect(rotated.map((f) => readFileSync(f, 'utf8'))).toEqual([line(4), line(5)]);
  });

  it('deletes rotated files older than retentionDays, and nothing else', () => {
    const dir = tmp();
    const now = T0;
    const rotatedFile = (name: string, ageDays: number) => {
      const f = path.join(dir, name);
      writeFileSync(f, 'old\n');
      const t = (now - ageDays * DAY) / 1000;
      utimesSync(f, t, t);
      return f;
    };
    rotatedFile('backupd-2025-01-01T00-00-00-000Z.log', 40);
    rotatedFile('backupd-2025-02-01T00-00-00-000Z.log', 31);
    rotatedFile('backupd-2025-03-01T00-00-00-000Z.log', 9);
    rotatedFile('other-2025-01-01.log', 40); // not ours
    rotatedFile('backupd.log', 40); // the current file
    const rf = new RotatingFile(
      path.join(dir, 'backupd.log'),
      { maxBytes: 100, maxFiles: 10, retentionDays: 30 },
      () => now,
    );
    rf.close();
    expect(readdirSync(dir).sort()).toEqual([
      'backupd-2025-03-01T00-00-00-000Z.log',
      'backupd.log',
      'other-2025-01-01.log',
    ]);
  });

  it('appends to an existing file across restarts', () => {
    const { file, rf } = rotating({ maxBytes: 1000 });
    rf.write(line(1));
    rf.close();
    const again = new RotatingFile(file, { maxBytes: 1000, maxFiles: 5, retentionDays: 30 }, () =>
      Date.now(),
    );
    again.write(line(2));
    again.close();
    expect(readFileSync(file, 'utf8')).toBe(line(1) + line(2));
  });
});

describe('EventRecorder', () => {
  let state: State | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await state?.close();
    state = undefined;
  });

  const event = (
    message: string,
    level: NewEvent['level'] = 'info',
    time = 1_700_000_000_000,
  ): NewEvent => ({
    time,
    level,
    source: 'test',
    message,
    data: { n: message },
  });

  function open() {
    state = openState({ kind: 'sqlite', path: path.join(tmp(), 'state.db') });
    return state;
  }

  it('stores events in a batch, with ids, and tells subscribers in order', async () => {
    const st = open();
    const recorder = new EventRecorder(st.events);
    const seen: EventRecord[] = [];
    recorder.subscribe((e) => seen.push(e));
    recorder.record(event('one'));
    recorder.record(event('two', 'warn'));
    recorder.record(event('three', 'error'));
    // Batched: nothing is written until the flush.
    expect(await st.events.list({ limit: 10 })).toEqual([]);
    await recorder.flush();

    const stored = await st.events.list({ limit: 10 });
    expect(stored.map((e) => e.message)).toEqual(['three', 'two', 'one']);
    expect(seen.map((e) => e.message)).toEqual(['one', 'two', 'three']);
    expect(seen.every((e) => Number.isInteger(e.id) && e.id > 0)).toBe(true);
    expect(seen.map((e) => e.id)).toEqual([...stored].reverse().map((e) => e.id));
    expect(seen[1]).toMatchObject({ level: 'warn', source: 'test', data: { n: 'two' } });
  });

  it('drops levels below info by default, and below its minimum level', async () => {
    const st = open();
    const recorder = new EventRecorder(st.events);
    recorder.record(event('debug detail', 'debug'));
    recorder.record(event('kept'));
    await recorder.flush();
    expect((await st.events.list({ limit: 10 })).map((e) => e.message)).toEqual(['kept']);

    const warnOnly = new EventRecorder(st.events, { minLevel: 'warn' });
    warnOnly.record(event('info dropped'));
    warnOnly.record(event('warn kept', 'warn'));
    await warnOnly.flush();
    expect((await st.events.list({ limit: 10 })).map((e) => e.message)).toEqual([
      'warn kept',
      'kept',
    ]);
  });

  it('flushes on its own after flushMs', async () => {
    vi.useFakeTimers();
    const st = open();
    const recorder = new EventRecorder(st.events, { flushMs: 250 });
    recorder.record(event('later'));
    await vi.advanceTimersByTimeAsync(200);
    expect(await st.events.list({ limit: 10 })).toEqual([]);
    await vi.advanceTimersByTimeAsync(100);
    expect((await st.events.list({ limit: 10 })).map((e) => e.message)).toEqual(['later']);
  });

  it('flushes as soon as a batch is full', async () => {
    vi.useFakeTimers();
    const st = open();
    const recorder = new EventRecorder(st.events, { flushMs: 60_000, maxBatch: 3 });
    for (const m of ['a', 'b', 'c']) recorder.record(event(m));
    await vi.advanceTimersByTimeAsync(0);
    expect((await st.events.list({ limit: 10 })).map((e) => e.message)).toEqual(['c', 'b', 'a']);
  });

  it('an unsubscribed listener hears nothing more', async () => {
    const st = open();
    const recorder = new EventRecorder(st.events);
    const seen: string[] = [];
    const off = recorder.subscribe((e) => seen.push(e.message));
    recorder.record(event('first'));
    await recorder.flush();
    off();
    recorder.record(event('second'));
    await recorder.flush();
    expect(seen).toEqual(['first']);
  });

  it('a failing store is reported, not thrown', async () => {
    const st = open();
    const errors: Error[] = [];
    const recorder = new EventRecorder(st.events, {}, (err) => errors.push(err));
    await st.close();
    recorder.record(event('lost'));
    await expect(recorder.flush()).resolves.toBeUndefined();
    expect(errors).toHaveLength(1);
    state = undefined;
  });
});
