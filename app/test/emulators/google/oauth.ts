// Google's OAuth 2.0 for an installed or web app, as the emulator plays it: the consent step
// (what the owner's browser does at accounts.google.com), the token endpoint (authorization
// code with PKCE S256, RFC 7636; refresh token), revocation, and the bearer check every Drive
// call goes through. Errors carry Google's codes and descriptions: `invalid_grant` "Malformed
// auth code." / "Bad Request" (used or expired code) / "Missing code verifier." / "Invalid code
// verifier." / "Token has been expired or revoked.", `invalid_client` "The OAuth client was not
// found." / "Unauthorized", `redirect_uri_mismatch`, `unsupported_grant_type`.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConsentError, driveErrors, OAuthError } from './errors.js';

export interface OAuthClientConfig {
  clientId: string;
  clientSecret: string;
  /**
   * 'installed' (a desktop app, Google's advice for a device on the owner's network): any
   * loopback redirect (http://127.0.0.1:<any port>/..., http://localhost...) is accepted, as
   * RFC 8252 says; 'web': only the exact registered `redirectUris`.
   */
  type?: 'installed' | 'web';
  redirectUris?: string[];
  /** Refuse authorization requests without PKCE (S256). Default true: the product must use it. */
  requirePkce?: boolean;
}

/** The client every emulator knows unless the test gives its own. */
export const TEST_CLIENT: Required<OAuthClientConfig> = {
  clientId: '1234567890-backupdtest.apps.googleusercontent.com',
  clientSecret: 'GOCSPX-backupd-test-secret',
  type: 'installed',
  redirectUris: [],
  requirePkce: true,
};

export const SCOPES = {
  drive: 'https://www.googleapis.com/auth/drive',
  driveReadonly: 'https://www.googleapis.com/auth/drive.readonly',
  driveMetadataReadonly: 'https://www.googleapis.com/auth/drive.metadata.readonly',
  driveMetadata: 'https://www.googleapis.com/auth/drive.metadata',
  driveFile: 'https://www.googleapis.com/auth/drive.file',
  photosPicker: 'https://www.googleapis.com/auth/photospicker.mediaitems.readonly',
  email: 'https://www.googleapis.com/auth/userinfo.email',
  profile: 'https://www.googleapis.com/auth/userinfo.profile',
} as const;

const KNOWN_SCOPES = new Set<string>([...Object.values(SCOPES), 'openid', 'email', 'profile']);
const CONTENT_SCOPES = new Set<string>([SCOPES.drive, SCOPES.driveReadonly]);
const METADATA_SCOPES = new Set<string>([SCOPES.driveMetadata, SCOPES.driveMetadataReadonly]);

interface Grant {
  account: string;
  clientId: string;
  scopes: Set<string>;
  revoked: boolean;
  hasRefreshToken: boolean;
}

interface Code {
  grant: Grant;
  clientId: string;
  redirectUri: string;
  challenge: string | undefined;
  scopes: string[];
  offline: boolean;
  forceConsent: boolean;
  expiresAt: number;
  used: boolean;
}

interface AccessToken {
  grant: Grant;
  scopes: string[];
  expiresAt: number;
}

/** What a valid bearer token gives a Drive call. */
export interface Caller {
  account: string;
  /** 'content' with drive or drive.readonly; 'metadata' with the metadata scopes only. */
  access: 'content' | 'metadata';
}

export interface ConsentOptions {
  /** The account that signs in on the consent screen (one of the emulator's accounts). */
  account: string;
  /** The owner presses "Cancel": the browser ends on redirect_uri?error=access_denied. */
  deny?: boolean;
  /** Granular consent: grant only these of the requested scopes (default all of them). */
  grantScopes?: string[];
}

const b64url = (buf: Buffer) => buf.toString('base64url');
const sha256url = (text: string) => b64url(createHash('sha256').update(text, 'ascii').digest());

export class OAuthServer {
  readonly clients = new Map<string, Required<OAuthClientConfig>>();
  private readonly grants = new Map<string, Grant>();
  private readonly codes = new Map<string, Code>();
  private readonly refreshTokens = new Map<string, Grant>();
  private readonly accessTokens = new Map<string, AccessToken>();
  /** Access token lifetime in seconds (Google: 3599). */
  accessTokenLifetime: number;

