// The long-lived `rclone rcd` child against the real rclone (Debian's 1.60.1) and real remotes:
// a `local` remote on temporary folders and the Ceph S3 gateway of scripts/test-services.sh.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BandwidthController } from '../../src/push/bandwidth.js';
import { RcloneMissingError } from '../../src/push/rclone.js';
import {
  RcError,
  RcloneDaemon,
  RcloneDaemonError,
  type RcdLogger,
  type RestartInfo,
} from '../../src/push/rcd.js';
import {
  loadTestServices,
  REPO_ROOT,
  s3RemoteEnv,
  testServicesDir,
  type TestServices,
} from '../helpers/services.js';
import { tempDirs } from '../helpers/tmp.js';

const exec = promisify(execFile);
const tmp = tempDirs('backupd-rcd-', { keep: 'file' });
const LOCAL = { RCLONE_CONFIG_L_TYPE: 'local' };

/** A logger that keeps what it is given. */
function recorder() {
  const lines: { level: string; msg: string; obj: Record<string, unknown> }[] = [];
  const at =
    (level: string) =>
    (obj: Record<string, unknown>, msg: string): void =>
      void lines.push({ level, msg, obj });
  const logger: RcdLogger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  };
  return { logger, lines };
}

/** Polls `cond` every 20 ms until it holds; fails after `ms`. */
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether a process exists and is not a zombie. */
const alive = (pid: number) => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
};

let src: string;
let dst: string;
const big = 'big.bin'; // 20 MB
const small = 'small.txt';
const daemons: RcloneDaemon[] = [];
const pids = new Set<number>();

async function startDaemon(opts: Partial<Parameters<typeof RcloneDaemon.start>[0]> = {}) {
  const d = await RcloneDaemon.start({ remotes: LOCAL, ...opts });
  daemons.push(d);
  pids.add(d.pid!);
  d.onRestart((i) => void pids.add(i.pid));
  return d;
}

const copy = (from: string, to: string) => ({
  srcFs: `L:${src}`,
  srcRemote: from,
  dstFs: `L:${dst}`,
  dstRemote: to,
});

beforeAll(async () => {
  src = tmp();
  dst = tmp();
  await writeFile(path.join(src, big), randomBytes(20_000_000));
  await writeFile(path.join(src, small), 'hello rcd\n');
});

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  // No rclone of ours is left behind.
  for (const pid of pids) expect(alive(pid), `rclone pid ${pid}`).toBe(false);
});

