import { z } from 'zod';
import { configSchema } from '../../config/index.js';
import type { ApiDeps } from '../deps.js';
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
];
