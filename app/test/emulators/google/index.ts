// The Google emulator for tests: Drive v3 and the OAuth 2.0 endpoints, on plain HTTP on
// 127.0.0.1 (a random port), started inside the test process. Test code only, never product
// code (DESIGN.md, tests in tiers): the product is pointed at it through the environment of
// CONTRACT.md, so a daemon run as a child process talks to it like any client.
//
// Starting it
//
//   const google = await startGoogleEmulator({
//     accounts: [{ email: 'ann@example.com', displayName: 'Ann', myDrive: [...], sharedWithMe: [...] }],
//     sharedDrives: [{ name: 'Team', members: ['ann@example.com'], children: [...] }],
//   });
//   env: GOOGLE_API_ROOT=google.apiRoot  GOOGLE_OAUTH_TOKEN_URL=google.tokenUrl
//        GOOGLE_CLIENT_ID / GOOGLE_CLIENT_SECRET = google.client.clientId / .clientSecret
//        GOOGLE_REFRESH_TOKEN = google.authorize('ann@example.com').refreshToken
//   ...
//   await google.close();
//
// The fixture (store.ts, NodeFixture): folders with children; files with `content` (a string,
// bytes, or `{ size, seed }` generated on the fly for large files); 'doc' | 'sheet' | 'slides' |
// 'drawing' | 'script' with `exports` per MIME type (default: a short text per format Drive
// offers); 'form' | 'site' | 'map' (no export); 'shortcut' with `target` (a fixture id); and on
// any item: id, description, starred, trashed, createdTime, modifiedTime, version, sharedWith,
// permissions. Names can be anything Drive allows ("a/b", 300 bytes, unicode, duplicates).
// Binary files get size, md5Checksum, sha1Checksum and sha256Checksum computed from the content;
// Google-native files get none, as on Drive.
//
// How the product points Google's client here (what the Drive pull must do, too):
//
//   import { auth, drive } from '@googleapis/drive';
//   const client = new auth.OAuth2({
//     clientId, clientSecret, redirectUri,
//     endpoints: { oauth2TokenUrl: process.env.GOOGLE_OAUTH_TOKEN_URL },  // token and refresh
//   });
//   client.setCredentials({ refresh_token });
//   const api = drive({ version: 'v3', auth: client, rootUrl: process.env.GOOGLE_API_ROOT + '/' });
//
// `endpoints` is OAuth2Client's option (google-auth-library 10) for every Google OAuth URL:
// oauth2TokenUrl (POST /token here), oauth2AuthBaseUrl (generateAuthUrl; `google.authUrl`),
// oauth2RevokeUrl (`google.revokeUrl`). `rootUrl` must be an origin: the client keeps only the
// method's path (/drive/v3/...), so a GOOGLE_API_ROOT with a path of its own would be dropped.
// `auth.OAuth2` of '@googleapis/drive' and `OAuth2Client` of 'google-auth-library' are one
// class: app/package.json pins google-auth-library to the version googleapis-common pins, so a
// single copy is loaded. The client retries GETs on 429 and 5xx by itself
// (gaxios: 3 retries, 100 ms first delay); pass `{ retry: false }` to see each answer.
// It refreshes an access token 5 minutes before its expiry_date; after a 401 it refreshes and
// retries once only when the credentials have no expiry_date or `forceRefreshOnFailure` is set.
//
// The consent (what the owner's browser does):
//
//   const url = client.generateAuthUrl({ access_type: 'offline', prompt: 'consent', scope,
//     code_challenge, code_challenge_method: CodeChallengeMethod.S256, state });
//   const back = google.consent(url, { account: 'ann@example.com' });  // or { deny: true }
//   // back = redirect_uri?code=...&scope=...&state=...; then client.getToken({ code, codeVerifier })
//
// consent() checks the URL as Google does (unknown client_id, redirect_uri not allowed for the
// client, no scope, no PKCE S256 challenge, unknown scope: a ConsentError, as Google shows an
// error page instead of redirecting). The token endpoint checks the code, its redirect_uri and
// the PKCE verifier, and answers Google's errors (oauth.ts). A refresh token comes with the
// first offline consent, and again with prompt=consent.
//
// Control interface for tests
//
//   google.apiRoot, .tokenUrl, .authUrl, .revokeUrl       where the product points
//   google.client                                        the OAuth client (id, secret)
//   google.authorize(account, { scopes? })               refresh + access token, no consent
//   google.consent(authUrl, { account, deny?, grantScopes? }) → the redirect URL
//   google.revoke(account)                               the owner removes the app: invalid_grant
//   google.expireAccessTokens(account?)                  access tokens answer 401 from now on
//   google.accessTokenLifetime = 2                       seconds, for new tokens (default 3599)
//   google.drive(account).create/updateContent/updateExports/rename/move/trash/untrash/
//                         deletePermanently/patch/share/unshare/flagAbusive/idOf/file/rootId
//   google.sharedDrives.create/rename/addMember/removeMember
//   google.expireChangeTokens(account)                   earlier page tokens answer 400 invalid
//   google.inject({ error: 'userRateLimitExceeded', times: 2, match: { api: 'files.list' } })
//       errors: userRateLimitExceeded | rateLimitExceeded (403) | tooManyRequests (429, with
//       `retryAfter` seconds) | dailyLimitExceeded | downloadQuotaExceeded | backendError (500)
//       | serviceUnavailable (503) | authError (401);
//       or { dropAfterBytes: K } (the body is cut after K bytes, the connection dropped),
//       or { delayMs }. `match`: { api, method, path, account, fileId, params } or a function
//       of the logged request; default: every Drive call (not the token endpoint). `times`
//       default 1 (Infinity: until clearFaults()).
//   google.rateLimit(10)                                 > 10 requests/s per user → 403
//                                                        userRateLimitExceeded; rateLimit(null) off
//   google.requests                                      the request log (faults.ts LoggedRequest)
//   google.calls({ api: 'changes.list' })                the logged requests that match
//   google.clearRequests()
//   google.close()
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DriveControl, SharedDriveControl } from './control.js';
import { DriveApi, type Answer } from './drive-api.js';
import { DriveApiError, driveErrors, OAuthError } from './errors.js';
import {
  Fault,
  FAULT_ERRORS,
  matches,
  RateLimiter,
  type ApiName,
  type FaultSpec,
  type LoggedRequest,
  type RequestMatcher,
} from './faults.js';
import { OAuthServer, type ConsentOptions, type OAuthClientConfig } from './oauth.js';
import { DriveStore, type AccountFixture, type SharedDriveFixture } from './store.js';

