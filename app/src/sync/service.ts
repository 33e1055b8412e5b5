/**
 * The continuous push half as `backupd start` runs it: for every enabled source, a watch on its
 * mirror folder (raw inotify) whose changes go, through the state, into the durable queue; a
 * reconciliation at start-up for what changed while the daemon was down; one rclone rcd and a
 * push worker per destination; the bandwidth schedule. Each source's changes are handled one
 * batch at a time, in order.
 */
import { existsSync } from 'node:fs';
import type { ConfigView, DestinationName, Runtime, SourceName } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { ingest, type IngestContext } from '../mirror/ingest.js';
import { reconcile } from '../mirror/reconcile.js';
import { globExcluder, watchTree, type Watcher } from '../mirror/watcher.js';
import { BandwidthController, rateBytesPerSecond, type BandwidthState } from '../push/bandwidth.js';
import { describeDestination } from '../push/destinations.js';
import {
  noCounters,
  PushEngine,
  type DestinationHealth,
  type EngineDestination,
  type PushCounters,
} from '../push/engine.js';
import { ProgressMonitor } from '../push/progress.js';
import { Intake, type HeldAlert } from '../push/intake.js';
import { pushMetadata } from '../push/metadata.js';
import { purgeTrash } from '../push/trash.js';
import { RcloneDaemon } from '../push/rcd.js';
import type { NewChange, State } from '../state/index.js';
import { DESTINATION_NAMES, SOURCE_NAMES } from '../status/index.js';

const METADATA_FIRST_MS = 10_000;
const METADATA_EVERY_MS = 6 * 3600_000;

interface SourceRun {
  name: SourceName;
  root: string;
  watcher?: Watcher;
  /** The source's changes, one batch after the other. */
  chain: Promise<void>;
  paused?: boolean;
}

export class SyncService {
  private rcd: RcloneDaemon | undefined;
  private engine: PushEngine | undefined;
  private intake: Intake | undefined;
  private bandwidth: BandwidthController | undefined;
  private sources: SourceRun[] = [];
  private destinations: EngineDestination[] = [];
  private problems = new Map<string, { message: string; fix: string }>();
  private heldAlert: HeldAlert | undefined;
  private trashTimer: NodeJS.Timeout | undefined;
  private metadataTimer: NodeJS.Timeout | undefined;
  private sampler: NodeJS.Timeout | undefined;
  /** Bytes sent per destination, one point a minute for the last day (for the bandwidth graph). */
  private readonly samples = new Map<string, { at: number; bytes: number }[]>();
  private readonly lastBytes = new Map<string, number>();
  private once = false;
  /** Live push progress; one for the service's life, so stream listeners outlive restarts. */
  readonly progress = new ProgressMonitor();

  constructor(
    private readonly deps: {
      runtime: () => Runtime;
      state: State;
      logger: Logger;
      /** The configuration without secrets, for the copy under `.backupd/` (none: no copy). */
      configView?: () => ConfigView;
    },
  ) {}

  private get log() {
    return this.deps.logger.child({ source: 'sync' });
  }

