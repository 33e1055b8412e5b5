/**
 * One complete pass (`backupd sync --once`, and the panel's "sync now"): pull every enabled
 * source into the mirror, then push through the same machinery as the running daemon (the
 * mirror reconciled with the state, the durable queue, one rclone rcd and a worker per
 * destination: server-side moves and copies, verification, the trash), wait until every
 * destination is done or has failed, copy the daemon's own metadata to `.backupd/`, and record
 * the run. `--dry-run` says what would be sent, moved and trashed, and changes nothing.
 */
import { readdir } from 'node:fs/promises';
import { basename } from 'node:path';
import type { ConfigView, DestinationName, Runtime, SourceName } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { reconcile } from '../mirror/reconcile.js';
import { BOOKKEEPING_DIR, globExcluder } from '../mirror/watcher.js';
import { describeDestination, type DestinationRemote } from '../push/destinations.js';
import { pushMetadata } from '../push/metadata.js';
import type { NewChange, State } from '../state/index.js';
import { DESTINATION_NAMES, SOURCE_NAMES, type DestinationOutcome } from '../status/index.js';
import { SyncService } from './service.js';

/** Something that fills a mirror folder from Google (Drive, Photos). */
export interface Puller {
  source: SourceName;
  pull(
    signal?: AbortSignal,
  ): Promise<{ ok: boolean; note: string; error?: { message: string; fix?: string } }>;
}

export interface SyncOptions {
  dryRun?: boolean;
  /** Push a mirror folder even when it is empty while the state knows files in it. */
  allowEmptySource?: boolean;
  /** Release deletions the mass-deletion guard holds (the owner has looked). */
  confirmDeletions?: boolean;
  pullers?: Puller[];
  signal?: AbortSignal;
  now?: () => Date;
}

export interface SourceOutcome {
  enabled: boolean;
  pull: 'ok' | 'failed' | 'unavailable' | 'disabled';
  note: string;
  error?: { message: string; fix?: string };
}

export interface PushOutcome extends DestinationOutcome {
  target: string;
  /** Files sent: uploaded, or copied server-side from content the destination held. */
  transferred: number;
  bytes: number;
  /** Of those, copied at the destination without an upload. */
  copied: number;
  moved: number;
  /** Earlier versions that went to the trash: deleted files, and files replaced. */
  trashed: number;
  verified: number;
  /** Changes still waiting for this destination after the pass (failed, or held). */
  left: number;
  /** On a dry run: what would be sent, moved, and deleted into the trash. */
  would_send?: string[];
  would_move?: { from: string; to: string }[];
  would_trash?: string[];
}

export interface SyncSummary {
  ok: boolean;
  run_id: number;
  dry_run: boolean;
  started_at: string;
  finished_at: string;
  sources: Partial<Record<SourceName, SourceOutcome>>;
  destinations: Partial<Record<DestinationName, PushOutcome>>;
}

type Deps = { runtime: Runtime; state: State; logger: Logger; configView: () => ConfigView };

export async function syncOnce(deps: Deps, opts: SyncOptions = {}): Promise<SyncSummary> {
  const { state } = deps;
  const log = deps.logger.child({ source: 'sync' });
  const now = opts.now ?? (() => new Date());
  const startedAt = now();
  const run = await state.runs.start('sync', startedAt.getTime());
  log.info({ run_id: run.id, dry_run: !!opts.dryRun }, 'sync pass started');

  try {
    return await runPass(deps, opts, run.id, startedAt, now);
  } catch (err) {
    // The run never stays 'running' after the pass is gone.
    await state.runs.finish(
      run.id,
      'failed',
      { ok: false, error: (err as Error).message },
      now().getTime(),
    );
    log.error({ err, run_id: run.id }, `sync pass stopped: ${(err as Error).message}`);
    throw err;
  }
}

async function pullAll(deps: Deps, opts: SyncOptions): Promise<SyncSummary['sources']> {
  const cfg = deps.runtime.config;
  const log = deps.logger.child({ source: 'sync' });
  const sources: SyncSummary['sources'] = {};
  for (const name of SOURCE_NAMES) {
    if (!cfg.sources[name].enabled) {
      sources[name] = { enabled: false, pull: 'disabled', note: 'disabled in the configuration' };
      continue;
    }
    const puller = opts.pullers?.find((p) => p.source === name);
    if (!puller) {
      sources[name] = {
        enabled: true,
        pull: 'unavailable',
        note: 'pulling from Google is not part of this version yet; what is on the mirror is pushed',
      };
      continue;
    }
    try {
      const r = await puller.pull(opts.signal);
      sources[name] = {
        enabled: true,
        pull: r.ok ? 'ok' : 'failed',
        note: r.note,
        ...(r.error ? { error: r.error } : {}),
      };
    } catch (err) {
      sources[name] = {
        enabled: true,
        pull: 'failed',
        note: 'the pull stopped',
        error: { message: (err as Error).message },
      };
      log.error({ err, source_name: name }, 'pull failed');
    }
  }
  return sources;
}

