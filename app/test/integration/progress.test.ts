// Live push progress through the built daemon and the Ceph gateway: with the upload limited to
// 3 MiB/s, a 20 MiB file written to the mirror shows in flight with growing bytes, on
// GET /api/sync/progress and as `progress` events on the live stream (about one a second, none
// stored), then at rest with the backlog at 0 once verified; one log line says it was sent; the
// bytes sent and the last activity are still known after a restart.
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ApiClient,
  cleanEnv,
  makeHome,
  runCli,
  setUp,
  startDaemon,
  waitFor,
  type Home,
  type RunningDaemon,
} from '../helpers/daemon.js';
import { loadTestServices } from '../helpers/services.js';
import { remoteTree, testRclone } from '../helpers/trees.js';

const MiB = 1024 * 1024;
const SIZE = 20 * MiB;
const PASSWORD = 'correct horse battery staple';

interface Transfer {
  name: string;
  size: number;
  bytes: number;
  percentage: number;
  speed: number;
  eta_seconds: number | null;
}
interface Dest {
  name: string;
  state: 'pushing' | 'idle';
  bytes: number;
  speed: number;
  transferring: Transfer[];
  backlog: { done: number; left: number; failed: number; held: number };
  bytes_sent: number;
  last_activity_at: string | null;
  started_at: string | null;
}
interface Progress {
  pushing: boolean;
  updated_at: string;
  destinations: Dest[];
}
interface SseEvent {
  event: string;
  id?: string;
  data: string;
}

/** An open `GET /api/logs/stream`, its events gathered as they come. */
function openStream(api: ApiClient, p: string) {
  const events: SseEvent[] = [];
  const abort = new AbortController();
  const done = (async () => {
    const r = await fetch(`${api.url}${p}`, {
      headers: { cookie: api.cookie ?? '' },
      signal: abort.signal,
    });
    if (r.status !== 200) throw new Error(`the stream answered ${r.status}: ${await r.text()}`);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of r.body!) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const e: SseEvent = { event: 'message', data: '' };
        for (const line of block.split('\n')) {
          const [field, ...rest] = line.split(':');
          const value = rest.join(':').replace(/^ /, '');
          if (field === 'event') e.event = value;
          else if (field === 'id') e.id = value;
          else if (field === 'data') e.data += value;
        }
        if (e.data) events.push(e);
      }
    }
  })().catch((err: Error) => {
    if (err.name !== 'AbortError') throw err;
  });
  return {
    events,
    progress: () =>
      events.filter((e) => e.event === 'progress').map((e) => JSON.parse(e.data) as Progress),
    close: async () => {
      abort.abort();
      await done;
    },
  };
}

let home: Home;
let daemon: RunningDaemon;
let admin: ApiClient;
let bucket: string;
let env: NodeJS.ProcessEnv;
let data: Buffer;

const s3 = async (api = admin): Promise<Dest> => {
  const r = await api.get('/api/sync/progress');
  if (r.status !== 200) throw new Error(`GET /api/sync/progress answered ${r.status}: ${r.text}`);
  return (r.json as Progress).destinations.find((d) => d.name === 'aws_s3')!;
};
const big = (d: Dest) => d.transferring.find((t) => t.name === 'big.bin');

beforeAll(async () => {
  const svc = loadTestServices();
  bucket = `progress-${randomBytes(4).toString('hex')}`;
  home = await makeHome(() => ({
    sync: { watch_delay_seconds: 0.2, retry_delay_seconds: 2, bandwidth_limit: '3M' },
    destinations: {
      local: { enabled: false },
      aws_s3: { enabled: true, bucket, endpoint: svc.s3.endpoint, region: svc.s3.region },
    },
  }));
  env = cleanEnv({
    AWS_ACCESS_KEY_ID: svc.s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: svc.s3.secretAccessKey,
  });
  daemon = await startDaemon(home, env);
  admin = await setUp(daemon, PASSWORD);
});
afterAll(async () => {
  await daemon?.stop();
  await testRclone('purge', `S3:${bucket}`).catch(() => {});
  await home?.cleanup();
});