export { ConsentError, DriveApiError, OAuthError } from './errors.js';
export { SCOPES, TEST_CLIENT, type OAuthClientConfig } from './oauth.js';
export type { AccountFixture, NodeFixture, SharedDriveFixture } from './store.js';
export { EXPORT_FORMATS, EXPORT_LIMIT_BYTES, FOLDER, NATIVE_TYPES, SHORTCUT } from './store.js';
export type { FaultSpec, LoggedRequest, RequestMatcher } from './faults.js';
export { Content, type ContentSpec } from './content.js';

export interface GoogleEmulatorOptions {
  accounts: AccountFixture[];
  sharedDrives?: SharedDriveFixture[];
  /** OAuth clients (default: TEST_CLIENT, an 'installed' client requiring PKCE). */
  clients?: OAuthClientConfig[];
  /** Lifetime of access tokens in seconds (Google: 3599). */
  accessTokenLifetimeSeconds?: number;
  /** The clock of Drive's timestamps (createdTime, modifiedTime, change times). */
  clock?: () => Date;
}

export class GoogleEmulator {
  readonly store: DriveStore;
  readonly oauth: OAuthServer;
  readonly sharedDrives: SharedDriveControl;
  readonly requests: LoggedRequest[] = [];
  private readonly api: DriveApi;
  private readonly faults: Fault[] = [];
  private limiter: RateLimiter | undefined;
  private readonly clock: () => Date;
  private server: Server | undefined;
  private port = 0;