  /**
   * Starts the push half. `once` is `backupd sync --once`: no watch and no timers, retries
   * within minutes rather than hours, and only the sources given (the others' mirror folders
   * were found unsafe to push).
   */
  async start(opts: { once?: boolean; sources?: SourceName[] } = {}): Promise<void> {
    const runtime = this.deps.runtime();
    const cfg = runtime.config;
    this.once = !!opts.once;
    const remotes: Record<string, string> = {};
    this.destinations = [];
    for (const name of DESTINATION_NAMES.filter((d) => cfg.destinations[d].enabled)) {
      const d = describeDestination(runtime, name);
      if (d.remote) {
        this.destinations.push({ name, remote: d.remote, sftp: d.sftp });
        Object.assign(remotes, d.remote.env);
      } else if (d.problem) {
        this.problems.set(name, d.problem);
        this.log.error(
          { destination: name },
          `${name} cannot be used: ${d.problem.message}. ${d.problem.fix}`,
        );
      }
    }
    if (this.destinations.length === 0) {
      this.log.warn(
        'no destination is enabled and usable: changes on the mirror are recorded but not pushed',
      );
    }
    const rcdLog = this.deps.logger.child({ source: 'rclone' });
    this.rcd = await RcloneDaemon.start({
      remotes,
      logger: rcdLog,
      extraArgs:
        cfg.sync.max_requests_per_second > 0
          ? ['--tpslimit', String(cfg.sync.max_requests_per_second)]
          : [],
    });
    this.engine = new PushEngine({
      state: this.deps.state,
      rc: this.rcd,
      logger: this.deps.logger,
      destinations: this.destinations,
      sources: Object.fromEntries(SOURCE_NAMES.map((s) => [s, runtime.sourcePath(s)])),
      batchSize: cfg.sync.batch_size,
      retryAttempts: cfg.sync.retry_attempts,
      // A one-off pass retries within seconds: nobody waits an hour for a command to end.
      retryDelayMs: Math.min(cfg.sync.retry_delay_seconds * 1000, this.once ? 2_000 : Infinity),
      transfers: cfg.sync.max_transfers,
      uploadLimit: () => {
        const limit = this.bandwidth?.current().limit;
        return limit ? rateBytesPerSecond(limit) : null;
      },
    });
    this.intake = await new Intake({
      state: this.deps.state,
      destinations: () => this.destinations.map((d) => d.name),
      logger: this.deps.logger,
      guard: {
        share: cfg.sync.mass_delete_share,
        count: cfg.sync.mass_delete_count,
        windowMs: 10 * 60_000,
        minimum: 20,
      },
      onHeld: (alert) => (this.heldAlert = alert),
      onQueued: () => this.engine?.wake(),
    }).init();
    this.bandwidth = new BandwidthController({ rcd: this.rcd, config: cfg.sync, logger: this.log });
    await this.bandwidth.start();
    if (this.once) await this.deps.state.queue.retryFailedNow(Date.now());
    await this.engine.start();
    await this.progress.start({
      rc: this.rcd,
      destinations: this.destinations.map((d) => d.name),
      state: this.deps.state,
      logger: this.deps.logger.child({ source: 'push' }),
    });

    await this.backfill();
    for (const name of opts.sources ?? SOURCE_NAMES.filter((s) => cfg.sources[s].enabled)) {
      const run: SourceRun = { name, root: runtime.sourcePath(name), chain: Promise.resolve() };
      this.sources.push(run);
      this.watch(run);
    }
    if (this.once) return;
    this.sampler = setInterval(() => void this.sample(), 60_000);
    this.sampler.unref();
    this.trashTimer = setInterval(() => void this.purgeTrash(), 24 * 3600_000);
    this.trashTimer.unref();
    // The state and configuration travel to the destinations soon after a start, then every
    // six hours: a new appliance can take over from any destination.
    const copyMetadata = () => {
      void this.copyMetadata();
      this.metadataTimer = setTimeout(copyMetadata, METADATA_EVERY_MS);
      this.metadataTimer.unref();
    };
    this.metadataTimer = setTimeout(copyMetadata, METADATA_FIRST_MS);
    this.metadataTimer.unref();
    void this.purgeTrash();
  }

  /**
   * Files the state knows that a destination does not hold verified (a destination just added,
   * or one that lost items) are queued for it; what is already queued is merged, not doubled.
   */
  private async backfill(): Promise<void> {
    const cfg = this.deps.runtime().config;
    const now = Date.now();
    for (const d of this.destinations) {
      let queued = 0;
      for (const source of SOURCE_NAMES.filter((s) => cfg.sources[s].enabled)) {
        let batch: NewChange[] = [];
        for await (const f of this.deps.state.files.missingAt(d.name, source)) {
          batch.push({ source, rel_path: f.rel_path, op: 'upsert' });
          if (batch.length >= 500) {
            queued += await this.deps.state.queue.enqueue(batch, [d.name], now);
            batch = [];
          }
        }
        if (batch.length) queued += await this.deps.state.queue.enqueue(batch, [d.name], now);
      }
      if (queued)
        this.log.info(
          { destination: d.name, files: queued },
          `${d.name} lacks ${queued} file(s) the mirror holds: queued`,
        );
    }
    this.engine?.wake();
  }

