/**
 * The Google accounts the daemon may read, and an OAuth2Client for each: the seam between
 * sign-in (this folder) and the pulls (Drive, later Photos), which import only this module.
 *
 * A grant is a refresh token. Grants obtained by signing in live in the encrypted secrets
 * store, one per source and account (`google.refresh_token.<source>.<email>`); never in the
 * config file or the database, which travel to the destinations. `GOOGLE_REFRESH_TOKEN` (with
 * `GOOGLE_CLIENT_ID`/`GOOGLE_CLIENT_SECRET`) adds one more Drive account for scripted set-ups;
 * its email address is asked of Drive (`about.get`) once per token.
 */
import { createHash } from 'node:crypto';
import { drive } from '@googleapis/drive';
import { OAuth2Client } from 'google-auth-library';
import type { Runtime } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { AccountRecord, State } from '../state/index.js';
import { GoogleSignInError, oauthErrorOf } from './errors.js';

export interface GoogleAccount {
  source: 'google_drive' | 'google_photos';
  email: string;
  id: number;
}

export interface GoogleAccounts {
  /** Accounts signed in for a source (stored grants, plus the one of GOOGLE_REFRESH_TOKEN). */
  list(source: GoogleAccount['source']): Promise<GoogleAccount[]>;
  /** An OAuth2Client for the account that refreshes its own access token (token URL from GOOGLE_OAUTH_TOKEN_URL). */
  client(account: GoogleAccount): Promise<OAuth2Client>;
  /** A refresh failed with invalid_grant: mark the account as needing sign-in (status + error with fix + an error log line = the alert). Other accounts go on. */
  signInLost(account: GoogleAccount, err: unknown): Promise<void>;
}

/** Read-only Drive: a backup reads; it must never be able to change or delete the owner's files. */
export const DRIVE_SCOPE = 'https://www.googleapis.com/auth/drive.readonly';

const DEFAULT_API_ROOT = 'https://www.googleapis.com';
const DEFAULT_TOKEN_URL = 'https://oauth2.googleapis.com/token';

/** GOOGLE_API_ROOT as an origin: Google's client keeps only the origin of its rootUrl. */
export function googleApiRoot(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.GOOGLE_API_ROOT || DEFAULT_API_ROOT;
  try {
    return new URL(raw).origin;
  } catch {
    throw new Error(
      `GOOGLE_API_ROOT "${raw}" is not a URL: expected an origin such as ${DEFAULT_API_ROOT}`,
    );
  }
}

export function googleTokenUrl(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.GOOGLE_OAUTH_TOKEN_URL || DEFAULT_TOKEN_URL;
  try {
    return new URL(raw).toString();
  } catch {
    throw new Error(
      `GOOGLE_OAUTH_TOKEN_URL "${raw}" is not a URL: expected e.g. ${DEFAULT_TOKEN_URL}`,
    );
  }
}

/**
 * Revocation lives beside the token endpoint at Google (oauth2.googleapis.com/revoke), so it
 * follows GOOGLE_OAUTH_TOKEN_URL rather than needing a variable of its own.
 */
export function googleRevokeUrl(env: NodeJS.ProcessEnv = process.env): string {
  return new URL('/revoke', googleTokenUrl(env)).toString();
}

/** Google answered `invalid_grant`: the refresh token was revoked or expired; only a new sign-in helps. */
export function isInvalidGrant(err: unknown): boolean {
  if (oauthErrorOf(err)?.error === 'invalid_grant') return true;
  const message = (err as { message?: unknown } | undefined)?.message;
  return typeof message === 'string' && /\binvalid_grant\b/.test(message);
}