describe('live push progress', () => {
  it('shows a file in flight with growing bytes, on GET and on the stream, then rests with the backlog at 0', async () => {
    expect(await s3()).toMatchObject({ state: 'idle', transferring: [], backlog: { left: 0 } });
    const stream = openStream(admin, '/api/logs/stream');
    await waitFor('the current progress as the first event on the stream', () =>
      stream.progress().at(0),
    );

    data = randomBytes(SIZE);
    await writeFile(path.join(home.drive, 'big.bin'), data);
    const first = await waitFor(
      'big.bin in flight',
      async () => {
        const d = await s3();
        const f = big(d);
        return d.state === 'pushing' && f && f.bytes > 0 && f.bytes < f.size ? d : undefined;
      },
      30_000,
      200,
    );
    const later = await waitFor(
      'its bytes to grow',
      async () => {
        const d = await s3();
        const f = big(d);
        return f && f.bytes > big(first)!.bytes ? d : undefined;
      },
      10_000,
      200,
    );
    expect(big(later)).toMatchObject({ name: 'big.bin', size: SIZE });
    expect(big(later)!.percentage).toBeGreaterThan(0);
    expect(big(later)!.eta_seconds).toBeGreaterThan(0);
    // Limited to 3 MiB/s: the speed says so (with room for rclone's token bucket).
    expect(later.speed).toBeGreaterThan(0.5 * MiB);
    expect(later.speed).toBeLessThan(4.5 * MiB);
    expect(later.backlog.left).toBe(1);

    const end = await waitFor(
      'the destination at rest with the backlog at 0',
      async () => {
        const d = await s3();
        return d.state === 'idle' && d.backlog.left === 0 && d.backlog.done >= 1 ? d : undefined;
      },
      60_000,
      250,
    );
    expect(end.transferring).toEqual([]);
    expect(end.bytes).toBeGreaterThanOrEqual(SIZE);
    expect(end.bytes_sent).toBeGreaterThanOrEqual(SIZE);
    expect(end.last_activity_at).not.toBeNull();
    const held = await remoteTree(`S3:${bucket}/google-drive`);
    expect(held['big.bin']).toBe(createHash('sha256').update(data).digest('hex'));

    // The stream told the same, about once a second, without ids (Last-Event-ID is the logs').
    await waitFor('the stream to say the destination is at rest', () => {
      const last = stream
        .progress()
        .at(-1)
        ?.destinations.find((d) => d.name === 'aws_s3');
      return last?.state === 'idle' && last.backlog.left === 0 && last.backlog.done >= 1;
    });
    await stream.close();
    expect(stream.events.filter((e) => e.event === 'progress' && e.id)).toEqual([]);
    const flying = stream
      .progress()
      .map((p) => p.destinations.find((d) => d.name === 'aws_s3')!)
      .filter((d) => big(d));
    expect(flying.length).toBeGreaterThanOrEqual(3);
    const bytes = flying.map((d) => big(d)!.bytes);
    expect(bytes).toEqual([...bytes].sort((a, b) => a - b));
    expect(bytes.at(-1)!).toBeGreaterThan(bytes[0]!);
    const pushing = stream.progress().filter((p) => p.pushing);
    const span =
      (Date.parse(pushing.at(-1)!.updated_at) - Date.parse(pushing[0]!.updated_at)) / 1000;
    expect(span).toBeGreaterThan(3); // 20 MiB at 3 MiB/s
    expect(pushing.length).toBeLessThanOrEqual(span + 2);
  });

  it('logs one line for the large file, none for a small one, and stores no progress', async () => {
    const before = (await s3()).bytes_sent;
    await writeFile(path.join(home.drive, 'small.txt'), 'a small file\n');
    await waitFor('small.txt pushed', async () => {
      const d = await s3();
      return d.state === 'idle' && d.backlog.left === 0 && d.bytes_sent === before + 13;
    });
    expect((await remoteTree(`S3:${bucket}/google-drive`))['small.txt']).toBeDefined();
    const entries = (await admin.get('/api/logs?limit=1000')).json.entries as {
      message: string;
      source: string;
      data: Record<string, unknown> | null;
    }[];
    const sent = entries.filter((e) => e.message.startsWith('sent '));
    expect(sent).toHaveLength(1);
    expect(sent[0]!.message).toMatch(
      /^sent big\.bin \(20 MiB\) to aws_s3 in \d+(\.\d)? s, \d+(\.\d)? MiB\/s$/,
    );
    expect(sent[0]).toMatchObject({ source: 'push', data: { destination: 'aws_s3', bytes: SIZE } });
    expect(entries.filter((e) => JSON.stringify(e.data ?? {}).includes('transferring'))).toEqual(
      [],
    );
  });

  it('keeps the bytes sent and the last activity across a restart', async () => {
    const listed = async (api: ApiClient) =>
      ((await api.get('/api/destinations')).json.destinations as Dest[]).find(
        (d) => d.name === 'aws_s3',
      )!;
    const before = await listed(admin);
    expect(before.bytes_sent).toBeGreaterThanOrEqual(SIZE);
    expect(before.last_activity_at).not.toBeNull();
    const status = (await admin.get('/api/status')).json.destinations[0];
    expect(status).toMatchObject({
      name: 'aws_s3',
      bytes_sent: before.bytes_sent,
      last_activity_at: before.last_activity_at,
    });

    expect(await daemon.stop()).toBe(0);
    daemon = await startDaemon(home, env);
    admin = new ApiClient(daemon.url);
    expect((await admin.post('/api/auth/login', { password: PASSWORD })).status).toBe(200);
    expect(await listed(admin)).toMatchObject({
      bytes_sent: before.bytes_sent,
      last_activity_at: before.last_activity_at,
    });
    const progress = await s3();
    expect(progress).toMatchObject({
      state: 'idle',
      bytes_sent: before.bytes_sent,
      last_activity_at: before.last_activity_at,
    });
    expect(progress.started_at).not.toBeNull();

    // Another process (the CLI) reads the same from the state.
    const cli = await runCli(['status', '--json', '--config', home.config], { env });
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout).destinations[0]).toMatchObject({
      name: 'aws_s3',
      bytes_sent: before.bytes_sent,
    });
  });
});
