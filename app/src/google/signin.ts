/**
 * Signing in to Google from a headless appliance. Google refuses http://backup.local as a
 * redirect and its device flow does not grant Drive scopes, so the browser that consents is
 * the owner's, and the code comes back one of two ways:
 *
 * - loopback (a Desktop-app client): the redirect is http://127.0.0.1/, which Google accepts
 *   without registration. The browser ends on a page that does not load; the owner copies its
 *   address back (through the API; the panel wraps it). PKCE makes a code seen by anyone else
 *   useless.
 * - relay (a Web-application client): the redirect is an https page the owner controls and
 *   registered; it sends the browser on to /api/google/callback here with code and state.
 *
 * Both are the authorization-code flow with PKCE (S256), `access_type=offline` for a refresh
 * token, `prompt=consent` so Google sends one again on a second sign-in, and only the read-only
 * Drive scope. The account's address comes from Drive's about.get, not from an `openid email`
 * id token: one scope on the consent screen, and a check that the Drive scope works at once.
 *
 * Pending sign-ins live in memory: a restart of the daemon means starting the sign-in again,
 * which is cheaper than keeping PKCE verifiers anywhere on disk.
 */
import { CodeChallengeMethod } from 'google-auth-library';
import type { Logger } from '../log/index.js';
import {
  DRIVE_SCOPE,
  oauthClientSettings,
  type GoogleAccount,
  type StoredGoogleAccounts,
} from './accounts.js';
import { GoogleSignInError, oauthErrorOf } from './errors.js';
import { challengeOf, newState, newVerifier, parseRedirect, type RedirectResult } from './pkce.js';
import type { Runtime } from '../config/index.js';

export type RedirectKind = 'loopback' | 'relay';

/** Google's authorization codes last 10 minutes; a pending sign-in lasts as long. */
export const SIGN_IN_TTL_MS = 10 * 60_000;
/** How long a finished or expired state is remembered, to say so instead of "unknown". */
const REMEMBER_MS = 24 * 3600_000;

interface Pending {
  source: GoogleAccount['source'];
  kind: RedirectKind;
  redirectUri: string;
  verifier: string;
  expiresAt: number;
  done?: 'completed' | 'failed';
}

export interface StartedSignIn {
  url: string;
  state: string;
  expires_at: string;
  redirect: RedirectKind;
  redirect_uri: string;
  next: string;
}

export interface SignInDeps {
  accounts: StoredGoogleAccounts;
  runtime: () => Runtime;
  env: NodeJS.ProcessEnv;
  logger: Logger;
  now?: () => number;
}

const fixRestart = 'Start the sign-in again (POST /api/google/sign-in) and use the new address.';

export class GoogleSignIn {
  private readonly pending = new Map<string, Pending>();
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(private readonly deps: SignInDeps) {
    this.now = deps.now ?? Date.now;
    this.log = deps.logger.child({ source: 'google' });
  }

  /** The address to open in the owner's browser, bound to a fresh state and PKCE verifier. */
  start(
    opts: {
      redirect?: RedirectKind;
      source?: GoogleAccount['source'];
      loginHint?: string;
    } = {},
  ): StartedSignIn {
    const rt = this.deps.runtime();
    oauthClientSettings(rt, this.deps.env); // says clearly when no client is configured
    const source = opts.source ?? 'google_drive';
    if (source !== 'google_drive')
      throw new GoogleSignInError(
        400,
        'source_not_supported',
        `Signing in for ${source} is not supported yet: only google_drive.`,
        'Use source google_drive.',
      );
    const relay = rt.config.google.relay_redirect_uri;
    const kind = opts.redirect ?? 'loopback';
    if (kind === 'relay' && !relay)
      throw new GoogleSignInError(
        409,
        'no_relay',
        'The relay sign-in needs google.relay_redirect_uri: no https relay page is configured.',
        'Set google.relay_redirect_uri (PUT /api/config) to the https page you registered in your Web-application OAuth client (docs/google-oauth-client.md), or use redirect "loopback".',
      );
    const redirectUri = kind === 'relay' ? relay! : rt.config.google.loopback_redirect_uri;
    this.prune();
    const state = newState();
    const verifier = newVerifier();
    const expiresAt = this.now() + SIGN_IN_TTL_MS;
    this.pending.set(state, { source, kind, redirectUri, verifier, expiresAt });
    const url = this.deps.accounts.newClient(undefined, redirectUri).generateAuthUrl({
      access_type: 'offline',
      prompt: 'consent',
      scope: [DRIVE_SCOPE],
      state,
      code_challenge: challengeOf(verifier),
      code_challenge_method: CodeChallengeMethod.S256,
      ...(opts.loginHint ? { login_hint: opts.loginHint } : {}),
    });
    return {
      url,
      state,
      expires_at: new Date(expiresAt).toISOString(),
      redirect: kind,
      redirect_uri: redirectUri,
      next:
        kind === 'loopback'
          ? `Open the url in a browser, sign in and allow access. The browser then ends on ${redirectUri}?state=...&code=..., a page that does not load: copy that whole address and send it to POST /api/google/sign-in/complete as {"url": "..."} within 10 minutes. If Google shows "Error 400: redirect_uri_mismatch", the OAuth client is not of type Desktop app: use one, or register exactly ${redirectUri} as its redirect URI.`
          : `Open the url in a browser, sign in and allow access. Google sends the browser to ${redirectUri}, which must send it on to /api/google/callback of this appliance with the same query (code and state). If Google shows "Error 400: redirect_uri_mismatch", register exactly ${redirectUri} under "Authorized redirect URIs" of the Web-application client.`,
    };
  }

