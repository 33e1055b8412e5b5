import { z } from 'zod';
import { SOURCE_NAMES } from '../../status/index.js';
import type { ApiDeps } from '../deps.js';
import { route } from '../routes.js';

const problem = z.object({ message: z.string(), fix: z.string().optional() });

export const sourceRoutes = (deps: ApiDeps) => [
  route({
    method: 'get',
    path: '/api/sources',
    summary:
      'Each source and each of its accounts: state, last pass, counts, bytes, the error with its fix.',
    tag: 'sources',
    auth: true,
    response: z.object({
      sources: z.array(
        z.object({
          source: z.string(),
          enabled: z.boolean(),
          paused: z
            .boolean()
            .describe('Paused with POST /api/sync/pause/:source: no pull, no push.'),
          poll_interval_seconds: z.number().nullable(),
          accounts: z.array(
            z.object({
              email: z.string(),
              state: z
                .enum(['idle', 'pulling', 'paused', 'needs_sign_in', 'error'])
                .describe('What the pull of this account is doing, or why it does not.'),
              last_pass_at: z.string().nullable(),
              last_pass: z
                .object({
                  kind: z.enum(['first', 'changes']),
                  changes: z.number(),
                  downloaded: z.number(),
                  moved: z.number(),
                  removed: z.number(),
                  failed: z.number(),
                  deferred: z.number(),
                  api_calls: z.number(),
                })
                .nullable()
                .describe('What the last pass of the running daemon did.'),
              counts: z.object({
                items: z.number().describe('Drive items known (folders, files, forms, shortcuts).'),
                files: z.number().describe('Files and exports on the mirror.'),
                bytes: z.number(),
                failed: z.number(),
                deferred: z.number().describe('Downloads Drive refused for now (quota).'),
                skipped: z
                  .number()
                  .describe('Files Drive will not give (flagged, not downloadable).'),
                recorded: z.number().describe('Forms, sites, maps and shortcuts: metadata only.'),
              }),
              error: problem.nullable(),
            }),
          ),
        }),
      ),
    }),
    handler: async () => {
      const cfg = deps.config.runtime.config;
      return {
        sources: await Promise.all(
          SOURCE_NAMES.map(async (source) => {
            const paused = deps.sync?.sourcePaused(source) ?? false;
            const accounts = await deps.state.accounts.list(source);
            return {
              source,
              enabled: cfg.sources[source].enabled,
              paused,
              poll_interval_seconds:
                source === 'google_drive' ? cfg.sources.google_drive.poll_interval_seconds : null,
              accounts: await Promise.all(
                accounts.map(async (a) => {
                  const act = deps.drive?.activity.get(a.id);
                  const r = act?.last?.result;
                  return {
                    email: a.email,
                    state:
                      a.status === 'needs_sign_in' || a.status === 'error'
                        ? a.status
                        : paused || a.status === 'paused'
                          ? ('paused' as const)
                          : (act?.state ?? 'idle'),
                    last_pass_at: a.last_pass_at ? new Date(a.last_pass_at).toISOString() : null,
                    last_pass: r
                      ? {
                          kind: r.kind,
                          changes: r.changes,
                          downloaded: r.downloaded,
                          moved: r.moved,
                          removed: r.removed,
                          failed: r.failed,
                          deferred: r.deferred,
                          api_calls: r.apiCalls,
                        }
                      : null,
                    counts: await deps.state.driveItems.counts(a.id),
                    error: a.error_message
                      ? { message: a.error_message, ...(a.error_fix ? { fix: a.error_fix } : {}) }
                      : null,
                  };
                }),
              ),
            };
          }),
        ),
      };
    },
  }),
];