/** The secrets-store name of a grant. Characters a secret name cannot hold become +XX. */
export function refreshTokenKey(source: GoogleAccount['source'], email: string): string {
  const safe = email
    .toLowerCase()
    .replace(/[^a-z0-9_.@-]/g, (c) => `+${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `google.refresh_token.${source}.${safe}`;
}

export interface OAuthClientSettings {
  clientId: string;
  clientSecret: string;
}

/** The owner's OAuth client: environment first, then the config (and secrets store). */
export function oauthClientSettings(rt: Runtime, env: NodeJS.ProcessEnv): OAuthClientSettings {
  const clientId =
    env.GOOGLE_CLIENT_ID || rt.config.google.client_id || rt.secrets.get('google.client_id');
  const clientSecret = rt.secret('google.client_secret');
  if (!clientId || !clientSecret) {
    const missing = [
      !clientId ? 'google.client_id (GOOGLE_CLIENT_ID)' : '',
      !clientSecret ? 'google.client_secret (GOOGLE_CLIENT_SECRET)' : '',
    ].filter(Boolean);
    throw new GoogleSignInError(
      409,
      'no_oauth_client',
      `No Google OAuth client is configured: ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing.`,
      'Create an OAuth client in your Google Cloud project (docs/google-oauth-client.md), then set google.client_id and google.client_secret through PUT /api/config (the secret goes to the encrypted secrets store), or GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET in the environment.',
    );
  }
  return { clientId, clientSecret };
}

export interface GoogleAccountsDeps {
  runtime: () => Runtime;
  state: State;
  logger: Logger;
  env: NodeJS.ProcessEnv;
  /** Stores or removes a secret and lets the redaction of logs and answers know. */
  setSecret: (name: string, value: string | null) => void;
}

/** A signed-in account as the API shows it. */
export interface AccountView extends GoogleAccount {
  status: AccountRecord['status'];
  signed_in: boolean;
  /** Where its grant comes from: signed in through the API, or GOOGLE_REFRESH_TOKEN. */
  grant: 'stored' | 'environment' | null;
  last_pass_at: string | null;
  error: { message: string; fix?: string } | null;
}

const sha = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 32);
const ENV_EMAIL_KEY = 'google.environment_account.';

export class StoredGoogleAccounts implements GoogleAccounts {
  private readonly log: Logger;
  /** Hashes of environment tokens Google refused: not offered again until the daemon restarts. */
  private readonly lostEnvTokens = new Set<string>();

  constructor(private readonly deps: GoogleAccountsDeps) {
    this.log = deps.logger.child({ source: 'google' });
  }

  private get rt(): Runtime {
    return this.deps.runtime();
  }

  private envToken(source: GoogleAccount['source']): string | undefined {
    // GOOGLE_REFRESH_TOKEN is Drive's (section 10.2 of the specification); Photos needs a
    // scope of its own and so a grant of its own.
    if (source !== 'google_drive') return undefined;
    const token = this.rt.secret('google.refresh_token');
    return token && !this.lostEnvTokens.has(sha(token)) ? token : undefined;
  }

  /** The email of the GOOGLE_REFRESH_TOKEN account, asked of Drive once per token. */
  private async envAccount(source: GoogleAccount['source']): Promise<AccountRecord | undefined> {
    const token = this.envToken(source);
    if (!token) return undefined;
    const key = ENV_EMAIL_KEY + sha(token);
    let email = await this.deps.state.settings.get(key);
    if (!email) {
      try {
        email = await this.emailOf(this.newClient(token));
      } catch (err) {
        if (isInvalidGrant(err)) {
          this.lostEnvTokens.add(sha(token));
          this.log.error(
            { code: 'invalid_grant' },
            'Google refused GOOGLE_REFRESH_TOKEN (invalid_grant: revoked or expired): its account is not mirrored. Set a new GOOGLE_REFRESH_TOKEN and restart, or sign in through the API (docs/google-oauth-client.md).',
          );
        } else {
          this.log.warn(
            { err },
            `cannot learn the account of GOOGLE_REFRESH_TOKEN yet: ${(err as Error).message}`,
          );
        }
        return undefined;
      }
      await this.deps.state.settings.set(key, email);
    }
    return this.deps.state.accounts.upsert(source, email, Date.now());
  }

  async list(source: GoogleAccount['source']): Promise<GoogleAccount[]> {
    const out = new Map<string, GoogleAccount>();
    const env = await this.envAccount(source);
    if (env) out.set(env.email, { source, email: env.email, id: env.id });
    for (const a of await this.deps.state.accounts.list(source)) {
      if (out.has(a.email) || !this.rt.secrets.has(refreshTokenKey(source, a.email))) continue;
      out.set(a.email, { source, email: a.email, id: a.id });
    }
    return [...out.values()].sort((a, b) => a.email.localeCompare(b.email));
  }

  /** Every account the state knows for a source, signed in or not, for the API. */
  async views(source: GoogleAccount['source']): Promise<AccountView[]> {
    const signedIn = new Map((await this.list(source)).map((a) => [a.email, a]));
    const env = this.envToken(source);
    const envEmail = env ? await this.deps.state.settings.get(ENV_EMAIL_KEY + sha(env)) : undefined;
    return (await this.deps.state.accounts.list(source)).map((a) => ({
      source,
      email: a.email,
      id: a.id,
      status: a.status,
      signed_in: signedIn.has(a.email),
      grant: !signedIn.has(a.email) ? null : a.email === envEmail ? 'environment' : 'stored',
      last_pass_at: a.last_pass_at === null ? null : new Date(a.last_pass_at).toISOString(),
      error: a.error_message
        ? { message: a.error_message, ...(a.error_fix ? { fix: a.error_fix } : {}) }
        : null,
    }));
  }

  private async refreshTokenOf(account: GoogleAccount): Promise<string | undefined> {
    const env = this.envToken(account.source);
    if (env) {
      const envEmail = await this.deps.state.settings.get(ENV_EMAIL_KEY + sha(env));
      if (envEmail === account.email) return env;
    }
    return this.rt.secrets.get(refreshTokenKey(account.source, account.email));
  }

  /** An OAuth2Client on the owner's client and Google's (or the emulator's) endpoints. */
  newClient(refreshToken?: string, redirectUri?: string): OAuth2Client {
    const { clientId, clientSecret } = oauthClientSettings(this.rt, this.deps.env);
    const client = new OAuth2Client({
      clientId,
      clientSecret,
      ...(redirectUri ? { redirectUri } : {}),
      endpoints: {
        oauth2TokenUrl: googleTokenUrl(this.deps.env),
        oauth2RevokeUrl: googleRevokeUrl(this.deps.env),
      },
      // Credentials carry an expiry_date, and without this a 401 (a token revoked early, a
      // clock off) would not make the client refresh: the issue asks for one refresh on 401.
      forceRefreshOnFailure: true,
    });
    if (refreshToken) client.setCredentials({ refresh_token: refreshToken });
    return client;
  }

  async client(account: GoogleAccount): Promise<OAuth2Client> {
    const token = await this.refreshTokenOf(account);
    if (!token) {
      throw new GoogleSignInError(
        409,
        'not_signed_in',
        `${account.email} is not signed in to Google for ${account.source}.`,
        'Sign in again: POST /api/google/sign-in, open the URL, then POST /api/google/sign-in/complete (docs/google-oauth-client.md).',
      );
    }
    const client = this.newClient(token);
    // Google may hand out a new refresh token with a refresh; the old one then stops working.
    client.on('tokens', (t) => {
      if (t.refresh_token && t.refresh_token !== token && token !== this.envToken(account.source))
        this.deps.setSecret(refreshTokenKey(account.source, account.email), t.refresh_token);
    });
    return client;
  }

  async signInLost(account: GoogleAccount, err: unknown): Promise<void> {
    const google = oauthErrorOf(err);
    const fromEnv = (await this.refreshTokenOf(account)) === this.envToken(account.source);
    const message = `Google no longer accepts the sign-in of ${account.email} (${google?.error ?? 'invalid_grant'}${google?.description ? `: ${google.description}` : ''}): the access was removed at myaccount.google.com, the password changed, or the grant expired. Nothing is pulled for this account until it signs in again; everything else goes on.`;
    const fix = fromEnv
      ? 'Sign in again: POST /api/google/sign-in (the panel: Sources, Sign in) and paste back the address the browser ends on; or set a new GOOGLE_REFRESH_TOKEN and restart. If this happens every 7 days, publish the OAuth consent screen (docs/google-oauth-client.md).'
      : 'Sign in again: POST /api/google/sign-in (the panel: Sources, Sign in) and paste back the address the browser ends on. If this happens every 7 days, publish the OAuth consent screen to production (docs/google-oauth-client.md).';
    // The dead token is of no use any more; dropping it also stops every later pass from
    // asking Google again and raising the same alert over and over.
    if (fromEnv) {
      const env = this.envToken(account.source);
      if (env) this.lostEnvTokens.add(sha(env));
    } else {
      this.deps.setSecret(refreshTokenKey(account.source, account.email), null);
    }
    await this.deps.state.accounts.setStatus(account.id, 'needs_sign_in', { message, fix });
    this.log.error(
      { account: account.email, account_source: account.source, code: 'needs_sign_in', fix },
      message,
    );
  }

  /** A new grant from a completed sign-in: stored, and the account ready to pull. */
  async store(
    source: GoogleAccount['source'],
    email: string,
    refreshToken: string,
  ): Promise<GoogleAccount> {
    this.deps.setSecret(refreshTokenKey(source, email), refreshToken);
    const rec = await this.deps.state.accounts.upsert(source, email, Date.now());
    await this.deps.state.accounts.setStatus(rec.id, 'ok');
    this.log.info({ account: email, account_source: source }, `${email} signed in for ${source}`);
    return { source, email, id: rec.id };
  }

  /**
   * Sign-out: the grant revoked at Google and forgotten here. The account stays in the state
   * (paused, saying so) because its mirror and its backups stay: a sign-out deletes nothing.
   */
  async signOut(account: GoogleAccount): Promise<{ revoked: boolean; note?: string }> {
    const key = refreshTokenKey(account.source, account.email);
    const token = this.rt.secrets.get(key);
    const env = this.envToken(account.source);
    const envEmail = env ? await this.deps.state.settings.get(ENV_EMAIL_KEY + sha(env)) : undefined;
    let revoked = false;
    let note: string | undefined;
    if (token) {
      try {
        await this.newClient().revokeToken(token);
        revoked = true;
      } catch (err) {
        // Already revoked (invalid_token) is what we wanted; anything else is said, and the
        // token is forgotten anyway: the owner can remove the access at Google by hand.
        if (oauthErrorOf(err)?.error === 'invalid_token') revoked = true;
        else
          note = `Google could not be told (${(err as Error).message}); remove the access by hand at https://myaccount.google.com/permissions.`;
      }
      this.deps.setSecret(key, null);
    }
    if (envEmail === account.email && env) {
      note = `${note ? `${note} ` : ''}GOOGLE_REFRESH_TOKEN still grants this account: remove it from the environment and restart, or it is used again.`;
    }
    await this.deps.state.accounts.setStatus(account.id, 'paused', {
      message: `${account.email} was signed out on ${new Date().toISOString().slice(0, 10)}: nothing is pulled for it; its mirror and backups stay.`,
      fix: 'Sign in again to resume: POST /api/google/sign-in.',
    });
    this.log.info({ account: account.email, revoked }, `${account.email} signed out`);
    return { revoked, ...(note ? { note } : {}) };
  }

  /** The account's address, asked of Drive: only drive.readonly is needed, no `email` scope. */
  async emailOf(client: OAuth2Client): Promise<string> {
    const api = drive({ version: 'v3', auth: client, rootUrl: `${googleApiRoot(this.deps.env)}/` });
    // Bounded: the accounts list of the API waits on this for the GOOGLE_REFRESH_TOKEN account.
    const about = await api.about.get(
      { fields: 'user(emailAddress)' },
      { retry: false, timeout: 20_000 },
    );
    const email = about.data.user?.emailAddress;
    if (!email) throw new Error('Drive did not say which account this is (about.get had no user)');
    return email.toLowerCase();
  }
}