  /** The owner pasted the address the browser ended on (or the relay handed code and state). */
  async complete(input: { url?: string; code?: string; state?: string }): Promise<GoogleAccount> {
    let answer: RedirectResult;
    if (input.url) answer = parseRedirect(input.url);
    else if (input.code || input.state)
      answer = {
        ...(input.code ? { code: input.code } : {}),
        ...(input.state ? { state: input.state } : {}),
      };
    else
      throw new GoogleSignInError(
        400,
        'not_a_redirect',
        'Nothing to complete: send the address the browser ended on as "url", or "code" and "state".',
        'Copy the whole address from the browser after allowing access, and send {"url": "..."}.',
      );
    return this.finish(answer);
  }

  /** GET /api/google/callback: Google's answer, forwarded by the relay page. */
  async callback(query: Record<string, string | undefined>): Promise<GoogleAccount> {
    const answer: RedirectResult = {};
    if (query.code) answer.code = query.code;
    if (query.state) answer.state = query.state;
    if (query.error) answer.error = query.error;
    if (query.error_description) answer.errorDescription = query.error_description;
    if (query.scope !== undefined) answer.scope = query.scope;
    if (!answer.code && !answer.error)
      throw new GoogleSignInError(
        400,
        'not_a_redirect',
        'This address has neither a code nor an error from Google.',
        'The relay page must send the browser here with the query Google gave it (code, state, scope).',
      );
    return this.finish(answer);
  }

  private takeState(state: string | undefined): Pending {
    if (!state)
      throw new GoogleSignInError(
        400,
        'state_missing',
        'The address has no state=: it is not the one Google sent back for a sign-in started here.',
        'Copy the whole address from the browser, including state=..., or ' + fixRestart,
      );
    const p = this.pending.get(state);
    if (!p)
      throw new GoogleSignInError(
        400,
        'state_unknown',
        'This sign-in was not started by this daemon (or the daemon restarted since): its state is unknown.',
        fixRestart,
      );
    if (p.done)
      throw new GoogleSignInError(
        409,
        'state_used',
        `This sign-in was already ${p.done}; each one can be completed once.`,
        fixRestart,
      );
    if (p.expiresAt <= this.now()) {
      p.done = 'failed';
      throw new GoogleSignInError(
        410,
        'state_expired',
        `This sign-in expired at ${new Date(p.expiresAt).toISOString()} (each lasts 10 minutes, as Google's codes do).`,
        fixRestart,
      );
    }
    return p;
  }

  private async finish(answer: RedirectResult): Promise<GoogleAccount> {
    const p = this.takeState(answer.state);
    // One-time: whatever happens next, this state cannot be used again.
    p.done = 'failed';
    if (answer.error) throw this.googleRefused(answer);
    if (answer.scope !== undefined && !answer.scope.split(/\s+/).includes(DRIVE_SCOPE))
      throw scopeNotGranted();
    const client = this.deps.accounts.newClient(undefined, p.redirectUri);
    let tokens;
    try {
      ({ tokens } = await client.getToken({
        code: answer.code!,
        codeVerifier: p.verifier,
        redirect_uri: p.redirectUri,
      }));
    } catch (err) {
      throw this.exchangeFailed(err, p);
    }
    if (tokens.scope !== undefined && !tokens.scope.split(/\s+/).includes(DRIVE_SCOPE)) {
      await client.revokeToken(tokens.access_token ?? '').catch(() => undefined);
      throw scopeNotGranted();
    }
    if (!tokens.refresh_token)
      throw new GoogleSignInError(
        502,
        'no_refresh_token',
        'Google did not send a refresh token, so the appliance could not read Drive on its own later.',
        'Remove backupd from https://myaccount.google.com/permissions (Third-party apps), then sign in again.',
      );
    client.setCredentials(tokens);
    let email: string;
    try {
      email = await this.deps.accounts.emailOf(client);
    } catch (err) {
      const status = (err as { response?: { status?: number } }).response?.status;
      if (status === 403) throw scopeNotGranted();
      throw new GoogleSignInError(
        502,
        'google_unreachable',
        `Google accepted the sign-in but Drive did not say which account it is: ${(err as Error).message}`,
        'Check the appliance can reach www.googleapis.com, then ' + fixRestart,
      );
    }
    const account = await this.deps.accounts.store(p.source, email, tokens.refresh_token);
    p.done = 'completed';
    return account;
  }

