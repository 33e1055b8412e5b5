import { PassThrough } from 'node:stream';
import { z } from 'zod';
import type { PushProgress } from '../../push/progress.js';
import { LOG_LEVELS, type EventRecord, type LogLevel } from '../../state/index.js';
import type { ApiDeps } from '../deps.js';
import { route } from '../routes.js';

const level = z.enum(LOG_LEVELS as [LogLevel, ...LogLevel[]]);
const isoTime = z.iso
  .datetime({ offset: true })
  .describe('ISO 8601 time, e.g. 2026-11-24T08:00:00Z');
const filters = {
  level: level.optional().describe('This level and above.'),
  source: z
    .string()
    .max(64)
    .optional()
    .describe('Only events from this part of the daemon (api, auth, sync, ...).'),
};

export const logEntry = z
  .object({
    id: z.number(),
    time: z.string(),
    level,
    source: z.string(),
    message: z.string(),
    data: z.record(z.string(), z.unknown()).nullable(),
  })
  .meta({ id: 'LogEntry' });

export const toEntry = (e: EventRecord) => ({ ...e, time: new Date(e.time).toISOString() });

const matches = (e: EventRecord, f: { level?: LogLevel; source?: string }) =>
  (!f.level || LOG_LEVELS.indexOf(e.level) >= LOG_LEVELS.indexOf(f.level)) &&
  (!f.source || e.source === f.source);

export const logRoutes = (deps: ApiDeps, streams: Set<PassThrough>) => [
  route({
    method: 'get',
    path: '/api/logs',
    summary:
      'Stored log events, newest first, filtered and paged (pass next_cursor as cursor for older ones).',
    tag: 'logs',
    auth: true,
    query: z.object({
      ...filters,
      since: isoTime.optional(),
      until: isoTime.optional(),
      limit: z.coerce.number().int().min(1).max(1000).default(100),
      cursor: z.string().regex(/^\d+$/, 'expected the next_cursor of an earlier answer').optional(),
    }),
    response: z.object({ entries: z.array(logEntry), next_cursor: z.string().nullable() }),
    handler: async ({ query }) => {
      await deps.events.flush();
      const entries = await deps.state.events.list({
        level: query.level,
        source: query.source,
        since: query.since ? Date.parse(query.since) : undefined,
        until: query.until ? Date.parse(query.until) : undefined,
        beforeId: query.cursor ? Number(query.cursor) : undefined,
        limit: query.limit,
      });
      return {
        entries: entries.map(toEntry),
        next_cursor: entries.length === query.limit ? String(entries.at(-1)!.id) : null,
      };
    },
  }),
  route({
    method: 'get',
    path: '/api/logs/stream',
    summary:
      'Live log events as Server-Sent Events (`event: log`, data: a LogEntry; resumes after Last-Event-ID), and the push progress (`event: progress`, data: a PushProgress, at most one a second while something is pushed).',
    tag: 'logs',
    auth: true,
    query: z.object({
      ...filters,
      progress: z
        .enum(['true', 'false'])
        .default('true')
        .describe('Include the push progress events (`false`: log events only).'),
    }),
    stream: 'text/event-stream',
    handler: async ({ query, ctx }) => {
      const progress = query.progress === 'true' ? deps.sync?.progress : undefined;
      const current = await progress?.view();
      const stream = new PassThrough();
      const send = (e: EventRecord) => {
        if (matches(e, query))
          stream.write(
            `id: ${e.id}\nevent: log\ndata: ${deps.redactor.redact(JSON.stringify(toEntry(e)))}\n\n`,
          );
      };
      ctx.req.socket.setTimeout(0);
      ctx.req.socket.setNoDelay(true);
      ctx.set({
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache, no-transform',
        Connection: 'keep-alive',
        'X-Accel-Buffering': 'no',
      });
      ctx.status = 200;
      ctx.body = stream;
      stream.write('retry: 3000\n\n');

      const lastId = Number(ctx.get('Last-Event-ID'));
      const pending: EventRecord[] = [];
      let replaying = Number.isInteger(lastId) && lastId > 0;
      const unsubscribe = deps.events.subscribe((e) => (replaying ? pending.push(e) : send(e)));
      if (replaying) {
        await deps.events.flush();
        const missed = await deps.state.events.list({ ...query, limit: 1000 });
        for (const e of missed.filter((m) => m.id > lastId).reverse()) send(e);
        const sentUpTo = Math.max(lastId, ...missed.map((m) => m.id));
        replaying = false;
        for (const e of pending) if (e.id > sentUpTo) send(e);
      }
      // Progress is a state, not a stored event: no id (Last-Event-ID keeps naming the last log
      // event), nothing replayed; the current one first, so a dashboard has it at once.
      let unsubscribeProgress = () => {};
      if (progress && current) {
        const sendProgress = (p: PushProgress) =>
          stream.write(`event: progress\ndata: ${deps.redactor.redact(JSON.stringify(p))}\n\n`);
        sendProgress(current);
        unsubscribeProgress = progress.subscribe(sendProgress);
      }
      const heartbeat = setInterval(() => stream.write(': keep-alive\n\n'), 15_000);
      const close = () => {
        clearInterval(heartbeat);
        unsubscribe();
        unsubscribeProgress();
        streams.delete(stream);
        stream.end();
      };
      streams.add(stream);
      ctx.req.on('close', close);
      stream.on('close', close);
    },
  }),
];
