/**
 * The push engine: one worker per destination drains that destination's part of the durable
 * queue through rclone's remote control. Each change becomes the cheapest operation that makes
 * the destination equal to the mirror: nothing when it already holds the content, a server-side
 * copy when it holds the same content elsewhere, a server-side move for a rename, an upload
 * otherwise; what is replaced or deleted goes to `.trash/YYYY-MM-DD/`. A push counts only once
 * the destination's object is proven equal (size and MD5 where the destination can tell it).
 * A destination that keeps failing is paused by a circuit breaker; the others go on.
 */
import { basename } from 'node:path';
import type { Logger } from '../log/index.js';
import type { QueueItem, State } from '../state/index.js';
import type { DestinationRemote } from './destinations.js';

/** The part of rclone's remote control the engine uses (see rcd.ts). */
export interface Rc {
  call<T = unknown>(
    path: string,
    params: Record<string, unknown>,
    opts?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<T>;
  job<T = unknown>(
    path: string,
    params: Record<string, unknown>,
    opts?: { group?: string; signal?: AbortSignal },
  ): Promise<T>;
}

export interface EngineDestination {
  name: string;
  remote: DestinationRemote;
}

export interface EngineOptions {
  state: State;
  rc: Rc;
  logger: Logger;
  destinations: EngineDestination[];
  /** Mirror folder of each source, by source name. */
  sources: Record<string, string>;
  batchSize: number;
  retryAttempts: number;
  retryDelayMs: number;
  /** Transfers in flight per destination (default 8: small files are bound by latency). */
  transfers?: number;
  now?: () => number;
  random?: () => number;
}

export interface DestinationHealth {
  state: 'ok' | 'failing' | 'paused';
  consecutiveFailures: number;
  openUntil: number | null;
  lastError: { message: string; fix?: string; at: number } | null;
  lastSuccessAt: number | null;
}

const BREAKER_THRESHOLD = 5;
const BREAKER_MAX_MS = 10 * 60_000;
const FAILED_RETRY_MS = 60 * 60_000;
/** Files up to this size are copied with a plain rc call rather than a polled job. */
const SMALL_FILE = 16 * 1024 * 1024;

const statusOf = (err: unknown) => (err as { status?: number }).status;

export class PushEngine {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly health = new Map<string, DestinationHealth>();
  private readonly wakers = new Map<string, () => void>();
  private readonly loops = new Map<string, Promise<void>>();
  private readonly paused = new Set<string>();
  private controller = new AbortController();
  private running = false;

  constructor(private readonly o: EngineOptions) {
    this.now = o.now ?? Date.now;
    this.random = o.random ?? Math.random;
    for (const d of o.destinations) {
      this.health.set(d.name, {
        state: 'ok',
        consecutiveFailures: 0,
        openUntil: null,
        lastError: null,
        lastSuccessAt: null,
      });
    }
  }

  /** Starts a worker per destination; items left running by a dead process are redone. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.controller = new AbortController();
    await this.o.state.queue.requeueRunning(this.now());
    for (const d of this.o.destinations) this.loops.set(d.name, this.loop(d));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.controller.abort();
    for (const wake of this.wakers.values()) wake();
    await Promise.allSettled(this.loops.values());
    this.loops.clear();
  }

  /** New work was queued: workers waiting for it look again now. */
  wake(): void {
    for (const wake of this.wakers.values()) wake();
  }

  pause(destination: string): void {
    this.paused.add(destination);
  }

  resume(destination: string): void {
    this.paused.delete(destination);
    this.wake();
  }

  healthOf(destination: string): DestinationHealth | undefined {
    const h = this.health.get(destination);
    return h && { ...h, state: this.paused.has(destination) ? 'paused' : h.state };
  }

