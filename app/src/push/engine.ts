/**
 * The push engine: one worker per destination drains that destination's part of the durable
 * queue through rclone's remote control. Each change becomes the cheapest operation that makes
 * the destination equal to the mirror: nothing when it already holds the content, a server-side
 * copy when it holds the same content elsewhere, a server-side move for a rename, an upload
 * otherwise; what is replaced or deleted goes to `.trash/YYYY-MM-DD/`. A push counts only once
 * the destination's object is proven equal (size and MD5 where the destination can tell it).
 * A destination that keeps failing is paused by a circuit breaker; the others go on.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, posix } from 'node:path';
import type { Logger } from '../log/index.js';
import type { FileRecord, QueueItem, State } from '../state/index.js';
import type { DestinationRemote, SftpSettings } from './destinations.js';
import { fixFor, needsTheOwner } from './fixes.js';
import { deltaWorthIt, fsPath, RsyncError, sendDelta, sshTargetOf } from './rsync.js';

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
    opts?: { group?: string; signal?: AbortSignal; pollMs?: number },
  ): Promise<T>;
}

export interface EngineDestination {
  name: string;
  remote: DestinationRemote;
  /** The SSH login of a Storage Box: rsync deltas go there. */
  sftp?: SftpSettings;
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
  /** The upload limit in force, bytes per second (null: none), for transfers outside rclone. */
  uploadLimit?: () => number | null;
  now?: () => number;
  random?: () => number;
}

export interface DestinationHealth {
  state: 'ok' | 'failing' | 'paused';
  consecutiveFailures: number;
  openUntil: number | null;
  lastError: { message: string; fix: string; at: number } | null;
  lastSuccessAt: number | null;
}

/** What a destination's worker did since the engine started. */
export interface PushCounters {
  /** Files sent from the mirror, and their bytes. */
  uploaded: number;
  bytes: number;
  /** Files whose content the destination already held elsewhere: copied there, server-side. */
  copied: number;
  /** Files and folders moved or renamed at the destination. */
  moved: number;
  /** Earlier versions that went to the trash: files deleted, and files replaced by a new version. */
  trashed: number;
  /** Files proven equal to the mirror after a copy. */
  verified: number;
  /** Attempts that failed (each is retried). */
  failures: number;
}

export const noCounters = (): PushCounters => ({
  uploaded: 0,
  bytes: 0,
  copied: 0,
  moved: 0,
  trashed: 0,
  verified: 0,
  failures: 0,
});

/** An upsert worked out: what the destination needs to become equal to the mirror. */
type UpsertPlan =
  | { kind: 'nothing' }
  | {
      kind: 'copy';
      file: FileRecord;
      /** Where the destination already holds this content (server-side copy), if anywhere. */
      twin?: { source: string; remote_path: string };
      /** The destination holds an older version at this path (it goes to the trash). */
      replaces: boolean;
      /** That older version's size, when known. */
      previousSize?: number | null;
    };

const BREAKER_THRESHOLD = 5;
const BREAKER_MAX_MS = 10 * 60_000;
const FAILED_RETRY_MS = 60 * 60_000;
/** Files up to this size are copied with a plain rc call rather than a polled job. */
const SMALL_FILE = 16 * 1024 * 1024;
/**
 * At least this many new small files of one source in a batch go as one `sync/copy` job (with
 * rclone's own parallelism) instead of one call each: the initial push of a new destination,
 * or a folder of photos dropped in at once.
 */
const BULK_MIN = 16;
/** A folder's listing (with hashes) verifies its files when at least this many were sent there. */
const LIST_MIN = 8;

/** An object at a destination as rclone's `operations/stat` and `operations/list` give it. */
interface RemoteObject {
  Size: number;
  Hashes?: Record<string, string>;
}

const statusOf = (err: unknown) => (err as { status?: number }).status;

export class PushEngine {
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly health = new Map<string, DestinationHealth>();
  private readonly wakers = new Map<string, () => void>();
  private readonly loops = new Map<string, Promise<void>>();
  private readonly paused = new Set<string>();
  private readonly counters = new Map<string, PushCounters>();
  /** rsync deltas run one at a time per destination (a Storage Box allows 10 connections). */
  private readonly deltaTurns = new Map<string, Promise<unknown>>();
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
      this.counters.set(d.name, noCounters());
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