  constructor(opts: GoogleEmulatorOptions) {
    if (!opts.accounts?.length) throw new Error('startGoogleEmulator needs at least one account');
    this.clock = opts.clock ?? (() => new Date());
    this.store = new DriveStore(this.clock);
    for (const a of opts.accounts) this.store.addAccount(a);
    for (const a of opts.accounts) this.store.addSharedWithMe(a);
    for (const d of opts.sharedDrives ?? []) {
      for (const m of Array.isArray(d.members) ? d.members : Object.keys(d.members))
        if (!this.store.accounts.has(m)) this.store.person(m);
      this.store.addSharedDrive(d);
    }
    this.store.checkShortcuts();
    this.oauth = new OAuthServer(
      opts.clients ?? [],
      this.store.accounts,
      opts.accessTokenLifetimeSeconds,
    );
    this.sharedDrives = new SharedDriveControl(this.store);
    this.api = new DriveApi(this.store, () => this.origin);
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }
  /** For GOOGLE_API_ROOT (and the client's rootUrl, with a trailing slash). */
  get apiRoot(): string {
    return this.origin;
  }
  /** For GOOGLE_OAUTH_TOKEN_URL (OAuth2Client endpoints.oauth2TokenUrl). */
  get tokenUrl(): string {
    return `${this.origin}/token`;
  }
  /** OAuth2Client endpoints.oauth2AuthBaseUrl: GET answers a redirect, as after consent. */
  get authUrl(): string {
    return `${this.origin}/o/oauth2/v2/auth`;
  }
  /** OAuth2Client endpoints.oauth2RevokeUrl. */
  get revokeUrl(): string {
    return `${this.origin}/revoke`;
  }
  /** The first OAuth client (TEST_CLIENT unless the test gave its own). */
  get client(): Required<OAuthClientConfig> {
    return this.oauth.clients.values().next().value!;
  }
  get accessTokenLifetime(): number {
    return this.oauth.accessTokenLifetime;
  }
  set accessTokenLifetime(seconds: number) {
    this.oauth.accessTokenLifetime = seconds;
  }

