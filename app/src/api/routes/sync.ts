import { z } from 'zod';
import { rateProblem } from '../../push/bandwidth.js';
import { pushProgress, pushTotals } from '../../push/progress.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { route } from '../routes.js';

const bandwidthView = z
  .object({
    limit: z.string().describe('The limit in force, e.g. `1M` (bytes per second) or `off`.'),
    source: z.enum(['config', 'schedule', 'override']),
    until: z.string().nullable().describe('When it next changes, if known.'),
  })
  .meta({ id: 'Bandwidth' });

export const syncRoutes = (deps: ApiDeps) => {
  const sync = () => {
    if (!deps.sync) {
      throw new ApiError(
        503,
        'push_not_running',
        'The push half of the daemon is not running.',
        'The log says why it did not start (rclone missing, say); fix that and restart the daemon.',
      );
    }
    return deps.sync;
  };
  const bandwidth = () => {
    const b = sync().bandwidthState();
    if (!b) throw new ApiError(503, 'push_not_running', 'The bandwidth limit is not known yet.');
    return { limit: b.limit, source: b.source, until: b.until ? b.until.toISOString() : null };
  };
  const sourceParam = (name: string) => {
    if (name !== 'google_drive' && name !== 'google_photos') {
      throw new ApiError(
        404,
        'not_found',
        `No source "${name}".`,
        'The sources are google_drive and google_photos.',
      );
    }
    return name;
  };
  return [
    route({
      method: 'get',
      path: '/api/destinations',
      summary:
        'Each enabled destination: health, backlog, last success, what it holds verified, the error with its fix.',
      tag: 'sync',
      auth: true,
      response: z.object({
        destinations: z.array(
          z.object({
            name: z.string(),
            type: z.string(),
            target: z.string(),
            health: z.enum(['ok', 'failing', 'unknown']),
            last_success_at: z.string().nullable(),
            error: z.object({ message: z.string(), fix: z.string().optional() }).nullable(),
            backlog: z.object({
              pending: z.number(),
              running: z.number(),
              failed: z.number(),
              held: z.number(),
            }),
            files: z.number().describe('Files verified at the destination.'),
            bytes: z.number(),
            bytes_sent: z
              .number()
              .describe('Bytes rclone sent to it in total (uploads and server-side copies).'),
            last_activity_at: z.string().nullable().describe('When something was last sent to it.'),
          }),
        ),
      }),
      handler: async () => {
        const status = await deps.status();
        const totals = await deps.state.destinationFiles.totals();
        const sent = await pushTotals(deps.state.settings, deps.sync?.progress.totals());
        return {
          destinations: await Promise.all(
            status.destinations.map(async (d) => {
              const t = totals.find((x) => x.destination === d.name);
              return {
                name: d.name,
                type: d.type,
                target: d.target,
                health: d.health,
                last_success_at: d.last_success_at,
                error: d.error,
                backlog: await deps.state.queue.counts(d.name),
                files: t?.files ?? 0,
                bytes: t?.bytes ?? 0,
                bytes_sent: sent[d.name]?.bytes_sent ?? 0,
                last_activity_at: sent[d.name]?.last_activity_at ?? null,
              };
            }),
          ),
        };
      },
    }),
    route({
      method: 'post',
      path: '/api/sync/pause/:source',
      summary:
        'Pauses a source (google_drive, google_photos): it is neither pulled from Google nor watched, and nothing new of it is pushed until it is resumed.',
      tag: 'sync',
      auth: true,
      response: z.object({ source: z.string(), paused: z.boolean() }),
      handler: ({ params }) => {
        const name = sourceParam(params.source!);
        if (!sync().pauseSource(name))
          throw new ApiError(409, 'not_enabled', `${name} is not enabled.`);
        return { source: name, paused: true };
      },
    }),
    route({
      method: 'post',
      path: '/api/sync/resume/:source',
      summary:
        'Pulls and watches a paused source again, at once, and catches up with what changed meanwhile.',
      tag: 'sync',
      auth: true,
      response: z.object({ source: z.string(), paused: z.boolean() }),
      handler: ({ params }) => {
        const name = sourceParam(params.source!);
        if (!sync().resumeSource(name))
          throw new ApiError(409, 'not_enabled', `${name} is not enabled.`);
        // What changed at Google meanwhile comes now, not at the next poll.
        if (name === 'google_drive') void deps.drive?.pollNow();
        return { source: name, paused: false };
      },
    }),
    route({
      method: 'post',
      path: '/api/sync/stop',
      summary: 'Stops watching and pushing (the queue keeps what is pending; nothing is lost).',
      tag: 'sync',
      auth: true,
      response: z.object({ running: z.boolean() }),
      handler: async () => {
        await sync().stop();
        deps.logger.child({ source: 'sync' }).warn('watching and pushing stopped through the API');
        return { running: false };
      },
    }),
    route({
      method: 'post',
      path: '/api/sync/start',
      summary: 'Starts watching and pushing again, catching up with what changed meanwhile.',
      tag: 'sync',
      auth: true,
      response: z.object({ running: z.boolean() }),
      handler: async () => {
        if (!sync().running) await sync().start();
        deps.logger.child({ source: 'sync' }).info('watching and pushing started through the API');
        return { running: true };
      },
    }),
    route({
      method: 'get',
      path: '/api/sync/progress',
      summary:
        'What each destination is sending now: files in flight with their progress, speed, backlog done and left, errors; totals that survive restarts.',
      tag: 'sync',
      auth: true,
      response: pushProgress,
      handler: () => sync().progress.view(),
    }),
    route({
      method: 'get',
      path: '/api/metrics/storage',
      summary: 'Files and bytes per source on the mirror, and verified at each destination.',
      tag: 'metrics',
      auth: true,
      response: z.object({
        sources: z.array(z.object({ source: z.string(), files: z.number(), bytes: z.number() })),
        destinations: z.array(
          z.object({
            destination: z.string(),
            files: z.number(),
            bytes: z.number(),
            last_success_at: z.string().nullable(),
          }),
        ),
      }),
      handler: async () => ({
        sources: await deps.state.files.totals(),
        destinations: (await deps.state.destinationFiles.totals()).map((d) => ({
          ...d,
          last_success_at: d.last_success_at ? new Date(d.last_success_at).toISOString() : null,
        })),
      }),
    }),
    route({
      method: 'get',
      path: '/api/metrics/bandwidth',
      summary: 'Bytes sent to each destination per minute over the last day.',
      tag: 'metrics',
      auth: true,
      response: z.object({
        destinations: z.record(
          z.string(),
          z.array(z.object({ at: z.string(), bytes: z.number() })),
        ),
      }),
      handler: () => ({
        destinations: Object.fromEntries(
          Object.entries(sync().bandwidthHistory()).map(([k, v]) => [
            k,
            v.map((p) => ({ at: new Date(p.at).toISOString(), bytes: p.bytes })),
          ]),
        ),
      }),
    }),
    route({
      method: 'post',
      path: '/api/sync/force',
      summary:
        'Compares the whole mirror with the state now and pushes whatever differs (a full sync).',
      tag: 'sync',
      auth: true,
      response: z.object({ ok: z.literal(true) }),
      handler: () => {
        sync().force();
        deps.logger.child({ source: 'sync' }).info('full sync requested through the API');
        return { ok: true as const };
      },
    }),
    route({
      method: 'get',
      path: '/api/sync/bandwidth',
      summary: 'The bandwidth limit in force, and where it comes from.',
      tag: 'sync',
      auth: true,
      response: bandwidthView,
      handler: bandwidth,
    }),
    route({
      method: 'put',
      path: '/api/sync/bandwidth',
      summary:
        'Sets the limit now, without a restart, until the next change of the schedule (or `until`); `limit: null` returns to the schedule.',
      tag: 'sync',
      auth: true,
      body: z.object({
        limit: z
          .string()
          .nullable()
          .refine((v) => v === null || !rateProblem(v), {
            message: 'expected a rate such as 512k, 1M, 10M or off',
          }),
        until: z.iso.datetime({ offset: true }).optional(),
      }),
      response: bandwidthView,
      handler: async ({ body }) => {
        await sync().setBandwidth(body.limit, body.until ? new Date(body.until) : undefined);
        deps.logger
          .child({ source: 'sync' })
          .info(
            { limit: body.limit },
            `bandwidth limit set to ${body.limit ?? 'the schedule'} through the API`,
          );
        return bandwidth();
      },
    }),
    route({
      method: 'get',
      path: '/api/sync/deletions',
      summary: 'Deletions held by the mass-deletion guard, waiting for the owner.',
      tag: 'sync',
      auth: true,
      response: z.object({
        held: z.number(),
        alert: z
          .object({
            deletions: z.number(),
            files: z.number(),
            message: z.string(),
            fix: z.string(),
          })
          .nullable(),
        paths: z.array(z.string()).describe('The first 1000 held paths.'),
      }),
      handler: async () => {
        const items = await deps.state.queue.list({ state: 'held', limit: 1000 });
        return {
          held: (await deps.state.queue.counts()).held,
          alert: sync().held ?? null,
          paths: [...new Set(items.map((i) => i.rel_path))],
        };
      },
    }),
    route({
      method: 'post',
      path: '/api/sync/deletions/confirm',
      summary:
        'The owner confirms the held deletions: the files go to the trash at the destinations.',
      tag: 'sync',
      auth: true,
      response: z.object({ released: z.number() }),
      handler: async () => {
        const released = await sync().confirmDeletions();
        deps.logger
          .child({ source: 'guard' })
          .warn({ released }, `held deletions confirmed through the API (${released} queue items)`);
        return { released };
      },
    }),
    route({
      method: 'post',
      path: '/api/sync/deletions/discard',
      summary: 'The owner refuses the held deletions: the destinations keep those files.',
      tag: 'sync',
      auth: true,
      response: z.object({ discarded: z.number() }),
      handler: async () => {
        const discarded = await sync().discardDeletions();
        deps.logger
          .child({ source: 'guard' })
          .warn(
            { discarded },
            `held deletions discarded through the API (${discarded} queue items)`,
          );
        return { discarded };
      },
    }),
  ];
};
