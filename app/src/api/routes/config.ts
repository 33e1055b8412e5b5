import { z } from 'zod';
import { configSchema } from '../../config/index.js';
import { PROBE_DESTINATIONS, ProbeRequestError, probeDestinations } from '../../push/probe.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { route } from '../routes.js';

const secretStatus = z.object({
  set: z.boolean(),
  origin: z.enum(['env', 'store', 'file']).nullable(),
  env: z.string().nullable(),
});
const configView = z
  .object({
    file: z.string().nullable(),
    config: configSchema.describe('The configuration, secrets left out.'),
    secrets: z
      .record(z.string(), secretStatus)
      .describe('For each secret: whether it is set and where from (never its value).'),
    warnings: z.array(
      z.object({ path: z.string(), line: z.number().optional(), message: z.string() }),
    ),
  })
  .meta({ id: 'ConfigView' });

const probeFix = z.object({
  id: z.string().describe('Fix id, to name in `apply` when `automatic` is true.'),
  description: z.string().describe('Exactly what would change, or what to do by hand.'),
  automatic: z.boolean().describe('Whether backupd can apply it (only when asked to).'),
});
const probeCheck = z.object({
  id: z
    .string()
    .describe(
      'connect, probe, versioning, encryption, lifecycle (S3); host_key, connect, probe, rsync (Storage Box); folder, probe, space, disk (folder); config.',
    ),
  ok: z.boolean(),
  status: z
    .enum(['pass', 'warn', 'fail', 'unsupported', 'skipped'])
    .describe(
      'warn: works, but something recommended is missing; fail: the push cannot work; unsupported: the server does not offer it; skipped: an earlier check failed.',
    ),
  message: z.string(),
  fix: probeFix.optional(),
  duration_ms: z.number(),
  details: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()]))
    .optional(),
});
const probeReport = z
  .object({
    ok: z.boolean().describe('Every check of every destination tested passed.'),
    usable: z.boolean().describe('No check failed: the push can work everywhere.'),
    message: z.string(),
    destinations: z.array(
      z.object({
        name: z.string(),
        type: z.string(),
        target: z.string(),
        enabled: z.boolean(),
        ok: z.boolean(),
        usable: z.boolean(),
        checks: z.array(probeCheck),
        duration_ms: z.number(),
      }),
    ),
    applied: z
      .array(
        z.object({ id: z.string(), ok: z.boolean(), changed: z.boolean(), message: z.string() }),
      )
      .describe(
        'The fixes asked for in `apply`, and what came of each (the checks ran again after).',
      ),
    duration_ms: z.number(),
  })
  .meta({ id: 'ConfigTest' });

export const configRoutes = (deps: ApiDeps) => [
  route({
    method: 'get',
    path: '/api/config',
    summary: 'The configuration, with defaults filled in. Secret values are never returned.',
    tag: 'config',
    auth: true,
    response: configView,
    handler: () => deps.config.view(),
  }),
  route({
    method: 'put',
    path: '/api/config',
    summary:
      'Changes the configuration: the body is merged onto the current one (absent keys keep their value, null returns a key to its default), then validated like `backupd config check`. A secret key given as text goes to the encrypted secrets store (never to the file), null removes it, absent keeps it.',
    tag: 'config',
    auth: true,
    body: z
      .record(z.string(), z.unknown())
      .describe('The configuration (see docs/configuration.md).'),
    response: configView.extend({
      restart_required: z
        .array(z.string())
        .describe('Changed keys that take effect after a restart.'),
    }),
    handler: async ({ body }) => {
      const { view, restartRequired } = await deps.config.update(body);
      deps.logger
        .child({ source: 'config' })
        .info({ restart_required: restartRequired }, 'configuration changed through the API');
      return { ...view, restart_required: restartRequired };
    },
  }),
  route({
    method: 'post',
    path: '/api/config/test',
    summary:
      'Tests each enabled destination (or the one named) for real: credentials, bucket or folder, a probe object written, read back and deleted; for S3 whether versioning, default encryption and a lifecycle rule moving old versions to Glacier are in place; for a Storage Box the host key and rsync. Changes nothing unless a fix id is named in `apply`; the checks then run again.',
    tag: 'config',
    auth: true,
    body: z
      .strictObject({
        destination: z
          .enum(PROBE_DESTINATIONS as [string, ...string[]], {
            error: (issue) =>
              `unknown destination ${JSON.stringify(issue.input)}: the destinations are ${PROBE_DESTINATIONS.join(', ')}`,
          })
          .optional()
          .describe('Test only this destination, even if it is not enabled.'),
        apply: z
          .array(z.string().min(1).max(100))
          .max(20)
          .optional()
          .describe(
            'Fix ids (from an earlier answer) to apply before testing again, e.g. aws_s3.enable_versioning.',
          ),
      })
      .describe('Optional: which destination, and which fixes to apply.'),
    response: probeReport,
    handler: async ({ body, principal }) => {
      const log = deps.logger.child({ source: 'config' });
      const opts = {
        destination: body.destination as (typeof PROBE_DESTINATIONS)[number] | undefined,
        apply: body.apply,
      };
      let report;
      try {
        report = await probeDestinations(deps.config.runtime, opts);
      } catch (err) {
        if (err instanceof ProbeRequestError)
          throw new ApiError(400, err.code, err.message, err.fix);
        throw err;
      }
      for (const a of report.applied) {
        log[a.ok && a.changed ? 'warn' : 'info'](
          { fix: a.id, ok: a.ok, changed: a.changed, by: principal?.via ?? 'open' },
          `fix ${a.id} asked for through the API: ${a.message}`,
        );
      }
      log.info(
        {
          ok: report.ok,
          destinations: report.destinations.map((d) => ({
            name: d.name,
            ok: d.ok,
            failed: d.checks.filter((c) => c.status === 'fail').map((c) => c.id),
          })),
          duration_ms: report.duration_ms,
        },
        `configuration test: ${report.ok ? 'everything passed' : report.message}`,
      );
      return report;
    },
  }),
];