  async listen(): Promise<this> {
    this.server = createServer((req, res) => {
      this.serve(req, res).catch((e: unknown) => {
        // A bug of the emulator: say so loudly rather than answer something plausible.
        console.error('google emulator:', e);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`google emulator bug: ${(e as Error).stack ?? String(e)}`);
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeAllConnections();
    await closed;
    this.server = undefined;
  }

  // ------------------------------------------------------------------ control

  drive(account: string): DriveControl {
    if (!this.store.accounts.has(account)) throw new Error(`no account ${account} in the emulator`);
    return new DriveControl(this.store, this.clock, account);
  }

  consent(authUrl: string, opts: ConsentOptions): string {
    return this.oauth.consent(authUrl, opts);
  }

  authorize(account: string, opts: { clientId?: string; scopes?: string[] } = {}) {
    return this.oauth.authorize(account, opts);
  }

  revoke(account: string): void {
    this.oauth.revokeAccount(account);
  }

  expireAccessTokens(account?: string): void {
    this.oauth.expireAccessTokens(account);
  }

  expireChangeTokens(account: string): void {
    const log = this.store.userLogs.get(account);
    if (!log) throw new Error(`no account ${account}`);
    log.oldestValidToken = this.store.headToken;
  }

  inject(spec: FaultSpec): Fault {
    if ('error' in spec && !(spec.error in FAULT_ERRORS))
      throw new Error(
        `unknown fault error ${spec.error}; one of ${Object.keys(FAULT_ERRORS).join(', ')}`,
      );
    const fault = new Fault(spec);
    this.faults.push(fault);
    return fault;
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  rateLimit(perSecond: number | null): void {
    this.limiter = perSecond === null ? undefined : new RateLimiter(perSecond);
  }

  calls(matcher?: RequestMatcher): LoggedRequest[] {
    return this.requests.filter((r) => matches(matcher, r));
  }

  clearRequests(): void {
    this.requests.length = 0;
  }

  // ------------------------------------------------------------------ HTTP

  private route(
    method: string,
    path: string,
    alt: string | undefined,
  ): { api: ApiName; fileId?: string } {
    const seg = path.split('/').slice(1).map(decodeURIComponent);
    if (path === '/token') return { api: 'token' };
    if (path === '/revoke') return { api: 'revoke' };
    if (path === '/o/oauth2/v2/auth') return { api: 'auth' };
    if (seg[0] === 'emulator' && seg[1] === 'export' && seg.length === 3)
      return { api: 'exportLink', fileId: seg[2] };
    if (seg[0] !== 'drive' || seg[1] !== 'v3' || method !== 'GET') return { api: 'unknown' };
    const [, , a, b, c] = seg;
    if (a === 'files' && seg.length === 3) return { api: 'files.list' };
    if (a === 'files' && seg.length === 4)
      return { api: alt === 'media' ? 'files.download' : 'files.get', fileId: b };
    if (a === 'files' && seg.length === 5 && c === 'export')
      return { api: 'files.export', fileId: b };
    if (a === 'changes' && seg.length === 3) return { api: 'changes.list' };
    if (a === 'changes' && b === 'startPageToken' && seg.length === 4)
      return { api: 'changes.getStartPageToken' };
    if (a === 'drives' && seg.length === 3) return { api: 'drives.list' };
    if (a === 'drives' && seg.length === 4) return { api: 'drives.get', fileId: b };
    if (a === 'about' && seg.length === 3) return { api: 'about.get' };
    return { api: 'unknown' };
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    const params: Record<string, string> = {};
    for (const [k, v] of url.searchParams) params[k] = v;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    const method = req.method ?? 'GET';
    const { api, fileId } = this.route(method, url.pathname, params.alt);
    const entry: LoggedRequest = {
      time: Date.now(),
      method,
      path: url.pathname,
      api,
      params,
      headers,
      account: this.oauth.accountOf(headers.authorization),
      fileId,
      status: 0,
    };
    this.requests.push(entry);
    const body = method === 'POST' ? await readBody(req) : '';

    let dropAfter: number | undefined;
    for (const fault of this.faults) {
      if (fault.remaining <= 0 || !matches(fault.spec.match, entry)) continue;
      fault.hits++;
      entry.fault = fault.label;
      const spec = fault.spec;
      if ('delayMs' in spec) {
        await new Promise((r) => setTimeout(r, spec.delayMs));
        continue;
      }
      if ('dropAfterBytes' in spec) {
        dropAfter = spec.dropAfterBytes;
        continue;
      }
      const error = FAULT_ERRORS[spec.error]();
      const extra: Record<string, string> =
        spec.retryAfter !== undefined ? { 'retry-after': String(spec.retryAfter) } : {};
      if (api === 'token' || api === 'revoke') {
        const e = new OAuthError(error.status, error.item.reason, error.item.message);
        return this.sendOAuthError(res, entry, e, extra);
      }
      return this.sendDriveError(
        res,
        entry,
        new DriveApiError(
          error.status,
          error.item,
          { ...error.headers, ...extra },
          error.grpcStatus,
        ),
      );
    }

    try {
      switch (api) {
        case 'token': {
          if (method !== 'POST') throw new OAuthError(405, 'invalid_request', 'POST only');
          const form = new URLSearchParams(body);
          return this.sendJson(
            res,
            entry,
            200,
            this.oauth.token(form, headers.authorization),
            {
              'cache-control': 'no-cache, no-store, max-age=0, must-revalidate',
            },
            dropAfter,
          );
        }
        case 'revoke': {
          const token = params.token ?? new URLSearchParams(body).get('token') ?? '';
          this.oauth.revokeToken(token);
          return this.sendJson(res, entry, 200, {}, {}, dropAfter);
        }
        case 'auth': {
          const account = params.login_hint ?? [...this.store.accounts][0]!;
          const location = this.oauth.consent(url.toString(), { account });
          entry.status = 302;
          res.writeHead(302, { location });
          res.end();
          return;
        }
        case 'unknown': {
          if (url.pathname.startsWith('/drive/v3/'))
            throw driveErrors.notImplemented(`${method} ${url.pathname}`);
          entry.status = 404;
          res.writeHead(404, { 'content-type': 'text/html; charset=UTF-8' });
          res.end(
            `<!DOCTYPE html><title>Error 404 (Not Found)</title><p>${url.pathname} not found.`,
          );
          return;
        }
        default: {
          const caller = this.oauth.check(headers.authorization);
          entry.account = caller.account;
          if (this.limiter?.over(caller.account, Date.now())) {
            entry.fault = 'rateLimit';
            throw driveErrors.userRateLimitExceeded();
          }
          const answer = this.api.handle(
            { api: api === 'files.download' ? 'files.get' : api, fileId, params, headers },
            caller,
          );
          return this.sendAnswer(res, entry, answer, dropAfter);
        }
      }
    } catch (e) {
      if (this.api.lastNote) entry.note = this.api.lastNote;
      if (e instanceof DriveApiError) return this.sendDriveError(res, entry, e);
      if (e instanceof OAuthError) return this.sendOAuthError(res, entry, e, {});
      if (e instanceof Error && e.name === 'ConsentError' && api === 'auth') {
        entry.status = 400;
        res.writeHead(400, { 'content-type': 'text/plain; charset=UTF-8' });
        res.end(e.message);
        return;
      }
      throw e;
    }
  }

  private sendDriveError(res: ServerResponse, entry: LoggedRequest, e: DriveApiError): void {
    entry.reason = e.item.reason;
    this.sendJson(res, entry, e.status, e.body(), e.headers);
  }

  private sendOAuthError(
    res: ServerResponse,
    entry: LoggedRequest,
    e: OAuthError,
    headers: Record<string, string>,
  ): void {
    entry.reason = e.error;
    this.sendJson(res, entry, e.status, e.body(), headers);
  }

  private sendJson(
    res: ServerResponse,
    entry: LoggedRequest,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
    dropAfter?: number,
  ): void {
    const text = Buffer.from(JSON.stringify(body, null, 2) + '\n');
    entry.status = status;
    res.writeHead(status, {
      'content-type': 'application/json; charset=UTF-8',
      'content-length': String(text.length),
      vary: 'Origin, X-Origin, Referer',
      ...headers,
    });
    if (dropAfter !== undefined) {
      res.write(text.subarray(0, dropAfter), () => res.destroy());
      return;
    }
    res.end(text);
  }

  private sendAnswer(
    res: ServerResponse,
    entry: LoggedRequest,
    answer: Answer,
    dropAfter?: number,
  ): void {
    if (answer.kind === 'json')
      return this.sendJson(res, entry, answer.status, answer.body, answer.headers, dropAfter);
    entry.status = answer.status;
    res.writeHead(answer.status, {
      'content-type': answer.mimeType,
      'content-length': String(answer.end - answer.start),
      'cache-control': 'private, max-age=0',
      ...answer.headers,
    });
    const stream = answer.content.stream(answer.start, answer.end);
    if (dropAfter === undefined) {
      stream.pipe(res);
      return;
    }
    // Send the first dropAfter bytes, then cut the connection as a broken network would.
    let sent = 0;
    stream.on('data', (chunk: Buffer) => {
      const room = dropAfter - sent;
      if (room <= 0) return;
      const part = chunk.subarray(0, room);
      sent += part.length;
      const full = sent >= dropAfter;
      res.write(part, () => {
        if (full) {
          stream.destroy();
          res.destroy();
        }
      });
    });
    stream.on('end', () => res.end());
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1024 * 1024) req.destroy(new Error('request body over 1 MiB'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Starts an emulator on 127.0.0.1 with a random port; close() it after the test. */
export async function startGoogleEmulator(opts: GoogleEmulatorOptions): Promise<GoogleEmulator> {
  return new GoogleEmulator(opts).listen();
}