  /** What a destination's worker did since the engine started. */
  countersOf(destination: string): PushCounters | undefined {
    const c = this.counters.get(destination);
    return c && { ...c };
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
      const upserts = await this.runBulk(d, batch.slice(i, j), log);
      await inParallel(
        width,
        upserts.map((item) => () => this.runItem(d, item, log)),
        () => this.running,
      );
      i = j;
    }
    // Claimed but not run (stopping): back to the queue.
    if (!this.running) await this.o.state.queue.requeueRunning(this.now());
  }

  private async runItem(d: EngineDestination, item: QueueItem, log: Logger): Promise<void> {
    try {
      await this.apply(d, item);
      await this.done(d, item);
    } catch (err) {
      await this.failed(d, item, err, log);
    }
  }

  private async done(d: EngineDestination, item: QueueItem): Promise<void> {
    await this.o.state.queue.complete(item.id, this.now());
    Object.assign(this.health.get(d.name)!, {
      state: 'ok',
      consecutiveFailures: 0,
      openUntil: null,
      lastSuccessAt: this.now(),
    });
  }

  /** A failed attempt: retried later with backoff; a destination that keeps failing is paused. */
  private async failed(
    d: EngineDestination,
    item: QueueItem,
    err: unknown,
    log: Logger,
  ): Promise<void> {
    const h = this.health.get(d.name)!;
    if (this.controller.signal.aborted) return;
    this.counters.get(d.name)!.failures++;
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
    h.lastError = { message, fix: fixFor([message]), at: this.now() };
    // Wrong credentials, a missing bucket, a changed host key: retrying soon cannot help.
    if (needsTheOwner(message))
      h.consecutiveFailures = Math.max(h.consecutiveFailures, BREAKER_THRESHOLD);
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
  private trashOpts(d: EngineDestination, source: string) {
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
      const plan = await this.planUpsert(d, item);
      if (plan.kind === 'nothing') return;
      const { file, twin } = plan;
      if (!twin && (await this.sentAsDelta(d, item, plan))) return;
      await this.run(
        'operations/copyfile',
        {
          srcFs: twin ? this.fs(d, twin.source) : this.mirror(item.source),
          srcRemote: twin ? twin.remote_path : item.rel_path,
          dstFs: fs,
          dstRemote: item.rel_path,
          ...this.trashOpts(d, item.source),
        },
        group,
        file.size,
      );
      await this.verify(fs, item.rel_path, file.size, file.md5);
      await this.copied(d, item, plan);
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
        await state.destinationFiles.forget(d.name, item.source, item.rel_path);
        return; // it was not there: nothing went to the trash
      }
      await state.destinationFiles.forget(d.name, item.source, item.rel_path);
      this.counters.get(d.name)!.trashed++;
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
      this.counters.get(d.name)!.moved++;
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
    this.counters.get(d.name)!.moved++;
  }

  /**
   * A large file the Storage Box holds an older version of goes as an rsync delta (only the
   * changed blocks travel; the old version goes to the trash like rclone's BackupDir does it).
   * False when a delta does not apply or rsync cannot do it here: the caller uploads whole.
   */
  private async sentAsDelta(
    d: EngineDestination,
    item: QueueItem,
    plan: Extract<UpsertPlan, { kind: 'copy' }>,
  ): Promise<boolean> {
    const ssh = sshTargetOf(d.sftp);
    // Only with a pinned host key: rsync's ssh refuses an unknown host, where rclone would not.
    if (!ssh?.knownHostsFile || !plan.replaces || !deltaWorthIt(plan.file.size, plan.previousSize))
      return false;
    const turn = (this.deltaTurns.get(d.name) ?? Promise.resolve()).then(async () => {
      const limit = this.o.uploadLimit?.() ?? null;
      return sendDelta({
        ssh,
        mirrorDir: this.mirror(item.source),
        relPath: item.rel_path,
        remoteDir: fsPath(this.fs(d, item.source)),
        trashDir: fsPath(this.trashFs(d, item.source)),
        ...(limit ? { bwlimitKiBps: Math.max(1, Math.floor(limit / 1024)) } : {}),
        signal: this.controller.signal,
      });
    });
    this.deltaTurns.set(
      d.name,
      turn.catch(() => {}),
    );
    let sent;
    try {
      sent = await turn;
    } catch (err) {
      if (err instanceof RsyncError && err.fallback) {
        this.o.logger.warn(
          { destination: d.name, path: item.rel_path, error: err.message },
          `rsync delta to ${d.name} not possible (${err.message}); sending ${item.rel_path} whole`,
        );
        return false;
      }
      throw err;
    }
    await this.verify(this.fs(d, item.source), item.rel_path, plan.file.size, plan.file.md5);
    await this.copied(d, item, plan, sent.bytesSent);
    return true;
  }

  /** What an upsert needs at a destination, from the state alone. */
  private async planUpsert(d: EngineDestination, item: QueueItem): Promise<UpsertPlan> {
    const { state } = this.o;
    const file = await state.files.get(item.source, item.rel_path);
    // Gone or changed since: a later item says what to do.
    if (!file || file.state !== 'present' || !file.sha256) return { kind: 'nothing' };
    const held = await state.destinationFiles.get(d.name, item.source, item.rel_path);
    const there = held?.state === 'verified' && held.remote_path === item.rel_path;
    if (there && held.sha256 === file.sha256) return { kind: 'nothing' };
    const twin = await state.destinationFiles.holderOf(d.name, file.sha256);
    const elsewhere =
      twin && !(twin.source === item.source && twin.remote_path === item.rel_path)
        ? twin
        : undefined;
    return {
      kind: 'copy',
      file,
      twin: elsewhere,
      replaces: !!there,
      previousSize: there ? held.size : undefined,
    };
  }

  /** A copy proven equal: recorded in the state and counted. */
  private async copied(
    d: EngineDestination,
    item: QueueItem,
    plan: Extract<UpsertPlan, { kind: 'copy' }>,
    bytesSent = plan.file.size,
  ): Promise<void> {
    await this.o.state.destinationFiles.markVerified(
      d.name,
      item.source,
      item.rel_path,
      plan.file.size,
      this.now(),
    );
    const c = this.counters.get(d.name)!;
    c.verified++;
    if (plan.replaces) c.trashed++;
    if (plan.twin) c.copied++;
    else {
      c.uploaded++;
      c.bytes += bytesSent;
    }
  }

  /**
   * Sends the new small files among a run of upserts as one `sync/copy` job per source (a file
   * list, rclone's own parallelism, what the destination already holds skipped by checksum),
   * then verifies each against the destination and settles it like a single copy. Returns the
   * upserts left for one-by-one handling (large files, server-side copies, replacements, a few
   * stragglers). Those are planned again there, on purpose: after the bulk, a file it sent may
   * be the twin that turns a straggler's upload into a server-side copy.
   */
  private async runBulk(
    d: EngineDestination,
    upserts: QueueItem[],
    log: Logger,
  ): Promise<QueueItem[]> {
    if (upserts.length < BULK_MIN) return upserts;
    const rest: QueueItem[] = [];
    const bySource = new Map<
      string,
      { item: QueueItem; plan: Extract<UpsertPlan, { kind: 'copy' }> }[]
    >();
    for (const item of upserts) {
      const plan = await this.planUpsert(d, item);
      if (plan.kind === 'nothing') await this.done(d, item);
      else if (
        plan.twin ||
        plan.replaces ||
        plan.file.size > SMALL_FILE ||
        /[\r\n]/.test(item.rel_path)
      )
        rest.push(item);
      else {
        const list = bySource.get(item.source) ?? [];
        list.push({ item, plan });
        bySource.set(item.source, list);
      }
    }
    for (const [source, entries] of bySource) {
      if (!this.running) break;
      if (entries.length < BULK_MIN) {
        rest.push(...entries.map((e) => e.item));
        continue;
      }
      const fs = this.fs(d, source);
      const dir = await mkdtemp(join(tmpdir(), 'backupd-bulk-'));
      try {
        const list = join(dir, 'files');
        await writeFile(list, entries.map((e) => e.item.rel_path).join('\n') + '\n');
        await this.o.rc.job(
          'sync/copy',
          {
            srcFs: this.mirror(source),
            dstFs: fs,
            _filter: { FilesFromRaw: [list] },
            _config: {
              ...this.trashOpts(d, source)._config,
              CheckSum: true,
              Transfers: Math.max(1, this.o.transfers ?? 8),
            },
          },
          // A bulk takes seconds: polling its end often keeps the next one from waiting.
          { group: `push/${d.name}`, signal: this.controller.signal, pollMs: 200 },
        );
      } catch (err) {
        // Some files may have failed: the checks below tell which, and only those are retried.
        if (this.controller.signal.aborted) return [];
        log.warn(
          { error: (err as Error).message, files: entries.length },
          `bulk copy to ${d.name} reported errors; checking each file`,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const found = await this.verifyMany(
        fs,
        entries.map((e) => e.item.rel_path),
      );
      for (const { item, plan } of entries) {
        try {
          this.check(item.rel_path, found.get(item.rel_path), plan.file.size, plan.file.md5);
          await this.copied(d, item, plan);
          await this.done(d, item);
        } catch (err) {
          await this.failed(d, item, err, log);
        }
      }
    }
    return rest;
  }

  /**
   * What the destination holds at these paths: a folder's listing (one request per thousand
   * objects on S3) where several files were sent to it, one stat each otherwise.
   */
  private async verifyMany(
    fs: string,
    paths: string[],
  ): Promise<Map<string, RemoteObject | null | Error>> {
    const byDir = new Map<string, string[]>();
    for (const p of paths) {
      const dir = posix.dirname(p) === '.' ? '' : posix.dirname(p);
      byDir.set(dir, [...(byDir.get(dir) ?? []), p]);
    }
    const found = new Map<string, RemoteObject | null | Error>();
    const jobs: (() => Promise<void>)[] = [];
    for (const [dir, inDir] of byDir) {
      if (inDir.length >= LIST_MIN && this.cheapHashes(fs)) {
        jobs.push(async () => {
          try {
            const r = await this.o.rc.call<{ list: (RemoteObject & { Path: string })[] }>(
              'operations/list',
              {
                fs,
                remote: dir,
                opt: {
                  showHash: true,
                  hashTypes: ['md5'],
                  filesOnly: true,
                  noMimeType: true,
                  noModTime: true, // S3 would read each object's metadata for it
                },
              },
            );
            const listed = new Map(r.list.map((o) => [o.Path, o]));
            for (const p of inDir) found.set(p, listed.get(p) ?? null);
          } catch (err) {
            for (const p of inDir) found.set(p, err as Error);
          }
        });
      } else
        for (const p of inDir)
          jobs.push(async () => {
            found.set(p, await this.stat(fs, p).catch((err: Error) => err));
          });
    }
    await inParallel(Math.max(1, this.o.transfers ?? 8), jobs);
    return found;
  }

  /** S3 lists MD5s with its objects; an SFTP server would hash every file of the folder. */
  private cheapHashes(fs: string): boolean {
    const d = this.o.destinations.find((x) => fs.startsWith(`${x.remote.remote}:`));
    return d?.remote.backend === 's3';
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

  private async stat(fs: string, remote: string): Promise<RemoteObject | null> {
    const r = await this.o.rc.call<{ item: RemoteObject | null }>('operations/stat', {
      fs,
      remote,
      opt: { showHash: true, hashTypes: ['md5'] },
    });
    return r.item;
  }

  /** The destination's object must have the mirror file's size, and its MD5 where it can tell. */
  private async verify(
    fs: string,
    remote: string,
    size: number,
    md5: string | null,
  ): Promise<void> {
    this.check(remote, await this.stat(fs, remote), size, md5);
  }

  private check(
    remote: string,
    found: RemoteObject | null | Error | undefined,
    size: number,
    md5: string | null,
  ): void {
    if (found instanceof Error) throw found;
    if (!found)
      throw new Error(`verification failed: ${remote} is not at the destination after the copy`);
    if (found.Size !== size)
      throw new Error(
        `verification failed: ${remote} has ${found.Size} bytes at the destination, ${size} on the mirror`,
      );
    const theirs = found.Hashes?.md5;
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

/** Runs the jobs in order, at most `width` at a time, starting no new one once `go()` is false. */
async function inParallel(
  width: number,
  jobs: (() => Promise<void>)[],
  go: () => boolean = () => true,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, jobs.length) }, async () => {
      while (next < jobs.length && go()) await jobs[next++]!();
    }),
  );
}
