import { z } from 'zod';
import { statusReport } from '../../status/index.js';
import type { ApiDeps } from '../deps.js';
import { route } from '../routes.js';

export const systemRoutes = (deps: ApiDeps) => [
  route({
    method: 'get',
    path: '/api/health',
    summary:
      'Health check: 200 while the daemon runs and its state answers; mode "standby" while the appliance waits for its data disk.',
    tag: 'system',
    auth: false,
    response: z.object({ status: z.literal('ok'), mode: z.enum(['running', 'standby']) }),
    handler: async () => {
      await deps.state.settings.get('health');
      return { status: 'ok' as const, mode: deps.mode?.() ?? ('running' as const) };
    },
  }),
  route({
    method: 'get',
    path: '/api/version',
    summary: 'The daemon version.',
    tag: 'system',
    auth: false,
    response: z.object({ name: z.string(), version: z.string(), node: z.string() }),
    handler: () => ({ name: 'backupd', version: deps.version, node: process.version }),
  }),
  route({
    method: 'get',
    path: '/api/status',
    summary: 'What the appliance is doing: sources, destinations, queue, last run.',
    tag: 'system',
    auth: true,
    response: statusReport,
    handler: () => deps.status(),
  }),
];