  /** Watches a source's mirror folder, then reconciles it (whatever happens meanwhile is in the watch). */
  private watch(run: SourceRun): void {
    const cfg = this.deps.runtime().config;
    const name = run.name;
    if (!existsSync(run.root)) {
      this.log.warn(
        { source_name: name },
        `the mirror folder ${run.root} does not exist yet: nothing of ${name} is watched until it does (is the data disk mounted?)`,
      );
      return;
    }
    const ctx = this.context(run);
    if (cfg.sync.mode === 'realtime' && !this.once) {
      run.watcher = watchTree(run.root, {
        debounceMs: cfg.sync.watch_delay_seconds * 1000,
        exclude: ctx.exclude,
        onChanges: (changes) => this.enqueue(run, () => ingest(ctx, changes)),
        onWarning: (message, detail) => this.log.warn({ source_name: name, ...detail }, message),
      });
    }
    this.enqueue(run, async () => {
      const r = await this.rescan(run);
      this.log.info(
        { source_name: name, ...r },
        `${name}: the mirror and the state agree (${r.scanned} files looked at, ${r.hashed} hashed)`,
      );
    });
  }

  /** Stops watching a source: nothing new of it is queued until it is resumed. */
  pauseSource(name: SourceName): boolean {
    const run = this.sources.find((s) => s.name === name);
    if (!run) return false;
    run.watcher?.close();
    run.watcher = undefined;
    run.paused = true;
    this.log.info({ source_name: name }, `${name} paused`);
    return true;
  }

  /** Watches a source again and catches up with what changed while it was paused. */
  resumeSource(name: SourceName): boolean {
    const run = this.sources.find((s) => s.name === name);
    if (!run) return false;
    if (run.paused) {
      run.paused = false;
      this.watch(run);
      this.log.info({ source_name: name }, `${name} resumed`);
    }
    return true;
  }

  sourcePaused(name: SourceName): boolean {
    return this.sources.find((s) => s.name === name)?.paused ?? false;
  }

  private async copyMetadata(): Promise<void> {
    const view = this.deps.configView?.();
    if (!view) return;
    for (const d of this.destinations) {
      const roots = this.sources.map((run) => run.root);
      const r = await pushMetadata(d.remote, this.deps.state, view, roots).catch((err: Error) => ({
        ok: false,
        error: { message: err.message },
      }));
      if (!r.ok)
        this.log.warn(
          { destination: d.name, error: r.error },
          `copying the state and configuration to ${d.name} failed: ${r.error?.message}; tried again in six hours`,
        );
    }
  }

  private async purgeTrash(): Promise<void> {
    const days = this.deps.runtime().config.sync.trash_retention_days;
    for (const d of this.destinations) {
      try {
        const purged = await purgeTrash(this.rcd!, d.remote, days, new Date());
        if (purged.length)
          this.log.info(
            { destination: d.name, days: purged },
            `purged ${purged.length} day(s) of trash older than ${days} days at ${d.name}`,
          );
      } catch (err) {
        this.log.warn(
          { destination: d.name, err },
          `purging old trash at ${d.name} failed: ${(err as Error).message}`,
        );
      }
    }
  }

  /** Runs a source's work after what is already queued for it; errors are logged, never lost silently. */
  private enqueue(run: SourceRun, work: () => Promise<void>, rescanOnError = true): void {
    run.chain = run.chain.then(work).catch((err: Error) => {
      this.log.error(
        { err, source_name: run.name },
        `${run.name}: handling changes failed (${err.message})${rescanOnError ? '; a full rescan follows' : ''}`,
      );
      if (rescanOnError) this.enqueue(run, async () => void (await this.rescan(run)), false);
    });
  }