/**
 * A mirror folder that is missing, or empty while the state knows files in it, is most often a
 * data disk that is not mounted: pushing it would send every backed-up file to the trash.
 */
async function unsafeMirror(
  deps: Deps,
  source: SourceName,
  allowEmpty: boolean,
): Promise<{ message: string; fix: string } | undefined> {
  const dir = deps.runtime.sourcePath(source);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return {
      message: `the mirror folder ${dir} does not exist`,
      fix: 'Check that the data disk is mounted; nothing was pushed, so nothing at the destination was touched.',
    };
  }
  if (allowEmpty || entries.some((e) => e !== BOOKKEEPING_DIR)) return undefined;
  for await (const known of deps.state.files.present(source)) {
    void known;
    return {
      message: `the mirror folder ${dir} is empty, but the backups hold files from it`,
      fix: 'If the data disk is not mounted, mount it. If everything was really deleted, push once with --allow-empty-source; the files will go to the trash, not away.',
    };
  }
  return undefined;
}

async function runPass(
  deps: Deps,
  opts: SyncOptions,
  runId: number,
  startedAt: Date,
  now: () => Date,
): Promise<SyncSummary> {
  const { runtime, state } = deps;
  const log = deps.logger.child({ source: 'sync' });
  const cfg = runtime.config;
  const sources = await pullAll(deps, opts);

  const enabledSources = SOURCE_NAMES.filter((s) => cfg.sources[s].enabled);
  const unsafe = new Map<SourceName, { message: string; fix: string }>();
  for (const s of enabledSources) {
    const problem = await unsafeMirror(deps, s, !!opts.allowEmptySource);
    if (problem) unsafe.set(s, problem);
  }
  const pushable = enabledSources.filter((s) => !unsafe.has(s));
  const firstProblem = [...unsafe.values()][0];

  const destinations: SyncSummary['destinations'] = {};
  const usable: { name: DestinationName; remote: DestinationRemote }[] = [];
  for (const name of DESTINATION_NAMES.filter((d) => cfg.destinations[d].enabled)) {
    const d = describeDestination(runtime, name);
    destinations[name] = {
      ok: !d.problem && !firstProblem,
      target: d.target,
      transferred: 0,
      bytes: 0,
      copied: 0,
      moved: 0,
      trashed: 0,
      verified: 0,
      left: 0,
      finished_at: '',
      ...(d.problem || firstProblem ? { error: d.problem ?? firstProblem } : {}),
    };
    if (d.remote) usable.push({ name, remote: d.remote });
  }

  if (opts.dryRun) {
    await planPass(deps, pushable, usable, destinations);
  } else {
    const service = new SyncService({ runtime: () => runtime, state, logger: deps.logger });
    const stop = () => void service.stop();
    opts.signal?.addEventListener('abort', stop, { once: true });
    try {
      await service.start({ once: true, sources: pushable });
      await service.settled();
      if (opts.confirmDeletions) await service.confirmDeletions();
      await service.idle(Infinity);
      opts.signal?.throwIfAborted();
      for (const { name, counters } of service.pushedTo()) {
        const outcome = destinations[name]!;
        const c = await state.queue.counts(name);
        const health = service.destinationHealth(name);
        Object.assign(outcome, {
          transferred: counters.uploaded + counters.copied,
          bytes: counters.bytes,
          copied: counters.copied,
          moved: counters.moved,
          trashed: counters.trashed,
          verified: counters.verified,
          left: c.pending + c.failed + c.held + c.running,
        });
        if (c.held > 0 && !outcome.error)
          outcome.error = service.held ?? {
            message: `${c.held} deletion(s) are held by the mass-deletion guard`,
            fix: 'If they are meant, run again with --confirm-deletions (or confirm them in the panel).',
          };
        else if (outcome.left > 0 && !outcome.error)
          outcome.error = health?.lastError
            ? { message: health.lastError.message, fix: health.lastError.fix }
            : { message: `${outcome.left} change(s) could not be pushed` };
        if (outcome.error) outcome.ok = false;
      }
    } finally {
      opts.signal?.removeEventListener('abort', stop);
      await service.stop();
    }
    for (const { name, remote } of usable) {
      const outcome = destinations[name]!;
      if (!outcome.ok) continue;
      const meta = await pushMetadata(
        remote,
        state,
        deps.configView(),
        pushable.map((s) => runtime.sourcePath(s)),
      );
      if (!meta.ok) Object.assign(outcome, { ok: false, error: meta.error });
    }
  }

  for (const [name, outcome] of Object.entries(destinations)) {
    outcome.finished_at = now().toISOString();
    if (outcome.ok)
      log.info(
        {
          destination: name,
          transferred: outcome.transferred,
          moved: outcome.moved,
          trashed: outcome.trashed,
          verified: outcome.verified,
        },
        opts.dryRun ? `planned the push to ${name}` : `pushed to ${name}`,
      );
    else
      log.error(
        { destination: name, error: outcome.error },
        `push to ${name} failed: ${outcome.error?.message}`,
      );
  }

  const ok =
    Object.values(destinations).every((d) => d.ok) &&
    Object.values(sources).every((s) => s.pull !== 'failed');
  const finishedAt = now();
  const summary: SyncSummary = {
    ok,
    run_id: runId,
    dry_run: !!opts.dryRun,
    started_at: startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    sources,
    destinations,
  };
  if (!opts.dryRun) {
    const lastOk = JSON.parse(
      (await state.settings.get('destinations.last_success')) ?? '{}',
    ) as Record<string, string>;
    for (const [name, d] of Object.entries(destinations)) if (d.ok) lastOk[name] = d.finished_at;
    await state.settings.set('destinations.last_success', JSON.stringify(lastOk));
  }
  await state.runs.finish(
    runId,
    ok ? 'succeeded' : 'failed',
    summary as unknown as Record<string, unknown>,
    finishedAt.getTime(),
  );
  log.info({ run_id: runId, ok }, ok ? 'sync pass finished' : 'sync pass finished with errors');
  return summary;
}

