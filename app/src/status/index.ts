/**
 * What the appliance is doing, from the state and the configuration: served by
 * `GET /api/status`, printed by `backupd status`, shown on the panel's overview.
 */
import { z } from 'zod';
import type { Runtime, DestinationName, SourceName } from '../config/index.js';
import type { RunRecord, State } from '../state/index.js';
import { describeDestination } from '../push/destinations.js';
import { pushTotals, type PushTotals } from '../push/progress.js';

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);
const problem = z.object({ message: z.string(), fix: z.string().optional() }).nullable();

export const runView = z
  .object({
    id: z.number(),
    kind: z.string(),
    started_at: z.string(),
    finished_at: z.string().nullable(),
    status: z.enum(['running', 'succeeded', 'failed', 'interrupted']),
    summary: z.record(z.string(), z.unknown()).nullable(),
  })
  .meta({ id: 'Run' });

export const alert = z
  .object({ code: z.string(), message: z.string(), fix: z.string() })
  .meta({ id: 'Alert' });
export type Alert = z.infer<typeof alert>;

export const statusReport = z
  .object({
    state: z.enum(['idle', 'syncing', 'paused', 'error']),
    version: z.string(),
    started_at: z.string(),
    uptime_seconds: z.number(),
    sources: z.array(
      z.object({
        name: z.string(),
        enabled: z.boolean(),
        local_path: z.string(),
        files: z.number(),
        bytes: z.number(),
        accounts: z.array(
          z.object({
            email: z.string(),
            status: z.enum(['ok', 'needs_sign_in', 'error', 'paused']),
            last_pass_at: z.string().nullable(),
            error: problem,
          }),
        ),
      }),
    ),
    destinations: z.array(
      z.object({
        name: z.string(),
        type: z.string(),
        enabled: z.boolean(),
        target: z.string(),
        health: z.enum(['ok', 'failing', 'unknown']),
        last_success_at: z.string().nullable(),
        error: problem,
        bytes_sent: z.number().describe('Bytes sent to it in total, across restarts.'),
        last_activity_at: z.string().nullable().describe('When something was last sent to it.'),
      }),
    ),
    queue: z.object({
      pending: z.number(),
      running: z.number(),
      failed: z.number(),
      held: z.number(),
    }),
    last_run: runView.nullable(),
    mode: z
      .enum(['running', 'standby'])
      .describe(
        'standby: the appliance waits for its data disk (nothing is pulled or pushed); running: normal.',
      ),
    alerts: z
      .array(alert)
      .describe('What needs the owner now, each with how to fix it (e.g. data_disk_missing).'),
  })
  .meta({ id: 'Status' });
export type StatusReport = z.infer<typeof statusReport>;

export const toRunView = (r: RunRecord): z.infer<typeof runView> => ({
  id: r.id,
  kind: r.kind,
  started_at: iso(r.started_at)!,
  finished_at: iso(r.finished_at),
  status: r.status,
  summary: r.summary,
});

export const SOURCE_NAMES: SourceName[] = ['google_drive', 'google_photos'];
export const DESTINATION_NAMES: DestinationName[] = ['aws_s3', 'eu_provider', 'local'];

/** The per-destination outcome a sync run records in its summary. */
export interface DestinationOutcome {
  ok: boolean;
  finished_at: string;
  error?: { message: string; fix?: string };
}

export async function collectStatus(deps: {
  runtime: Runtime;
  state: State;
  version: string;
  startedAt: number;
  now?: number;
  busy?: boolean;
  /** Live health of each destination from the push workers, when they run. */
  health?: (name: DestinationName) =>
    | {
        state: 'ok' | 'failing' | 'paused';
        lastError: { message: string; fix?: string } | null;
        lastSuccessAt?: number | null;
      }
    | undefined;
  /** Live totals of bytes sent from the push progress, newer than the stored ones. */
  sent?: () => Record<string, PushTotals>;
  /** The appliance waiting for its data disk, and its alerts. */
  mode?: 'running' | 'standby';
  alerts?: Alert[];
}): Promise<StatusReport> {
  const { runtime, state } = deps;
  const cfg = runtime.config;
  const now = deps.now ?? Date.now();
  const [accounts, fileTotals, queue, lastRun, lastSync, verified] = await Promise.all([
    state.accounts.list(),
    state.files.totals(),
    state.queue.counts(),
    state.runs.latest(),
    state.runs.latest('sync'),
    state.destinationFiles.totals(),
  ]);
  const outcomes = (lastSync?.summary?.destinations ?? {}) as Record<string, DestinationOutcome>;
  const sent = await pushTotals(state.settings, deps.sent?.());
  const lastOk = JSON.parse(
    (await state.settings.get('destinations.last_success')) ?? '{}',
  ) as Record<string, string>;

  const sources = SOURCE_NAMES.map((name) => {
    const totals = fileTotals.find((t) => t.source === name);
    return {
      name,
      enabled: cfg.sources[name].enabled,
      local_path: runtime.sourcePath(name),
      files: totals?.files ?? 0,
      bytes: totals?.bytes ?? 0,
      accounts: accounts
        .filter((a) => a.source === name)
        .map((a) => ({
          email: a.email,
          status: a.status,
          last_pass_at: iso(a.last_pass_at),
          error: a.error_message
            ? { message: a.error_message, ...(a.error_fix ? { fix: a.error_fix } : {}) }
            : null,
        })),
    };
  });

  const destinations = DESTINATION_NAMES.filter((name) => cfg.destinations[name].enabled).map(
    (name) => {
      const d = describeDestination(runtime, name);
      const outcome = outcomes[name];
      const live = deps.health?.(name);
      const lastVerified = verified.find((t) => t.destination === name)?.last_success_at ?? null;
      const lastSuccess = [
        lastOk[name] ? Date.parse(lastOk[name]) : null,
        live?.lastSuccessAt ?? null,
        lastVerified,
      ]
        .filter((t): t is number => !!t)
        .sort((a, b) => b - a)[0];
      const failing = live ? live.state !== 'ok' : outcome ? !outcome.ok : false;
      return {
        name,
        type: d.type,
        enabled: true,
        target: d.target,
        health: failing
          ? ('failing' as const)
          : live || outcome
            ? ('ok' as const)
            : ('unknown' as const),
        last_success_at: lastSuccess ? new Date(lastSuccess).toISOString() : null,
        error: live
          ? live.state === 'ok'
            ? null
            : (live.lastError ?? { message: `${name} is ${live.state}` })
          : outcome && !outcome.ok
            ? (outcome.error ?? { message: 'the last push failed' })
            : null,
        bytes_sent: sent[name]?.bytes_sent ?? 0,
        last_activity_at: sent[name]?.last_activity_at ?? null,
      };
    },
  );

  const anyFailing =
    destinations.some((d) => d.health === 'failing') ||
    accounts.some((a) => a.status === 'error' || a.status === 'needs_sign_in');
  const running = deps.busy || lastRun?.status === 'running' || queue.pending + queue.running > 0;
  const mode = deps.mode ?? 'running';
  return {
    state: mode === 'standby' ? 'paused' : running ? 'syncing' : anyFailing ? 'error' : 'idle',
    version: deps.version,
    started_at: iso(deps.startedAt)!,
    uptime_seconds: Math.round((now - deps.startedAt) / 1000),
    sources,
    destinations,
    queue,
    last_run: lastRun ? toRunView(lastRun) : null,
    mode,
    alerts: deps.alerts ?? [],
  };
}