  /** How a source's changes reach the state and the queue. */
  private context(run: SourceRun): IngestContext {
    const cfg = this.deps.runtime().config.sources[run.name];
    return {
      source: run.name,
      root: run.root,
      state: this.deps.state,
      exclude: globExcluder(cfg.exclude_patterns, cfg.exclude_paths),
      submit: (changes: NewChange[]) => this.intake!.submit(changes),
      onWarning: (message: string, detail?: Record<string, unknown>) =>
        this.log.warn({ source_name: run.name, ...detail }, message),
    };
  }

  private rescan(run: SourceRun) {
    const ctx = this.context(run);
    return reconcile({ ...ctx, onChanges: ctx.submit });
  }

  /** A full reconciliation of every source now (the panel's "sync now"). */
  force(): void {
    for (const run of this.sources) this.enqueue(run, async () => void (await this.rescan(run)));
  }

  /** Waits until every source's changes are in the state and the queue (held ones included). */
  async settled(): Promise<void> {
    for (;;) {
      const chains = this.sources.map((s) => s.chain);
      await Promise.all(chains);
      if (this.sources.every((s, i) => s.chain === chains[i])) return;
    }
  }

  /** Waits until every source's queued work is handled and the push queue is drained. */
  async idle(timeoutMs = 60_000): Promise<boolean> {
    await this.settled();
    return (await this.engine?.drained({ timeoutMs })) ?? true;
  }

  /** The destinations being pushed to, and what each worker did so far. */
  pushedTo(): { name: DestinationName; counters: PushCounters }[] {
    return this.destinations.map((d) => ({
      name: d.name as DestinationName,
      counters: this.engine?.countersOf(d.name) ?? noCounters(),
    }));
  }

  destinationHealth(
    name: DestinationName,
  ):
    | DestinationHealth
    | { state: 'failing'; lastError: { message: string; fix?: string } }
    | undefined {
    const problem = this.problems.get(name);
    if (problem) return { state: 'failing', lastError: problem };
    return this.engine?.healthOf(name);
  }

  get held(): HeldAlert | undefined {
    return this.heldAlert;
  }

  async confirmDeletions(): Promise<number> {
    this.heldAlert = undefined;
    return (await this.intake?.confirm()) ?? 0;
  }

  async discardDeletions(): Promise<number> {
    this.heldAlert = undefined;
    return (await this.intake?.discard()) ?? 0;
  }

  bandwidthState(): BandwidthState | undefined {
    return this.bandwidth?.current();
  }

  async setBandwidth(rate: string | null, until?: Date): Promise<BandwidthState | undefined> {
    return this.bandwidth?.override(rate, until);
  }

  private async sample(): Promise<void> {
    for (const d of this.destinations) {
      try {
        const total = (await this.rcd!.stats(`push/${d.name}`)).bytes;
        const prev = this.lastBytes.get(d.name) ?? 0;
        this.lastBytes.set(d.name, total);
        const list = this.samples.get(d.name) ?? [];
        list.push({ at: Date.now(), bytes: Math.max(0, total - prev) });
        if (list.length > 1440) list.shift();
        this.samples.set(d.name, list);
      } catch {
        /* rclone restarting: the next sample catches up */
      }
    }
  }

  /** Bytes sent per destination per minute over the last day. */
  bandwidthHistory(): Record<string, { at: number; bytes: number }[]> {
    return Object.fromEntries(this.samples);
  }

  get running(): boolean {
    return this.rcd !== undefined;
  }

  /** After a configuration change: everything is set up again from the new configuration. */
  async restart(): Promise<void> {
    await this.stop();
    this.problems.clear();
    await this.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.trashTimer);
    clearTimeout(this.metadataTimer);
    clearInterval(this.sampler);
    for (const run of this.sources) run.watcher?.close();
    await Promise.allSettled(this.sources.map((s) => s.chain));
    this.bandwidth?.stop();
    await this.engine?.stop();
    await this.progress.stop();
    await this.rcd?.stop();
    this.rcd = undefined;
    this.lastBytes.clear();
    this.sources = [];
  }
}