  private googleRefused(answer: RedirectResult): GoogleSignInError {
    if (answer.error === 'access_denied')
      return new GoogleSignInError(
        403,
        'access_denied',
        'Access was not allowed on Google\'s consent screen ("Cancel" was pressed, or the account is not a test user of an OAuth app in testing).',
        'Start again and press "Allow", leaving "See and download all your Google Drive files" ticked. If Google said the app is in testing, add the account as a test user or publish the app (docs/google-oauth-client.md).',
      );
    return new GoogleSignInError(
      400,
      `google_${answer.error ?? 'error'}`.replace(/[^a-z0-9_]/gi, '_'),
      `Google refused the sign-in: ${answer.error}${answer.errorDescription ? ` (${answer.errorDescription})` : ''}.`,
      'See docs/troubleshooting.md (Google sign-in), then ' + fixRestart,
    );
  }

  private exchangeFailed(err: unknown, p: Pending): GoogleSignInError {
    const g = oauthErrorOf(err);
    this.log.warn(
      { code: g?.error, redirect: p.kind },
      `Google refused the sign-in code: ${g ? `${g.error} ${g.description}` : (err as Error).message}`,
    );
    switch (g?.error) {
      case 'invalid_client':
      case 'unauthorized_client':
        return new GoogleSignInError(
          400,
          'invalid_client',
          `Google does not accept the OAuth client (${g.error}${g.description ? `: ${g.description}` : ''}): the client ID is unknown, or the client secret does not belong to it.`,
          'Copy the client ID and secret again from Google Cloud console, APIs & Services, Credentials, set google.client_id and google.client_secret (PUT /api/config or GOOGLE_CLIENT_ID/GOOGLE_CLIENT_SECRET), then ' +
            fixRestart,
        );
      case 'redirect_uri_mismatch':
        return redirectMismatch(p);
      case 'invalid_grant':
        return new GoogleSignInError(
          400,
          'code_rejected',
          `Google refused the code (${g.description || 'invalid_grant'}): it was already used, is more than 10 minutes old, or belongs to another sign-in.`,
          fixRestart,
        );
      default:
        return new GoogleSignInError(
          502,
          'google_unreachable',
          `The code could not be exchanged with Google: ${g ? `${g.error} ${g.description}` : (err as Error).message}`,
          'Check the appliance can reach oauth2.googleapis.com, then ' + fixRestart,
        );
    }
  }

  private prune(): void {
    const now = this.now();
    for (const [state, p] of this.pending)
      if (p.expiresAt + REMEMBER_MS < now) this.pending.delete(state);
  }
}

function scopeNotGranted(): GoogleSignInError {
  return new GoogleSignInError(
    403,
    'scope_not_granted',
    'Read access to Google Drive was not granted: the box "See and download all your Google Drive files" was unticked on the consent screen.',
    'Start the sign-in again and leave that box ticked: the appliance only reads (the scope is drive.readonly) and cannot change or delete anything in Drive.',
  );
}

/** Said with the exact URI to register, since that is the whole fix. */
export function redirectMismatch(p: {
  kind: RedirectKind;
  redirectUri: string;
}): GoogleSignInError {
  return new GoogleSignInError(
    400,
    'redirect_uri_mismatch',
    `Google does not accept the redirect URI ${p.redirectUri} for this OAuth client.`,
    p.kind === 'relay'
      ? `In Google Cloud console, APIs & Services, Credentials, open the Web-application client and add exactly ${p.redirectUri} under "Authorized redirect URIs"; then ${fixRestart}`
      : `Use an OAuth client of type "Desktop app" (it accepts ${p.redirectUri} without registration), or add exactly ${p.redirectUri} to the client's redirect URIs; then ${fixRestart}`,
  );
}
