import { z } from 'zod';
import {
  createGoogle,
  GoogleSignInError,
  isInvalidGrant,
  type Google,
} from '../../google/index.js';
import type { ApiDeps } from '../deps.js';
import { ApiError } from '../errors.js';
import { route } from '../routes.js';

const accountView = z
  .object({
    id: z.number(),
    source: z.enum(['google_drive', 'google_photos']),
    email: z.string(),
    status: z.enum(['ok', 'needs_sign_in', 'error', 'paused']),
    signed_in: z.boolean().describe('A grant is held for it: the pull can read its Drive.'),
    grant: z
      .enum(['stored', 'environment'])
      .nullable()
      .describe('Signed in through the API (stored encrypted), or GOOGLE_REFRESH_TOKEN.'),
    last_pass_at: z.string().nullable(),
    error: z.object({ message: z.string(), fix: z.string().optional() }).nullable(),
  })
  .meta({ id: 'GoogleAccount' });

const signInAnswer = z.object({ account: accountView });

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** The small page the owner's browser shows at the end of a relay sign-in. */
function page(title: string, lines: string[]): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title></head><body style="font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em"><h1>${escapeHtml(title)}</h1>${lines.map((l) => `<p>${escapeHtml(l)}</p>`).join('')}</body></html>`;
}

export const googleRoutes = (deps: ApiDeps) => {
  let built: Google | undefined;
  const google = () =>
    deps.google ??
    (built ??= createGoogle({
      config: deps.config,
      state: deps.state,
      logger: deps.logger,
      env: process.env,
    }));
  const view = async (id: number) => {
    const all = [
      ...(await google().accounts.views('google_drive')),
      ...(await google().accounts.views('google_photos')),
    ];
    const found = all.find((a) => a.id === id);
    if (!found) throw new ApiError(500, 'internal', `account ${id} vanished`);
    return found;
  };
  const accountParam = async (param: string) => {
    const all = await deps.state.accounts.list();
    const found = /^\d+$/.test(param)
      ? all.find((a) => a.id === Number(param))
      : all.filter((a) => a.email === param.toLowerCase());
    const one = Array.isArray(found) ? (found.length === 1 ? found[0] : undefined) : found;
    if (!one)
      throw new ApiError(
        404,
        'not_found',
        `No Google account "${param}".`,
        'GET /api/google/accounts lists them, with their ids.',
      );
    return {
      id: one.id,
      email: one.email,
      source: one.source as 'google_drive' | 'google_photos',
    };
  };

  return [
    route({
      method: 'post',
      path: '/api/google/sign-in',
      summary:
        'Starts a Google sign-in: the address to open in a browser, bound to a one-time state that expires in 10 minutes.',
      tag: 'google',
      auth: true,
      body: z
        .object({
          redirect: z
            .enum(['loopback', 'relay'])
            .default('loopback')
            .describe(
              'loopback: the browser ends on http://127.0.0.1/... and you paste that address back (a Desktop-app client); relay: Google sends the browser to your https relay page (google.relay_redirect_uri), which sends it on to /api/google/callback.',
            ),
          source: z.enum(['google_drive']).default('google_drive'),
          login_hint: z
            .string()
            .email()
            .optional()
            .describe('The account to preselect on Google’s sign-in page.'),
        })
        .prefault({}),
      response: z.object({
        url: z.string().describe('Open this in a browser.'),
        state: z.string(),
        expires_at: z.string(),
        redirect: z.enum(['loopback', 'relay']),
        redirect_uri: z.string().describe('Where Google sends the browser with the code.'),
        next: z.string().describe('What to do next, for a person.'),
      }),
      handler: ({ body }) =>
        google().signIn.start({
          redirect: body.redirect,
          source: body.source,
          ...(body.login_hint ? { loginHint: body.login_hint } : {}),
        }),
    }),
    route({
      method: 'post',
      path: '/api/google/sign-in/complete',
      summary:
        'Completes a sign-in with the address the browser ended on (or its code and state): the account is signed in and its grant stored encrypted.',
      tag: 'google',
      auth: true,
      body: z.object({
        url: z
          .string()
          .min(1)
          .optional()
          .describe(
            'The whole address from the browser, e.g. http://127.0.0.1/?state=...&code=...',
          ),
        code: z.string().min(1).optional(),
        state: z.string().min(1).optional(),
      }),
      response: signInAnswer,
      handler: async ({ body }) => {
        const account = await google().signIn.complete(body);
        return { account: await view(account.id) };
      },
    }),
    route({
      method: 'get',
      path: '/api/google/callback',
      summary:
        'Where the owner’s https relay page sends the browser with Google’s code and state; answers a short HTML page. No credentials: the one-time state is the protection.',
      tag: 'google',
      auth: false,
      query: z.object({
        code: z.string().optional(),
        state: z.string().optional(),
        scope: z.string().optional(),
        error: z.string().optional(),
        error_description: z.string().optional(),
      }),
      stream: 'text/html',
      handler: async ({ query, ctx }) => {
        try {
          const account = await google().signIn.callback(query);
          ctx.status = 200;
          ctx.type = 'text/html; charset=utf-8';
          ctx.body = page('Signed in', [
            `${account.email} is signed in: the appliance now mirrors its Google Drive.`,
            'You can close this page.',
          ]);
        } catch (err) {
          if (!(err instanceof GoogleSignInError)) throw err;
          ctx.status = err.status;
          ctx.type = 'text/html; charset=utf-8';
          ctx.body = page('Sign-in failed', [err.message, err.fix]);
        }
      },
    }),
    route({
      method: 'get',
      path: '/api/google/accounts',
      summary: 'The Google accounts known: signed in or not, status, error with its fix.',
      tag: 'google',
      auth: true,
      response: z.object({ accounts: z.array(accountView) }),
      handler: async () => ({
        accounts: [
          ...(await google().accounts.views('google_drive')),
          ...(await google().accounts.views('google_photos')),
        ],
      }),
    }),
    route({
      method: 'post',
      path: '/api/google/accounts/:account/check',
      summary:
        'Checks an account’s grant now (a token refresh and one Drive call): a revoked grant marks it as needing sign-in.',
      tag: 'google',
      auth: true,
      response: signInAnswer,
      handler: async ({ params }) => {
        const account = await accountParam(params.account!);
        const g = google();
        try {
          const client = await g.accounts.client(account);
          await g.accounts.emailOf(client);
          await deps.state.accounts.setStatus(account.id, 'ok');
        } catch (err) {
          if (isInvalidGrant(err)) await g.accounts.signInLost(account, err);
          else if (!(err instanceof GoogleSignInError))
            throw new ApiError(
              502,
              'google_unreachable',
              `Google could not be asked about ${account.email}: ${(err as Error).message}`,
              'Check the appliance reaches oauth2.googleapis.com and www.googleapis.com, then try again.',
            );
        }
        return { account: await view(account.id) };
      },
    }),
    route({
      method: 'delete',
      path: '/api/google/accounts/:account',
      summary:
        'Signs an account out: its grant is revoked at Google and forgotten. Its mirror and backups stay.',
      tag: 'google',
      auth: true,
      response: z.object({
        account: accountView,
        revoked: z.boolean().describe('Google confirmed the revocation.'),
        note: z.string().optional(),
      }),
      handler: async ({ params }) => {
        const account = await accountParam(params.account!);
        const out = await google().accounts.signOut(account);
        return { account: await view(account.id), ...out };
      },
    }),
  ];
};
