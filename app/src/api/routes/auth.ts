import type { Context } from 'koa';
import { z } from 'zod';
import { MIN_PASSWORD_LENGTH } from '../../auth/index.js';
import { ApiError } from '../errors.js';
import { SESSION_COOKIE, type ApiDeps } from '../deps.js';
import { route } from '../routes.js';

const ok = z.object({ ok: z.literal(true) });
const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);
const apiKeyView = z
  .object({
    id: z.number(),
    name: z.string(),
    prefix: z.string(),
    created_at: z.string(),
    last_used_at: z.string().nullable(),
    revoked_at: z.string().nullable(),
  })
  .meta({ id: 'ApiKey' });

export function setSessionCookie(ctx: Context, token: string | null): void {
  ctx.cookies.set(SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'strict',
    secure: ctx.secure,
    path: '/',
    overwrite: true,
    ...(token ? { maxAge: 7 * 86_400_000 } : { expires: new Date(0) }),
  });
}

export const authRoutes = (deps: ApiDeps) => [
  route({
    method: 'get',
    path: '/api/setup',
    summary: 'Whether the first-run setup (setting the admin password) is still to be done.',
    tag: 'auth',
    auth: false,
    response: z.object({ needed: z.boolean() }),
    handler: async () => ({ needed: await deps.access.setupNeeded() }),
  }),
  route({
    method: 'post',
    path: '/api/setup',
    summary:
      "Sets the admin password with the one-time setup code from the daemon's log; signs in.",
    tag: 'auth',
    auth: false,
    body: z.object({
      code: z.string().min(1).max(64),
      password: z.string().min(1).max(1024).describe(`At least ${MIN_PASSWORD_LENGTH} characters.`),
    }),
    response: ok,
    handler: async ({ body, ctx }) => {
      const token = await deps.access.completeSetup(body.code, body.password, ctx.ip);
      setSessionCookie(ctx, token);
      deps.logger
        .child({ source: 'auth' })
        .info({ ip: ctx.ip }, 'admin password set: first-run setup complete');
      return { ok: true as const };
    },
  }),
  route({
    method: 'get',
    path: '/api/auth/session',
    summary: 'Whether the caller is signed in, and how.',
    tag: 'auth',
    auth: false,
    response: z.object({
      authenticated: z.boolean(),
      via: z.enum(['session', 'api_key']).nullable(),
    }),
    handler: ({ principal }) => ({ authenticated: !!principal, via: principal?.via ?? null }),
  }),
  route({
    method: 'post',
    path: '/api/auth/login',
    summary:
      'Signs in with the admin password; sets an HttpOnly, SameSite=Strict session cookie. Rate-limited.',
    tag: 'auth',
    auth: false,
    body: z.object({ password: z.string().min(1).max(1024) }),
    response: ok,
    handler: async ({ body, ctx }) => {
      const log = deps.logger.child({ source: 'auth' });
      try {
        setSessionCookie(ctx, await deps.access.login(body.password, ctx.ip));
        log.info({ ip: ctx.ip }, 'signed in');
      } catch (err) {
        log.warn({ ip: ctx.ip }, `sign-in refused: ${(err as Error).message}`);
        throw err;
      }
      return { ok: true as const };
    },
  }),
  route({
    method: 'post',
    path: '/api/auth/logout',
    summary: 'Ends the session.',
    tag: 'auth',
    auth: false,
    response: ok,
    handler: async ({ principal, ctx }) => {
      if (principal?.via === 'session') await deps.access.logout(principal.token);
      setSessionCookie(ctx, null);
      return { ok: true as const };
    },
  }),
  route({
    method: 'post',
    path: '/api/auth/password',
    summary: 'Changes the admin password; every session ends.',
    tag: 'auth',
    auth: true,
    body: z.object({ current: z.string().min(1).max(1024), password: z.string().min(1).max(1024) }),
    response: ok,
    handler: async ({ body, ctx }) => {
      await deps.access.changePassword(body.current, body.password);
      setSessionCookie(ctx, null);
      deps.logger.child({ source: 'auth' }).info('admin password changed; all sessions ended');
      return { ok: true as const };
    },
  }),
  route({
    method: 'get',
    path: '/api/keys',
    summary: 'The API keys (never their values).',
    tag: 'auth',
    auth: true,
    response: z.object({ keys: z.array(apiKeyView) }),
    handler: async () => ({
      keys: (await deps.access.listApiKeys()).map((k) => ({
        ...k,
        created_at: iso(k.created_at)!,
        last_used_at: iso(k.last_used_at),
        revoked_at: iso(k.revoked_at),
      })),
    }),
  }),
  route({
    method: 'post',
    path: '/api/keys',
    summary:
      'Creates an API key for a script or the remote dashboard. The key is shown in this answer only.',
    tag: 'auth',
    auth: true,
    status: 201,
    body: z.object({ name: z.string().trim().min(1).max(100) }),
    response: apiKeyView.extend({
      key: z.string().describe('Send as "Authorization: Bearer <key>". Shown once.'),
    }),
    handler: async ({ body }) => {
      const { key, record } = await deps.access.createApiKey(body.name);
      deps.logger
        .child({ source: 'auth' })
        .info({ key_id: record.id, name: record.name }, `API key "${record.name}" created`);
      return {
        ...record,
        created_at: iso(record.created_at)!,
        last_used_at: null,
        revoked_at: null,
        key,
      };
    },
  }),
  route({
    method: 'delete',
    path: '/api/keys/:id',
    summary: 'Revokes an API key.',
    tag: 'auth',
    auth: true,
    response: ok,
    handler: async ({ params }) => {
      const id = Number(params.id);
      if (!Number.isInteger(id) || !(await deps.access.revokeApiKey(id))) {
        throw new ApiError(
          404,
          'not_found',
          `No active API key with id ${params.id}.`,
          'GET /api/keys lists them.',
        );
      }
      deps.logger.child({ source: 'auth' }).info({ key_id: id }, 'API key revoked');
      return { ok: true as const };
    },
  }),
];