  constructor(
    clients: OAuthClientConfig[],
    private readonly accounts: Set<string>,
    accessTokenLifetime = 3599,
  ) {
    for (const c of clients.length ? clients : [TEST_CLIENT])
      this.clients.set(c.clientId, { ...TEST_CLIENT, ...c, redirectUris: c.redirectUris ?? [] });
    this.accessTokenLifetime = accessTokenLifetime;
  }

  private grantFor(account: string, clientId: string): Grant {
    const key = `${account}\n${clientId}`;
    let grant = this.grants.get(key);
    if (!grant || grant.revoked) {
      grant = { account, clientId, scopes: new Set(), revoked: false, hasRefreshToken: false };
      this.grants.set(key, grant);
    }
    return grant;
  }

  private redirectAllowed(client: Required<OAuthClientConfig>, uri: string): boolean {
    if (client.redirectUris.includes(uri)) return true;
    if (client.type !== 'installed') return false;
    try {
      const u = new URL(uri);
      return (
        u.protocol === 'http:' &&
        ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname) &&
        u.hash === ''
      );
    } catch {
      return false;
    }
  }

  /**
   * The owner's browser at the authorization URL: validates it as Google does and returns
   * the URL the browser ends on (redirect_uri?code=...&scope=...&state=...). What Google would
   * show as an error page instead throws a ConsentError.
   */
  consent(authUrl: string, opts: ConsentOptions): string {
    let url: URL;
    try {
      url = new URL(authUrl);
    } catch {
      throw new ConsentError('invalid_request', `not a URL: ${authUrl}`);
    }
    const q = url.searchParams;
    const clientId = q.get('client_id');
    if (!clientId)
      throw new ConsentError('invalid_request', 'Missing required parameter: client_id');
    const client = this.clients.get(clientId);
    if (!client) throw new ConsentError('invalid_client', 'The OAuth client was not found.');
    const redirectUri = q.get('redirect_uri');
    if (!redirectUri)
      throw new ConsentError('invalid_request', 'Missing required parameter: redirect_uri');
    if (!this.redirectAllowed(client, redirectUri))
      throw new ConsentError(
        'redirect_uri_mismatch',
        `You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. redirect_uri=${redirectUri}`,
      );
    const responseType = q.get('response_type');
    if (!responseType)
      throw new ConsentError('invalid_request', 'Required parameter is missing: response_type');
    if (responseType !== 'code')
      throw new ConsentError('unsupported_response_type', `Invalid response_type: ${responseType}`);
    const scopeText = q.get('scope');
    if (!scopeText) throw new ConsentError('invalid_request', 'Missing required parameter: scope');
    const scopes = scopeText.split(/[\s+]+/).filter(Boolean);
    const unknown = scopes.filter((s) => !KNOWN_SCOPES.has(s));
    if (unknown.length)
      throw new ConsentError(
        'invalid_scope',
        `Some requested scopes were invalid. {invalid=[${unknown.join(', ')}]}`,
      );
    const challenge = q.get('code_challenge') ?? undefined;
    const method = q.get('code_challenge_method') ?? (challenge ? 'plain' : undefined);
    if (client.requirePkce && !challenge)
      throw new ConsentError('invalid_request', 'Missing required parameter: code_challenge');
    if (method !== undefined && method !== 'S256')
      throw new ConsentError(
        'invalid_request',
        `Invalid code_challenge_method: ${method} (the emulator accepts S256 only)`,
      );
    if (challenge && !/^[A-Za-z0-9_-]{43}$/.test(challenge))
      throw new ConsentError('invalid_request', 'Invalid code_challenge.');
    if (!this.accounts.has(opts.account))
      throw new Error(
        `consent: ${opts.account} is not an account of this emulator (${[...this.accounts].join(', ')})`,
      );
    const back = new URL(redirectUri);
    const state = q.get('state');
    if (opts.deny) {
      back.searchParams.set('error', 'access_denied');
      if (state !== null) back.searchParams.set('state', state);
      return back.toString();
    }
    const granted = opts.grantScopes ? scopes.filter((s) => opts.grantScopes!.includes(s)) : scopes;
    const grant = this.grantFor(opts.account, clientId);
    const code = `4/0A${b64url(randomBytes(32))}`;
    this.codes.set(code, {
      grant,
      clientId,
      redirectUri,
      challenge,
      scopes: granted,
      offline: q.get('access_type') === 'offline',
      forceConsent: (q.get('prompt') ?? '').split(' ').includes('consent'),
      expiresAt: Date.now() + 10 * 60_000,
      used: false,
    });
    back.searchParams.set('code', code);
    back.searchParams.set('scope', granted.join(' '));
    if (state !== null) back.searchParams.set('state', state);
    return back.toString();
  }

  /** POST /token: the form fields (and an Authorization: Basic header, if any). */
  token(form: URLSearchParams, authorization: string | undefined): Record<string, unknown> {
    const grantType = form.get('grant_type') ?? '';
    let clientId = form.get('client_id');
    let clientSecret = form.get('client_secret');
    if (authorization?.startsWith('Basic ')) {
      const [id, secret] = Buffer.from(authorization.slice(6), 'base64').toString().split(':');
      clientId ??= decodeURIComponent(id ?? '');
      clientSecret ??= decodeURIComponent(secret ?? '');
    }
    if (grantType !== 'authorization_code' && grantType !== 'refresh_token')
      throw new OAuthError(400, 'unsupported_grant_type', `Invalid grant_type: ${grantType}`);
    if (!clientId)
      throw new OAuthError(400, 'invalid_request', 'Could not determine client ID from request.');
    const client = this.clients.get(clientId);
    if (!client) throw new OAuthError(401, 'invalid_client', 'The OAuth client was not found.');
    if (!clientSecret || !safeEqual(clientSecret, client.clientSecret))
      throw new OAuthError(401, 'invalid_client', 'Unauthorized');
    return grantType === 'authorization_code'
      ? this.exchangeCode(form, clientId)
      : this.refresh(form, clientId);
  }

  private exchangeCode(form: URLSearchParams, clientId: string): Record<string, unknown> {
    const codeText = form.get('code');
    if (!codeText) throw new OAuthError(400, 'invalid_request', 'Missing required parameter: code');
    const code = this.codes.get(codeText);
    if (!code) throw new OAuthError(400, 'invalid_grant', 'Malformed auth code.');
    if (
      code.used ||
      code.expiresAt < Date.now() ||
      code.clientId !== clientId ||
      code.grant.revoked
    )
      throw new OAuthError(400, 'invalid_grant', 'Bad Request');
    if (form.get('redirect_uri') !== code.redirectUri)
      throw new OAuthError(400, 'redirect_uri_mismatch', 'Bad Request');
    if (code.challenge !== undefined) {
      const verifier = form.get('code_verifier');
      if (!verifier) throw new OAuthError(400, 'invalid_grant', 'Missing code verifier.');
      if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier) || sha256url(verifier) !== code.challenge)
        throw new OAuthError(400, 'invalid_grant', 'Invalid code verifier.');
    } else if (form.get('code_verifier')) {
      throw new OAuthError(400, 'invalid_grant', 'code_verifier or verifier is not needed.');
    }
    code.used = true;
    const grant = code.grant;
    for (const s of code.scopes) grant.scopes.add(s);
    const out: Record<string, unknown> = this.issueAccess(grant, code.scopes);
    // Google sends a refresh token with the first offline consent, and again only when the
    // owner was asked again (prompt=consent).
    if (code.offline && (code.forceConsent || !grant.hasRefreshToken)) {
      out.refresh_token = this.issueRefresh(grant);
    }
    if (code.scopes.includes('openid')) out.id_token = idToken(grant, clientId);
    return out;
  }

  private refresh(form: URLSearchParams, clientId: string): Record<string, unknown> {
    const token = form.get('refresh_token');
    if (!token)
      throw new OAuthError(400, 'invalid_request', 'Missing required parameter: refresh_token');
    const grant = this.refreshTokens.get(token);
    if (!grant || grant.revoked)
      throw new OAuthError(400, 'invalid_grant', 'Token has been expired or revoked.');
    if (grant.clientId !== clientId)
      throw new OAuthError(401, 'unauthorized_client', 'Unauthorized');
    return this.issueAccess(grant, [...grant.scopes]);
  }

  private issueAccess(grant: Grant, scopes: string[]): Record<string, unknown> {
    const token = `ya29.a0${b64url(randomBytes(48))}`;
    this.accessTokens.set(token, {
      grant,
      scopes,
      expiresAt: Date.now() + this.accessTokenLifetime * 1000,
    });
    return {
      access_token: token,
      expires_in: this.accessTokenLifetime,
      scope: scopes.join(' '),
      token_type: 'Bearer',
    };
  }

  private issueRefresh(grant: Grant): string {
    const token = `1//0g${b64url(randomBytes(40))}`;
    this.refreshTokens.set(token, grant);
    grant.hasRefreshToken = true;
    return token;
  }

  /** For tests that skip the consent: a grant with its refresh and access tokens. */
  authorize(
    account: string,
    opts: { clientId?: string; scopes?: string[] } = {},
  ): { refreshToken: string; accessToken: string; clientId: string; clientSecret: string } {
    if (!this.accounts.has(account)) throw new Error(`authorize: no account ${account}`);
    const client = opts.clientId
      ? this.clients.get(opts.clientId)
      : this.clients.values().next().value;
    if (!client) throw new Error(`authorize: no client ${opts.clientId}`);
    const grant = this.grantFor(account, client.clientId);
    const scopes = opts.scopes ?? [SCOPES.driveReadonly];
    for (const s of scopes) grant.scopes.add(s);
    const refreshToken = this.issueRefresh(grant);
    const accessToken = this.issueAccess(grant, scopes).access_token as string;
    return {
      refreshToken,
      accessToken,
      clientId: client.clientId,
      clientSecret: client.clientSecret,
    };
  }

  /** POST /revoke?token=: revokes the grant behind an access or refresh token. */
  revokeToken(token: string): void {
    const grant = this.refreshTokens.get(token) ?? this.accessTokens.get(token)?.grant;
    if (!grant || grant.revoked)
      throw new OAuthError(400, 'invalid_token', 'Token expired or revoked');
    grant.revoked = true;
  }

  /** The owner removes the app's access (myaccount.google.com): every token of the account dies. */
  revokeAccount(account: string): void {
    for (const grant of this.grants.values()) if (grant.account === account) grant.revoked = true;
  }

  /** Makes the current access tokens (of one account, or all) expired at once. */
  expireAccessTokens(account?: string): void {
    for (const t of this.accessTokens.values())
      if (!account || t.grant.account === account) t.expiresAt = 0;
  }

  /** The bearer check of every Drive call; throws Google's 401/403. */
  check(authorization: string | undefined): Caller {
    if (!authorization) throw driveErrors.loginRequired();
    const m = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!m) throw driveErrors.authError();
    const token = this.accessTokens.get(m[1]!);
    if (!token || token.grant.revoked || token.expiresAt <= Date.now())
      throw driveErrors.authError();
    const access = token.scopes.some((s) => CONTENT_SCOPES.has(s))
      ? 'content'
      : token.scopes.some((s) => METADATA_SCOPES.has(s))
        ? 'metadata'
        : undefined;
    if (!access) throw driveErrors.insufficientPermissions();
    return { account: token.grant.account, access };
  }

  /** The account behind a token, for the request log; undefined when it is not valid. */
  accountOf(authorization: string | undefined): string | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '');
    return m ? this.accessTokens.get(m[1]!)?.grant.account : undefined;
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** An ID token with the claims Google puts in it; its signature is not a real one. */
function idToken(grant: Grant, clientId: string): string {
  const now = Math.floor(Date.now() / 1000);
  const part = (o: unknown) => b64url(Buffer.from(JSON.stringify(o)));
  return [
    part({ alg: 'RS256', kid: 'emulator', typ: 'JWT' }),
    part({
      iss: 'https://accounts.google.com',
      aud: clientId,
      sub: createHash('sha256').update(grant.account).digest('hex').slice(0, 21),
      email: grant.account,
      email_verified: true,
      iat: now,
      exp: now + 3600,
    }),
    b64url(Buffer.from('not-signed-by-google')),
  ].join('.');
}
