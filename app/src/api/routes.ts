/**
 * The API is a list of route descriptions. The same description validates the request,
 * documents the route in the OpenAPI document and says whether it needs credentials.
 */
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import type { Principal } from '../auth/index.js';
import { ApiError, errorBody } from './errors.js';

export interface RouteInput<B, Q> {
  body: B;
  query: Q;
  params: Record<string, string>;
  ctx: Context;
  principal: Principal | undefined;
}

export interface Route<B = unknown, Q = unknown, R = unknown> {
  method: 'get' | 'post' | 'put' | 'delete';
  path: string;
  summary: string;
  tag: string;
  /** false: reachable without credentials (health, version, setup, login). */
  auth: boolean;
  body?: z.ZodType<B>;
  query?: z.ZodType<Q>;
  /** The 2xx body; omitted for streams. */
  response?: z.ZodType<R>;
  status?: number;
  /** Content type of a streamed answer (Server-Sent Events). */
  stream?: string;
  handler: (input: RouteInput<B, Q>) => Promise<R> | R;
}

export const route = <B = undefined, Q = undefined, R = unknown>(r: Route<B, Q, R>): Route =>
  r as unknown as Route;

export function mount(
  router: Router,
  routes: Route[],
  authenticate: (ctx: Context) => Promise<Principal | undefined>,
): void {
  for (const r of routes) {
    router[r.method](r.path, async (ctx) => {
      const principal = await authenticate(ctx);
      if (r.auth && !principal) {
        throw new ApiError(
          401,
          'unauthorized',
          'Sign in first, or send an API key as "Authorization: Bearer <key>".',
        );
      }
      const body = r.body
        ? parseOr400(r.body, (ctx.request as { body?: unknown }).body ?? {}, 'body')
        : undefined;
      const query = r.query ? parseOr400(r.query, ctx.query, 'query') : undefined;
      const result = await r.handler({
        body,
        query,
        params: ctx.params as Record<string, string>,
        ctx,
        principal,
      });
      if (r.stream) return;
      ctx.status = r.status ?? 200;
      ctx.body = result ?? { ok: true };
    });
  }
}

function parseOr400<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  throw new ApiError(
    400,
    'invalid_request',
    `The request ${where} is not valid: ${problems.map((p) => `${p.path || where}: ${p.message}`).join('; ')}`,
    'See /api/openapi.json for what this route expects.',
    problems,
  );
}

/** OpenAPI 3.1 document of the routes. */
export function openApiDocument(
  routes: Route[],
  info: { version: string },
): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const schema = (s: z.ZodType, io: 'input' | 'output') => {
    const j = z.toJSONSchema(s, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Record<
      string,
      unknown
    >;
    delete j.$schema;
    return j;
  };
  for (const r of routes) {
    const path = r.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const params = [...r.path.matchAll(/:([A-Za-z_]+)/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    if (r.query) {
      const q = schema(r.query, 'input') as {
        properties?: Record<string, unknown>;
        required?: string[];
      };
      for (const [name, s] of Object.entries(q.properties ?? {})) {
        params.push({
          name: name as string,
          in: 'query',
          required: (q.required ?? []).includes(name) as true,
          schema: s as { type: string },
        });
      }
    }
    const ok: Record<string, unknown> = { description: 'Success' };
    if (r.stream) ok.content = { [r.stream]: { schema: { type: 'string' } } };
    else if (r.response)
      ok.content = { 'application/json': { schema: schema(r.response, 'output') } };
    const responses: Record<string, unknown> = { [String(r.status ?? 200)]: ok };
    const err = {
      description: 'Error',
      content: { 'application/json': { schema: schema(errorBody, 'output') } },
    };
    responses['400'] = err;
    if (r.auth) responses['401'] = { ...err, description: 'No valid session or API key' };
    responses.default = err;
    paths[path] ??= {};
    paths[path][r.method] = {
      summary: r.summary,
      tags: [r.tag],
      operationId: `${r.method}${path
        .replace(/[{}]/g, '')
        .replace(/\/(\w)/g, (_, c: string) => c.toUpperCase())
        .replace(/[^A-Za-z0-9]/g, '')}`,
      ...(params.length ? { parameters: params } : {}),
      ...(r.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: schema(r.body, 'input') } },
            },
          }
        : {}),
      responses,
      security: r.auth ? [{ session: [] }, { bearer: [] }] : [],
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'backupd API',
      version: info.version,
      description:
        'The API of the backup appliance. Routes whose security is empty (health, version, setup, session, login, logout, this document) are public; every other route needs a session cookie (from login) or an API key (Authorization: Bearer).',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        session: { type: 'apiKey', in: 'cookie', name: 'backupd_session' },
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key made with POST /api/keys, or daemon.api_key / API_SECRET_KEY.',
        },
      },
    },
    paths,
  };
}
