/**
 * The HTTP side of the daemon: the JSON API under /api and the admin panel at /.
 */
import cors from '@koa/cors';
import Router from '@koa/router';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { PassThrough } from 'node:stream';
import Koa, { type Context } from 'koa';
import serve from 'koa-static';
import { AccessError, type Principal } from '../auth/index.js';
import { ConfigError } from '../config/index.js';
import { GoogleSignInError } from '../google/errors.js';
import { SESSION_COOKIE, type ApiDeps } from './deps.js';
import { ApiError } from './errors.js';
import { mount, openApiDocument, route, type Route } from './routes.js';
import { authRoutes } from './routes/auth.js';
import { configRoutes } from './routes/config.js';
import { googleRoutes } from './routes/google.js';
import { logRoutes } from './routes/logs.js';
import { syncRoutes } from './routes/sync.js';
import { sourceRoutes } from './routes/sources.js';
import { systemRoutes } from './routes/system.js';
import { diskRoutes } from './routes/disks.js';

export interface ApiServer {
  server: Server;
  app: Koa;
  routes: Route[];
  url: string;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

/** Every route of the API, described once (validation, handlers and the OpenAPI document). */
export function apiRoutes(deps: ApiDeps, streams = new Set<PassThrough>()): Route[] {
  const routes: Route[] = [
    ...systemRoutes(deps),
    ...authRoutes(deps),
    ...configRoutes(deps),
    ...logRoutes(deps, streams),
    ...syncRoutes(deps),
    ...googleRoutes(deps),
    ...sourceRoutes(deps),
    ...diskRoutes(deps),
  ];
  routes.push(
    route({
      method: 'get',
      path: '/api/openapi.json',
      summary: 'This OpenAPI 3.1 document.',
      tag: 'system',
      auth: false,
      handler: () => openApiDocument(routes, { version: deps.version }),
    }),
  );
  return routes;
}

export function buildApi(
  deps: ApiDeps,
  opts: { webRoot?: string } = {},
): { app: Koa; routes: Route[]; streams: Set<PassThrough> } {
  const log = deps.logger.child({ source: 'api' });
  const streams = new Set<PassThrough>();
  const routes = apiRoutes(deps, streams);

  const app = new Koa({ proxy: false });
  app.silent = true;

  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.path.startsWith('/api')) {
        throw new ApiError(
          404,
          'not_found',
          `No route ${ctx.method} ${ctx.path}.`,
          'See /api/openapi.json for the routes.',
        );
      }
    } catch (err) {
      const e = toApiError(err);
      if (e.status >= 500) log.error({ err, method: ctx.method, path: ctx.path }, 'request failed');
      ctx.status = e.status;
      if (e.retryAfter) ctx.set('Retry-After', String(e.retryAfter));
      ctx.body = {
        error: {
          code: e.code,
          message: e.message,
          ...(e.fix ? { fix: e.fix } : {}),
          ...(e.details ? { details: e.details } : {}),
        },
      };
    }
    // Last line of defence: no known secret value leaves in a JSON answer.
    if (
      ctx.body &&
      typeof ctx.body === 'object' &&
      !Buffer.isBuffer(ctx.body) &&
      typeof (ctx.body as { pipe?: unknown }).pipe !== 'function'
    ) {
      const text = JSON.stringify(ctx.body);
      if (deps.redactor.contains(text)) {
        log.error({ path: ctx.path }, 'a secret value in an answer was replaced by [REDACTED]');
        ctx.body = JSON.parse(deps.redactor.redact(text));
      }
    }
  });

  app.use(async (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('X-Frame-Options', 'DENY');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (ctx.path.startsWith('/api')) ctx.set('Cache-Control', 'no-store');
    const started = Date.now();
    await next();
    log.debug(
      { method: ctx.method, path: ctx.path, status: ctx.status, ms: Date.now() - started },
      'request',
    );
  });

  app.use(
    cors({
      origin: (ctx) => {
        const origin = ctx.get('Origin');
        return deps.config.runtime.config.security.cors_origins.includes(origin) ? origin : '';
      },
      credentials: true,
      allowMethods: ['GET', 'POST', 'PUT', 'DELETE'],
      allowHeaders: ['Content-Type', 'Authorization', 'Last-Event-ID'],
      maxAge: 600,
    }),
  );

  app.use(async (ctx, next) => {
    if (ctx.path.startsWith('/api') && ['POST', 'PUT', 'DELETE', 'PATCH'].includes(ctx.method)) {
      checkOrigin(ctx, deps.config.runtime.config.security.cors_origins);
      (ctx.request as { body?: unknown }).body = await readJson(ctx);
    }
    await next();
  });

  const authenticate = async (ctx: Context): Promise<Principal | undefined> => {
    if (ctx.state.principal !== undefined) return ctx.state.principal as Principal | undefined;
    const header = ctx.get('Authorization');
    const bearer = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
    let principal = await deps.access.authenticate(ctx.cookies.get(SESSION_COOKIE), bearer);
    if (!principal && !deps.config.runtime.config.security.api_authentication)
      principal = { via: 'api_key', keyId: 'config' };
    ctx.state.principal = principal;
    return principal;
  };

  const router = new Router();
  mount(router, routes, authenticate);
  app.use(router.routes());
  app.use(router.allowedMethods());

  if (opts.webRoot && existsSync(join(opts.webRoot, 'index.html'))) {
    const webRoot = opts.webRoot;
    app.use(serve(webRoot, { index: 'index.html', maxage: 3600_000, immutable: false }));
    // The panel is a single-page app: unknown paths get its index.html.
    app.use(async (ctx, next) => {
      await next();
      if (
        ctx.status === 404 &&
        ctx.method === 'GET' &&
        !ctx.path.startsWith('/api') &&
        ctx.accepts('html')
      ) {
        await serve(webRoot, { index: 'index.html' })(
          Object.assign(ctx, { path: '/' }),
          async () => {},
        );
      }
    });
  } else {
    app.use(async (ctx, next) => {
      await next();
      if (ctx.status === 404 && ctx.method === 'GET' && ctx.path === '/') {
        ctx.type = 'html';
        ctx.body = `<!doctype html><meta charset="utf-8"><title>backupd</title><h1>backupd is running</h1><p>The admin panel is not built. Run <code>npm run build</code> in the repository, or use the API: <a href="/api/openapi.json">/api/openapi.json</a>.</p>`;
      }
    });
  }
  return { app, routes, streams };
}