  /** Resolves once no destination has pending work that is due (failed items waiting excluded). */
  async drained(opts: { timeoutMs?: number; includeFailing?: boolean } = {}): Promise<boolean> {
    const deadline = this.now() + (opts.timeoutMs ?? Infinity);
    for (;;) {
      let busy = false;
      for (const d of this.o.destinations) {
        const c = await this.o.state.queue.counts(d.name);
        const failing = this.health.get(d.name)?.state === 'failing';
        if (c.running > 0 || (c.pending > 0 && (!failing || opts.includeFailing))) busy = true;
      }
      if (!busy) return true;
      if (this.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async loop(d: EngineDestination): Promise<void> {
    const log = this.o.logger.child({ source: 'push', destination: d.name });
    while (this.running) {
      const h = this.health.get(d.name)!;
      if (this.paused.has(d.name) || (h.openUntil && h.openUntil > this.now())) {
        await this.sleep(d.name, this.paused.has(d.name) ? 60_000 : h.openUntil! - this.now());
        continue;
      }
      const batch = await this.o.state.queue.claim(d.name, this.now(), this.o.batchSize);
      if (batch.length === 0) {
        await this.sleep(d.name, 5_000);
        continue;
      }
      await this.runBatch(d, batch, log);
    }
  }

  /** Consecutive upserts run side by side; moves and deletes run alone, in queue order. */
  private async runBatch(d: EngineDestination, batch: QueueItem[], log: Logger): Promise<void> {
    const width = Math.max(1, this.o.transfers ?? 8);
    let i = 0;
    while (i < batch.length && this.running) {
      if (batch[i]!.op !== 'upsert') {
        await this.runItem(d, batch[i]!, log);
        i++;
        continue;
      }
      let j = i;
      while (j < batch.length && batch[j]!.op === 'upsert') j++;
      const upserts = batch.slice(i, j);
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(width, upserts.length) }, async () => {
          while (next < upserts.length && this.running)
            await this.runItem(d, upserts[next++]!, log);
        }),
      );
      i = j;
    }
    // Claimed but not run (stopping): back to the queue.
    if (!this.running) await this.o.state.queue.requeueRunning(this.now());
  }

  private async runItem(d: EngineDestination, item: QueueItem, log: Logger): Promise<void> {
    const h = this.health.get(d.name)!;
    try {
      await this.apply(d, item);
      await this.o.state.queue.complete(item.id, this.now());
      Object.assign(h, {
        state: 'ok',
        consecutiveFailures: 0,
        openUntil: null,
        lastSuccessAt: this.now(),
      });
    } catch (err) {
      if (this.controller.signal.aborted) return;
      const message = (err as Error).message;
      const attempts = item.attempts + 1;
      const exhausted = attempts > this.o.retryAttempts;
      const backoff =
        Math.min(this.o.retryDelayMs * 2 ** item.attempts, FAILED_RETRY_MS) * (0.5 + this.random());
      await this.o.state.queue.retry(
        item.id,
        message,
        this.now() + (exhausted ? FAILED_RETRY_MS : backoff),
        exhausted,
        this.now(),
      );
      h.consecutiveFailures++;
      h.lastError = { message, at: this.now() };
      if (h.consecutiveFailures >= BREAKER_THRESHOLD) {
        const open = Math.min(
          30_000 * 2 ** (h.consecutiveFailures - BREAKER_THRESHOLD),
          BREAKER_MAX_MS,
        );
        if (h.state !== 'failing')
          log.error(
            { error: message },
            `${d.name} keeps failing; pausing it for ${Math.round(open / 1000)} s (the other destinations go on)`,
          );
        Object.assign(h, { state: 'failing', openUntil: this.now() + open });
      }
      log[exhausted ? 'error' : 'warn'](
        { path: item.rel_path, op: item.op, attempts, error: message },
        `${item.op} of ${item.rel_path} to ${d.name} failed${exhausted ? '; retried hourly from now on' : ', will retry'}`,
      );
    }
  }

  /** The rclone file system of a source's folder at a destination, e.g. `BKP_AWS_S3:bucket/google-drive`. */
  private fs(d: EngineDestination, source: string, ...under: string[]): string {
    const parts = [d.remote.root, ...under, basename(this.mirror(source))];
    return `${d.remote.remote}:${parts.filter(Boolean).join('/')}`;
  }

  /** Today's trash of a source at a destination: `.trash/YYYY-MM-DD/<folder>`. */
  private trashFs(d: EngineDestination, source: string): string {
    return this.fs(d, source, '.trash', new Date(this.now()).toISOString().slice(0, 10));
  }

  /** rclone moves what a copy or move replaces into the trash. */
  private trashOpts(d: EngineDestination, source: string): Record<string, unknown> {
    return { _config: { BackupDir: this.trashFs(d, source) } };
  }

  private mirror(source: string): string {
    const dir = this.o.sources[source];
    if (!dir) throw new Error(`no mirror folder for source ${source}`);
    return dir;
  }