/**
 * What a pass would do, from the mirror, the state and the queue, without changing any of
 * them: the mirror is compared with the state as a real pass would (reading only what changed),
 * and each change is weighed against what each destination holds.
 */
async function planPass(
  deps: Deps,
  sources: SourceName[],
  usable: { name: DestinationName }[],
  destinations: SyncSummary['destinations'],
): Promise<void> {
  const { runtime, state } = deps;
  for (const source of sources) {
    const cfg = runtime.config.sources[source];
    const root = runtime.sourcePath(source);
    const changes: NewChange[] = [];
    await reconcile({
      source,
      root,
      state,
      exclude: globExcluder(cfg.exclude_patterns, cfg.exclude_paths),
      dryRun: true,
      onChanges: async (c) => void changes.push(...c),
    });
    const folder = basename(root);
    const shown = (rel: string) => `${folder}/${rel}`;
    for (const { name } of usable) {
      const outcome = destinations[name]!;
      const send = new Set<string>();
      const trash = new Set<string>();
      const moves = new Map<string, string>();
      const gone = new Set<string>();
      const consider = async (c: NewChange) => {
        if (c.op === 'upsert') send.add(c.rel_path);
        else if (c.op === 'delete') {
          gone.add(c.rel_path);
          send.delete(c.rel_path);
          if (await state.destinationFiles.get(name, source, c.rel_path)) trash.add(c.rel_path);
        } else if (c.from_path) {
          gone.add(c.from_path);
          const held = await state.destinationFiles.get(name, source, c.from_path);
          if (c.is_dir || held?.remote_path === c.from_path) moves.set(c.from_path, c.rel_path);
          else send.add(c.rel_path);
        }
      };
      // Changes queued earlier and not pushed yet, then what the mirror shows now.
      for (const item of await state.queue.list({ destination: name, limit: 1_000_000 }))
        if (item.source === source && item.state !== 'done')
          await consider({ ...item, from_path: item.from_path ?? undefined });
      for (const c of changes) await consider(c);
      for await (const f of state.files.missingAt(name, source))
        if (!gone.has(f.rel_path)) send.add(f.rel_path);
      outcome.would_send = [...(outcome.would_send ?? []), ...[...send].sort().map(shown)];
      outcome.would_move = [
        ...(outcome.would_move ?? []),
        ...[...moves].map(([from, to]) => ({ from: shown(from), to: shown(to) })),
      ];
      outcome.would_trash = [...(outcome.would_trash ?? []), ...[...trash].sort().map(shown)];
      outcome.transferred = outcome.would_send.length;
      outcome.moved = outcome.would_move.length;
      outcome.trashed = outcome.would_trash.length;
    }
  }
}