export async function startApi(
  deps: ApiDeps,
  opts: { host: string; port: number; webRoot?: string },
): Promise<ApiServer> {
  const { app, routes, streams } = buildApi(deps, opts);
  const server = createServer(app.callback());
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new Error(
              `port ${opts.port} on ${opts.host} is already in use: stop what uses it, or set daemon.api_port to a free port`,
            )
          : err.code === 'EACCES'
            ? new Error(
                `not allowed to listen on port ${opts.port}: ports below 1024 need privileges; use a port above 1024 (the appliance redirects port 80)`,
              )
            : err,
      );
    });
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    app,
    routes,
    url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of streams) s.end();
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }),
  };
}

function toApiError(err: unknown): {
  status: number;
  code: string;
  message: string;
  fix?: string;
  details?: unknown;
  retryAfter?: number;
} {
  if (err instanceof ApiError) return err;
  if (err instanceof AccessError)
    return {
      status: err.status,
      code: err.code,
      message: err.message,
      fix: err.fix,
      retryAfter: err.retryAfterSeconds,
    };
  if (err instanceof GoogleSignInError)
    return { status: err.status, code: err.code, message: err.message, fix: err.fix };
  if (err instanceof ConfigError) {
    return {
      status: 400,
      code: 'invalid_config',
      message: `The configuration is not valid: ${err.problems.map((p) => `${p.path || '(body)'}: ${p.message}`).join('; ')}`,
      fix: 'Correct the keys named; docs/configuration.md describes each.',
      details: err.problems,
    };
  }
  const status = (err as { status?: number }).status;
  if (status && status >= 400 && status < 500)
    return { status, code: 'bad_request', message: (err as Error).message };
  return {
    status: 500,
    code: 'internal',
    message: 'Something went wrong inside the daemon; the log has the details.',
  };
}

/** A browser may change state only from this origin or a configured dashboard origin. */
function checkOrigin(ctx: Context, allowed: string[]): void {
  const origin = ctx.get('Origin');
  if (!origin) return;
  const own = `${ctx.protocol}://${ctx.host}`;
  if (origin === own || allowed.includes(origin)) return;
  throw new ApiError(
    403,
    'forbidden_origin',
    `Requests from ${origin} may not change anything here.`,
    'Add the dashboard origin to security.cors_origins.',
  );
}

async function readJson(ctx: Context): Promise<unknown> {
  const length = Number(ctx.get('Content-Length') || 0);
  if (length === 0 && !ctx.get('Transfer-Encoding')) return undefined;
  if (!ctx.is('application/json')) {
    throw new ApiError(
      415,
      'unsupported_media_type',
      'Send the request body as JSON.',
      'Set "Content-Type: application/json".',
    );
  }
  if (length > MAX_BODY)
    throw new ApiError(413, 'too_large', `The body is larger than ${MAX_BODY} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY)
      throw new ApiError(413, 'too_large', `The body is larger than ${MAX_BODY} bytes.`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(
      400,
      'invalid_json',
      `The body is not valid JSON: ${(err as Error).message}`,
    );
  }
}