  private async apply(d: EngineDestination, item: QueueItem): Promise<void> {
    const { state, rc } = this.o;
    const fs = this.fs(d, item.source);
    const signal = this.controller.signal;
    const group = `push/${d.name}`;
    if (item.op === 'upsert') {
      const file = await state.files.get(item.source, item.rel_path);
      if (!file || file.state !== 'present' || !file.sha256) return; // gone or changed since: a later item says what to do
      const held = await state.destinationFiles.get(d.name, item.source, item.rel_path);
      if (
        held?.state === 'verified' &&
        held.sha256 === file.sha256 &&
        held.remote_path === item.rel_path
      )
        return;
      const twin = await state.destinationFiles.holderOf(d.name, file.sha256);
      const fromTwin = twin && !(twin.source === item.source && twin.remote_path === item.rel_path);
      await this.run(
        'operations/copyfile',
        {
          srcFs: fromTwin ? this.fs(d, twin.source) : this.mirror(item.source),
          srcRemote: fromTwin ? twin.remote_path : item.rel_path,
          dstFs: fs,
          dstRemote: item.rel_path,
          ...this.trashOpts(d, item.source),
        },
        group,
        file.size,
      );
      await this.verify(fs, item.rel_path, file.size, file.md5);
      await state.destinationFiles.markVerified(
        d.name,
        item.source,
        item.rel_path,
        file.size,
        this.now(),
      );
      return;
    }
    if (item.op === 'delete') {
      const trashFs = this.trashFs(d, item.source);
      try {
        await rc.job(
          'operations/movefile',
          { srcFs: fs, srcRemote: item.rel_path, dstFs: trashFs, dstRemote: item.rel_path },
          { group, signal },
        );
      } catch (err) {
        if (statusOf(err) !== 404 && !/not found/i.test((err as Error).message)) throw err;
      }
      await state.destinationFiles.forget(d.name, item.source, item.rel_path);
      return;
    }
    // A move: server-side at the destination, never a new upload.
    const from = item.from_path!;
    if (item.is_dir) {
      await rc.job(
        'sync/move',
        {
          srcFs: `${fs}/${from}`,
          dstFs: `${fs}/${item.rel_path}`,
          deleteEmptySrcDirs: true,
          ...this.trashOpts(d, item.source),
        },
        { group, signal },
      );
      await state.destinationFiles.moved(d.name, item.source, from, item.rel_path, true);
      return;
    }
    const held = await state.destinationFiles.get(d.name, item.source, item.rel_path);
    if (!held || held.remote_path !== from) {
      // The destination never had it at the old place: send it like a new file.
      return this.apply(d, { ...item, op: 'upsert', from_path: null });
    }
    await rc.job(
      'operations/movefile',
      {
        srcFs: fs,
        srcRemote: from,
        dstFs: fs,
        dstRemote: item.rel_path,
        ...this.trashOpts(d, item.source),
      },
      { group, signal },
    );
    await state.destinationFiles.moved(d.name, item.source, from, item.rel_path, false);
  }

  /**
   * An rc operation: small files as one plain call (no job polling: most of a small file's time
   * would be waiting for the next poll), large ones as a job that can run for hours.
   */
  private async run(
    path: string,
    params: Record<string, unknown>,
    group: string,
    size: number,
  ): Promise<void> {
    const signal = this.controller.signal;
    if (size <= SMALL_FILE)
      await this.o.rc.call(path, { ...params, _group: group }, { timeoutMs: 10 * 60_000, signal });
    else await this.o.rc.job(path, params, { group, signal });
  }

  /** The destination's object must have the mirror file's size, and its MD5 where it can tell. */
  private async verify(
    fs: string,
    remote: string,
    size: number,
    md5: string | null,
  ): Promise<void> {
    const r = await this.o.rc.call<{
      item: { Size: number; Hashes?: Record<string, string> } | null;
    }>('operations/stat', {
      fs,
      remote,
      opt: { showHash: true },
    });
    if (!r.item)
      throw new Error(`verification failed: ${remote} is not at the destination after the copy`);
    if (r.item.Size !== size)
      throw new Error(
        `verification failed: ${remote} has ${r.item.Size} bytes at the destination, ${size} on the mirror`,
      );
    const theirs = r.item.Hashes?.md5;
    if (md5 && theirs && theirs.toLowerCase() !== md5)
      throw new Error(
        `verification failed: ${remote} has MD5 ${theirs} at the destination, ${md5} on the mirror`,
      );
  }

  private sleep(destination: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(10, ms));
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakers.set(destination, done);
    });
  }
}