describe('rclone rcd, local remote', () => {
  let rcd: RcloneDaemon;
  let log: ReturnType<typeof recorder>;
  const restarts: RestartInfo[] = [];

  beforeAll(async () => {
    log = recorder();
    const t0 = Date.now();
    rcd = await startDaemon({ logger: log.logger, restartDelayMs: 200 });
    rcd.onRestart((i) => void restarts.push(i));
    console.log(`rclone rcd started and answered rc/noop in ${Date.now() - t0} ms`);
  });

  it('starts, answers rc/noop, and refuses a caller without the password', async () => {
    expect(await rcd.call('rc/noop', { hello: 'rcd' })).toEqual({ hello: 'rcd' });
    expect(rcd.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const anon = await fetch(`${rcd.address}/rc/noop`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(anon.status).toBe(401);
  });

  it('passes the password through the environment, never the command line', async () => {
    const pid = rcd.pid!;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
    const pass = environ.find((e) => e.startsWith('RCLONE_RC_PASS='))?.slice(15);
    const user = environ.find((e) => e.startsWith('RCLONE_RC_USER='))?.slice(15);
    expect(pass).toMatch(/^.{24,}$/);
    expect(cmdline).toContain('rcd');
    expect(cmdline.some((a) => /rclone$/.test(a))).toBe(true);
    expect(cmdline.join(' ')).not.toContain(pass!);
    expect(cmdline.join(' ')).not.toMatch(/--rc-(user|pass)/);
    // The child's environment: no AWS_CA_BUNDLE, the remotes, no other RCLONE_*.
    expect(environ.some((e) => e.startsWith('AWS_CA_BUNDLE='))).toBe(false);
    expect(environ).toContain('RCLONE_CONFIG_L_TYPE=local');
    expect(environ.filter((e) => e.startsWith('RCLONE_')).sort()).toEqual(
      ['RCLONE_CONFIG_L_TYPE=local', `RCLONE_RC_PASS=${pass}`, `RCLONE_RC_USER=${user}`].sort(),
    );
    // And the credentials it reads from there are the ones it checks.
    const ok = await fetch(`${rcd.address}/rc/noop`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
      },
      body: '{"x":1}',
    });
    expect(await ok.json()).toEqual({ x: 1 });
  });

  it('runs operations/copyfile as a job between two remotes, with stats by group', async () => {
    const out = await rcd.job('operations/copyfile', copy(small, 'copied.txt'), { group: 'g1' });
    expect(out).toEqual({});
    expect(await readFile(path.join(dst, 'copied.txt'), 'utf8')).toBe('hello rcd\n');
    const stats = await rcd.stats('g1');
    expect(stats).toMatchObject({ bytes: 10, transfers: 1, errors: 0 });
    const done = await rcd.transferred('g1');
    expect(done).toEqual([
      // rclone 1.60 names the source file here, not the copy.
      expect.objectContaining({ name: 'small.txt', size: 10, bytes: 10, error: '', group: 'g1' }),
    ]);
    await rcd.resetStats('g1');
    expect(await rcd.stats('g1')).toMatchObject({ bytes: 0, transfers: 0 });
    await rcd.deleteStats('g1');
  });

  it("turns rclone's error answer into an RcError with its status and message", async () => {
    const err = await rcd.call('operations/copyfile', copy('missing', 'x')).catch((e) => e);
    expect(err).toBeInstanceOf(RcError);
    expect(err).toMatchObject({
      status: 404,
      path: 'operations/copyfile',
      rcloneMessage: 'object not found',
    });
    expect(err.message).toBe('rclone operations/copyfile: object not found');
    // The same as a job: the job's error, with the status rclone gives it synchronously.
    const jobErr = await rcd.job('operations/copyfile', copy('missing', 'x')).catch((e) => e);
    expect(jobErr).toBeInstanceOf(RcError);
    expect(jobErr).toMatchObject({ status: 404, rcloneMessage: 'object not found' });
    expect(jobErr.jobid).toBeGreaterThan(0);
    // An unknown method, and a bad parameter.
    await expect(rcd.call('no/such')).rejects.toMatchObject({ status: 404 });
    await expect(rcd.setBandwidth('Mon-00:00,512k Fri-23:59,10M')).rejects.toMatchObject({
      status: 500,
      rcloneMessage: 'need exactly 1 bandwidth setting',
    });
    // rclone logs each error answer (on its stderr, which may arrive after the answer); the
    // caller has it, so it is not a warning here.
    await waitFor('rclone to log the error answer', () =>
      log.lines.some((l) => l.level === 'debug' && /object not found/.test(l.msg)),
    );
    expect(log.lines.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('applies the bandwidth limit: 20 MB at 4M takes seconds, with off it does not', async () => {
    expect(await rcd.setBandwidth('4M')).toMatchObject({ rate: '4Mi', bytesPerSecond: 4194304 });
    // rclone logs the change on its stderr, which may arrive after its HTTP answer.
    await waitFor('rclone to log the new limit', () =>
      log.lines.some((l) => l.level === 'info' && /Bandwidth limit set to/.test(l.msg)),
    );
    let t = Date.now();
    await rcd.job('operations/copyfile', copy(big, 'limited.bin'), { group: 'bw' });
    const limited = Date.now() - t;
    expect((await stat(path.join(dst, 'limited.bin'))).size).toBe(20_000_000);

    expect(await rcd.setBandwidth('off')).toMatchObject({ rate: 'off', bytesPerSecond: -1 });
    t = Date.now();
    await rcd.job('operations/copyfile', copy(big, 'unlimited.bin'), { group: 'bw' });
    const unlimited = Date.now() - t;
    // rclone's own account of the transfers, without our polling.
    const took = (await rcd.transferred('bw')).map(
      (x) => Date.parse(x.completed_at) - Date.parse(x.started_at),
    );
    console.log(
      `20 MB local copy: ${limited} ms at 4M, ${unlimited} ms with off (job() calls); rclone says ${took.join(' and ')} ms`,
    );
    expect(took[0]).toBeGreaterThanOrEqual(3_000);
    expect(limited).toBeGreaterThanOrEqual(3_000); // ideal 4.8 s
    expect(unlimited).toBeLessThan(limited / 3);
  });

  it('stops a job in rclone when its signal aborts', async () => {
    await rcd.setBandwidth('1M');
    const ac = new AbortController();
    const job = rcd.job('operations/copyfile', copy(big, 'aborted.bin'), {
      group: 'abort',
      signal: ac.signal,
    });
    await waitFor('the copy to start', async () => (await rcd.stats('abort')).bytes > 0);
    const t = Date.now();
    ac.abort(new Error('the owner paused the sync'));
    await expect(job).rejects.toThrow('the owner paused the sync');
    console.log(`aborted job stopped in ${Date.now() - t} ms`);
    const jobs = await rcd.call<{ jobids: number[] }>('job/list');
    for (const id of jobs.jobids) {
      const st = await rcd.call<{ finished: boolean }>('job/status', { jobid: id });
      expect(st.finished).toBe(true);
    }
    const size = await stat(path.join(dst, 'aborted.bin')).then(
      (s) => s.size,
      () => 0,
    );
    expect(size).toBeLessThan(20_000_000);
    await rcd.setBandwidth('off');
  });

  it('restarts after SIGKILL: the call in flight fails clearly, onRestart fires, the next call works', async () => {
    await rcd.setBandwidth('1M'); // keeps the copy below in flight
    const before = rcd.pid!;
    const n = restarts.length;
    const job = rcd.job('operations/copyfile', copy(big, 'killed.bin'), { group: 'kill' });
    const call = rcd
      .call('operations/copyfile', copy(big, 'killed-sync.bin'))
      .catch((e: unknown) => e);
    await waitFor('the copy to start', async () => (await rcd.stats('kill')).bytes > 0);
    const t = Date.now();
    process.kill(before, 'SIGKILL');

    const jobErr = await job.catch((e) => e);
    expect(jobErr).toBeInstanceOf(RcloneDaemonError);
    expect(jobErr.code).toBe('job-lost');
    expect(jobErr.message).toMatch(
      new RegExp(
        `rclone rcd \\(pid ${before}\\) exited unexpectedly \\(signal SIGKILL\\).*job \\d+ \\(operations/copyfile\\) was interrupted`,
      ),
    );
    const callErr: any = await call;
    expect(callErr).toBeInstanceOf(RcloneDaemonError);
    expect(callErr.message).toMatch(
      `rclone rcd (pid ${before}) exited unexpectedly (signal SIGKILL) during operations/copyfile`,
    );

    // A call made while it is down waits for the new process.
    expect(await rcd.call('rc/noop', { after: 'restart' })).toEqual({ after: 'restart' });
    await waitFor('onRestart', () => restarts.length > n);
    console.log(`restarted after SIGKILL and answered in ${Date.now() - t} ms`);
    expect(restarts.at(-1)).toEqual({ reason: 'exited', pid: rcd.pid });
    expect(rcd.pid).not.toBe(before);
    expect(alive(before)).toBe(false);
    // A new process starts without the limit: the listener's job to re-apply it.
    expect(await rcd.call('core/bwlimit')).toMatchObject({ rate: 'off' });
    expect(log.lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        msg: expect.stringMatching(/rclone rcd exited unexpectedly \(signal SIGKILL\)/),
      }),
    );
    expect(log.lines).toContainEqual(
      expect.objectContaining({ level: 'warn', msg: 'restarting rclone rcd in 0.2 s' }),
    );
  });

  it('with a BandwidthController, the limit is applied and survives a restart of rclone', async () => {
    const ctl = new BandwidthController({
      rcd,
      config: { bandwidth_limit: '2M', bandwidth_schedule: [] },
    });
    await ctl.start();
    expect(await rcd.call('core/bwlimit')).toMatchObject({ rate: '2Mi' });
    process.kill(rcd.pid!, 'SIGKILL');
    await waitFor(
      'the limit to be re-applied in the new process',
      async () =>
        (await rcd.call<{ rate?: string }>('core/bwlimit').catch(() => ({ rate: 'down' }))).rate ===
        '2Mi',
    );
    await ctl.override('off');
    expect(await rcd.call('core/bwlimit')).toMatchObject({ rate: 'off' });
    ctl.stop();
  });

  it('restarts with new remotes', async () => {
    const before = rcd.pid!;
    const n = restarts.length;
    await rcd.setRemotes({ RCLONE_CONFIG_M_TYPE: 'local' });
    expect(rcd.pid).not.toBe(before);
    expect(restarts.slice(n)).toEqual([{ reason: 'remotes', pid: rcd.pid }]);
    const list = await rcd.call<{ list: { Name: string }[] }>('operations/list', {
      fs: `M:${src}`,
      remote: '',
    });
    expect(list.list.map((e) => e.Name).sort()).toEqual([big, small]);
    await expect(
      rcd.call('operations/list', { fs: `L:${src}`, remote: '' }),
    ).rejects.toBeInstanceOf(RcError);
    await rcd.setRemotes(LOCAL);
  });

  it('stop() ends the process, fails later calls and does not restart it', async () => {
    const pid = rcd.pid!;
    const n = restarts.length;
    await rcd.stop();
    expect(alive(pid)).toBe(false);
    expect(rcd.pid).toBeUndefined();
    await expect(rcd.call('rc/noop')).rejects.toMatchObject({
      name: 'RcloneDaemonError',
      code: 'stopped',
    });
    await new Promise((r) => setTimeout(r, 500)); // longer than the restart delay
    expect(restarts.length).toBe(n);
    await rcd.stop(); // twice is fine
  });
});

describe('rclone rcd restarts that fail', () => {
  it('backs off while rclone cannot start, calls wait (bounded), and it comes back', async () => {
    // A wrapper that starts the real rclone unless a flag file exists.
    const dir = tmp();
    const flag = path.join(dir, 'broken');
    const wrapper = path.join(dir, 'rclone-wrapper');
    await writeFile(
      wrapper,
      `#!/bin/sh\nif [ -e '${flag}' ]; then echo 'simulated start-up failure' >&2; exit 3; fi\nexec rclone "$@"\n`,
      { mode: 0o755 },
    );
    const log = recorder();
    const rcd = await startDaemon({
      binary: wrapper,
      logger: log.logger,
      restartDelayMs: 100,
      maxRestartDelayMs: 400,
    });
    const restarted = new Promise<RestartInfo>((resolve) => rcd.onRestart(resolve));
    await writeFile(flag, '');
    const first = rcd.pid!;
    process.kill(first, 'SIGKILL');
    await waitFor(
      'three failed restarts',
      () => log.lines.filter((l) => l.msg === 'rclone rcd did not restart').length >= 3,
    );
    // Doubling delays, capped.
    const delays = log.lines
      .filter((l) => l.msg.startsWith('restarting rclone rcd in'))
      .map((l) => l.obj['delayMs']);
    expect(delays.slice(0, 4)).toEqual([100, 200, 400, 400]);
    expect(log.lines.find((l) => l.msg === 'rclone rcd did not restart')?.obj['err']).toMatch(
      /it exited during start-up \(code 3\); rclone said: rclone: simulated start-up failure/,
    );
    // A call while it is down waits, within its time limit.
    await expect(rcd.call('rc/noop', {}, { timeoutMs: 150 })).rejects.toMatchObject({
      code: 'timeout',
      message: expect.stringMatching(/was not running and did not come back within 0\.2 s/),
    });
    const waiting = rcd.call('rc/noop', { back: true }, { timeoutMs: 10_000 });
    await rm(flag);
    expect(await waiting).toEqual({ back: true });
    expect(await restarted).toMatchObject({ reason: 'exited' });
    expect(rcd.pid).not.toBe(first);
    await rcd.stop();
  });
});

describe('rclone rcd start-up failures', () => {
  it('says so when rclone is not installed', async () => {
    await expect(
      RcloneDaemon.start({ remotes: LOCAL, binary: 'no-such-rclone' }),
    ).rejects.toBeInstanceOf(RcloneMissingError);
    await expect(
      RcloneDaemon.start({ remotes: LOCAL, binary: 'no-such-rclone', dieWithParent: false }),
    ).rejects.toBeInstanceOf(RcloneMissingError);
  });

  it('gives up on a start that does not answer in time, and ends that process', async () => {
    const dir = tmp();
    const wrapper = path.join(dir, 'silent-rclone');
    await writeFile(wrapper, `#!/bin/sh\necho "$$" > '${dir}/pid'\nexec sleep 30\n`, {
      mode: 0o755,
    });
    const t = Date.now();
    const err = await RcloneDaemon.start({
      remotes: LOCAL,
      binary: wrapper,
      startTimeoutMs: 500,
    }).catch((e) => e);
    expect(Date.now() - t).toBeLessThan(3_000);
    expect(err).toMatchObject({ code: 'start-failed' });
    expect(err.message).toBe('rclone rcd did not start: no answer within 0.5 s');
    const pid = Number(await readFile(path.join(dir, 'pid'), 'utf8'));
    expect(alive(pid)).toBe(false);
  });

  it('says what rclone said when it cannot start', async () => {
    const err = await RcloneDaemon.start({ remotes: LOCAL, extraArgs: ['--no-such-flag'] }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(RcloneDaemonError);
    expect(err.code).toBe('start-failed');
    expect(err.message).toMatch(/rclone rcd did not start: it exited during start-up \(code 1\)/);
    expect(err.message).toMatch(/unknown flag: --no-such-flag/);
  });
});

describe('rclone rcd, S3 (Ceph) with AWS_CA_BUNDLE set in our environment', () => {
  let svc: TestServices;
  let rcd: RcloneDaemon;
  const bucket = `rcd-${randomBytes(4).toString('hex')}`;
  const saved = process.env['AWS_CA_BUNDLE'];

  beforeAll(async () => {
    if (!existsSync(path.join(testServicesDir(), 'services.json'))) {
      await exec('bash', ['scripts/test-services.sh', 'start'], {
        cwd: REPO_ROOT,
        timeout: 180_000,
      });
    }
    svc = loadTestServices();
    process.env['AWS_CA_BUNDLE'] = '/etc/ssl/certs/ca-certificates.crt';
    rcd = await startDaemon({ remotes: { ...LOCAL, ...s3RemoteEnv('S3', svc.s3) } });
  });

  afterAll(async () => {
    if (saved === undefined) delete process.env['AWS_CA_BUNDLE'];
    else process.env['AWS_CA_BUNDLE'] = saved;
    await rcd?.call('operations/purge', { fs: `S3:${bucket}`, remote: '' }).catch(() => {});
    await rcd?.stop();
  });

  it('the variable really breaks rclone when inherited', async () => {
    const r = await exec('rclone', ['--config', '/dev/null', 'lsd', 'S3:'], {
      env: { ...process.env, ...s3RemoteEnv('S3', svc.s3) },
      timeout: 30_000,
    }).catch((e: { stderr: string }) => e);
    expect(r.stderr).toMatch(/LoadCustomCABundleError/);
  });

  it('copies to S3 and back through the rcd child, which does not inherit it', async () => {
    await rcd.call('operations/mkdir', { fs: `S3:${bucket}`, remote: '' });
    await rcd.job(
      'operations/copyfile',
      { srcFs: `L:${src}`, srcRemote: small, dstFs: `S3:${bucket}`, dstRemote: 'dir/small.txt' },
      { group: 's3' },
    );
    const st = await rcd.call<{ item: { Size: number } | null }>('operations/stat', {
      fs: `S3:${bucket}`,
      remote: 'dir/small.txt',
    });
    expect(st.item?.Size).toBe(10);
    const back = tmp();
    await rcd.job('operations/copyfile', {
      srcFs: `S3:${bucket}`,
      srcRemote: 'dir/small.txt',
      dstFs: `L:${back}`,
      dstRemote: 'small.txt',
    });
    expect(await readFile(path.join(back, 'small.txt'), 'utf8')).toBe('hello rcd\n');
    const missing = await rcd
      .call('operations/copyfile', {
        srcFs: `S3:${bucket}`,
        srcRemote: 'nope',
        dstFs: `L:${back}`,
        dstRemote: 'nope',
      })
      .catch((e) => e);
    expect(missing).toMatchObject({ status: 404, rcloneMessage: 'object not found' });
  });
});
