/**
 * The seam between sign-in and the pull: which Google accounts are signed in, an OAuth client
 * for each, and what to do when a grant is lost.
 *
 * STAND-IN of the pull's worktree: only the scripted account of the environment
 * (GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET / GOOGLE_REFRESH_TOKEN), its email discovered with
 * `about.get`. The sign-in work replaces this file with the real one (stored grants, several
 * accounts); the pull imports nothing else from sign-in, so the interface below is the contract.
 */
import { createHash } from 'node:crypto';
import { auth, drive } from '@googleapis/drive';
import type { OAuth2Client } from 'google-auth-library';
import type { Logger } from '../log/index.js';
import type { State } from '../state/index.js';

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

/** A refresh that Google refused because the grant is revoked or expired. */
export function isInvalidGrant(err: unknown): boolean {
  const e = err as { response?: { data?: { error?: unknown } }; message?: unknown } | undefined;
  return (
    e?.response?.data?.error === 'invalid_grant' ||
    (typeof e?.message === 'string' && /\binvalid_grant\b/.test(e.message))
  );
}

/** GOOGLE_API_ROOT as an origin: Google's client keeps only the origin of its rootUrl. */
export function googleApiRoot(env: NodeJS.ProcessEnv = process.env): string {
  const raw = env.GOOGLE_API_ROOT || 'https://www.googleapis.com';
  try {
    return new URL(raw).origin;
  } catch {
    throw new Error(
      `GOOGLE_API_ROOT "${raw}" is not a URL: expected an origin such as https://www.googleapis.com`,
    );
  }
}

export function googleTokenUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.GOOGLE_OAUTH_TOKEN_URL || 'https://oauth2.googleapis.com/token';
}

/** The stand-in: the environment's account only. */
export function envGoogleAccounts(deps: {
  state: State;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}): GoogleAccounts {
  const env = deps.env ?? process.env;
  const now = deps.now ?? Date.now;
  const newClient = () => {
    const client = new auth.OAuth2({
      clientId: env.GOOGLE_CLIENT_ID,
      clientSecret: env.GOOGLE_CLIENT_SECRET,
      endpoints: { oauth2TokenUrl: googleTokenUrl(env) },
    });
    client.setCredentials({ refresh_token: env.GOOGLE_REFRESH_TOKEN });
    return client;
  };
  let discovered: Promise<GoogleAccount | undefined> | undefined;
  const discover = async (): Promise<GoogleAccount | undefined> => {
    if (!env.GOOGLE_REFRESH_TOKEN || !env.GOOGLE_CLIENT_ID || !env.GOOGLE_CLIENT_SECRET)
      return undefined;
    // The email of a refresh token does not change: asked once, remembered, so that a pass
    // with no change stays one Drive call.
    const key = `google.env_account.${createHash('sha256').update(env.GOOGLE_REFRESH_TOKEN).digest('hex').slice(0, 16)}`;
    const known = await deps.state.settings.get(key);
    if (known) {
      const rec = await deps.state.accounts.upsert('google_drive', known, now());
      return { source: 'google_drive', email: known, id: rec.id };
    }
    const api = drive({ version: 'v3', auth: newClient(), rootUrl: `${googleApiRoot(env)}/` });
    const about = await api.about.get({ fields: 'user(emailAddress)' });
    const email = about.data.user?.emailAddress;
    if (!email) throw new Error('Google did not say which account GOOGLE_REFRESH_TOKEN is for');
    const rec = await deps.state.accounts.upsert('google_drive', email, now());
    await deps.state.settings.set(key, email);
    return { source: 'google_drive', email, id: rec.id };
  };
  return {
    async list(source) {
      if (source !== 'google_drive') return [];
      discovered ??= discover().catch((err: unknown) => {
        discovered = undefined;
        throw err;
      });
      const a = await discovered;
      return a ? [a] : [];
    },
    async client() {
      return newClient();
    },
    async signInLost(account, err) {
      const error = {
        message: `Google refused the sign-in of ${account.email}: the grant was revoked or has expired`,
        fix: 'Sign in to this account again (a new GOOGLE_REFRESH_TOKEN, or the panel’s sign-in). Other accounts go on.',
      };
      await deps.state.accounts.setStatus(account.id, 'needs_sign_in', error);
      deps.logger.error(
        { source: 'google', account: account.email, err, fix: error.fix },
        error.message,
      );
    },
  };
}
