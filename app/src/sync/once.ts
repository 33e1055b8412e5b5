/**
 * One complete pass (`backupd sync --once`, and the panel's "sync now"): pull every enabled
 * source into the mirror, push every mirror folder to every enabled destination, verify what
 * was sent, copy the daemon's own metadata to `.backupd/`, and record the run.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { stringify } from 'yaml';
import type { ConfigView, DestinationName, Runtime, SourceName } from '../config/index.js';
import type { Logger } from '../log/index.js';
import { describeDestination, type DestinationRemote } from '../push/destinations.js';
import { runRclone } from '../push/rclone.js';
import { pushTree, remotePath } from '../push/tree.js';
import type { State } from '../state/index.js';
import { DESTINATION_NAMES, SOURCE_NAMES, type DestinationOutcome } from '../status/index.js';

/** Something that fills a mirror folder from Google (Drive, Photos). */
export interface Puller {
  source: SourceName;
  pull(
    signal?: AbortSignal,
  ): Promise<{ ok: boolean; note: string; error?: { message: string; fix?: string } }>;
}

export interface SyncOptions {
  dryRun?: boolean;
  allowEmptySource?: boolean;
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
  transferred: number;
  bytes: number;
  trashed: number;
  verified: number;
  /** What would be sent, and moved to the trash, on a dry run. */
  would_send?: string[];
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

export async function syncOnce(
  deps: { runtime: Runtime; state: State; logger: Logger; configView: () => ConfigView },
  opts: SyncOptions = {},
): Promise<SyncSummary> {
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

async function runPass(
  deps: { runtime: Runtime; state: State; logger: Logger; configView: () => ConfigView },
  opts: SyncOptions,
  runId: number,
  startedAt: Date,
  now: () => Date,
): Promise<SyncSummary> {
  const { runtime, state } = deps;
  const log = deps.logger.child({ source: 'sync' });
  const cfg = runtime.config;
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

  const enabledSources = SOURCE_NAMES.filter((s) => cfg.sources[s].enabled);
  const destinations: SyncSummary['destinations'] = {};
  for (const name of DESTINATION_NAMES.filter((d) => cfg.destinations[d].enabled)) {
    const d = describeDestination(runtime, name);
    const outcome: PushOutcome = {
      ok: true,
      target: d.target,
      transferred: 0,
      bytes: 0,
      trashed: 0,
      verified: 0,
      finished_at: '',
    };
    if (!d.remote) {
      Object.assign(outcome, { ok: false, error: d.problem });
    } else {
      for (const source of enabledSources) {
        const r = await pushTree({
          sourceDir: runtime.sourcePath(source),
          remote: d.remote,
          excludePatterns: cfg.sources[source].exclude_patterns,
          excludePaths: cfg.sources[source].exclude_paths,
          retries: cfg.sync.retry_attempts,
          dryRun: !!opts.dryRun,
          now: startedAt,
          allowEmptySource: opts.allowEmptySource,
          signal: opts.signal,
          onLine: (l) => {
            if (l.level === 'error')
              log.warn({ destination: name, object: l.object }, `rclone: ${l.msg}`);
          },
        });
        outcome.transferred += r.transferred.length;
        outcome.bytes += r.bytes;
        outcome.trashed += r.trashed.length;
        outcome.verified += r.verified;
        if (opts.dryRun) {
          const folder = basename(runtime.sourcePath(source));
          outcome.would_send = [
            ...(outcome.would_send ?? []),
            ...r.transferred.map((f) => `${folder}/${f}`),
          ];
          outcome.would_trash = [
            ...(outcome.would_trash ?? []),
            ...r.trashed.map((f) => `${folder}/${f}`),
          ];
        }
        if (!r.ok) {
          outcome.ok = false;
          outcome.error = r.error;
          break;
        }
      }
      if (outcome.ok && !opts.dryRun) {
        const meta = await pushMetadata(d.remote, state, deps.configView());
        if (!meta.ok) Object.assign(outcome, { ok: false, error: meta.error });
      }
    }
    outcome.finished_at = now().toISOString();
    destinations[name] = outcome;
    if (outcome.ok)
      log.info(
        {
          destination: name,
          transferred: outcome.transferred,
          trashed: outcome.trashed,
          verified: outcome.verified,
        },
        `pushed to ${name}`,
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
 * What a new appliance needs to take over from this one: the state (file list, hashes,
 * accounts, history) and the configuration without its secrets, under `.backupd/`.
 */
async function pushMetadata(
  remote: DestinationRemote,
  state: State,
  view: ConfigView,
): Promise<{ ok: boolean; error?: { message: string; fix?: string } }> {
  const dir = await mkdtemp(join(tmpdir(), 'backupd-meta-'));
  try {
    await state.snapshotTo(join(dir, 'state.db'));
    await writeFile(
      join(dir, 'config.yaml'),
      `# Configuration without secrets, written by backupd ${new Date().toISOString()}\n${stringify(view.config)}`,
    );
    const r = await runRclone(['copy', dir, remotePath(remote, '.backupd')], {
      remotes: remote.env,
    });
    return r.code === 0
      ? { ok: true }
      : {
          ok: false,
          error: {
            message: `copying the metadata to .backupd/ failed: ${r.tail.at(-1) ?? r.code}`,
          },
        };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
