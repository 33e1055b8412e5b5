// What a test injects to see the product cope: Google's errors for the next N matching
// requests, a download cut after K bytes, slow answers, and a per-user rate limiter that
// answers 403 userRateLimitExceeded above X requests a second, as Drive does. Plus the request
// log the tests assert on ("a poll with no change is one call").
import { driveErrors, type DriveApiError } from './errors.js';

/** The Drive methods (and emulator endpoints) a request can be matched by. */
export type ApiName =
  | 'files.list'
  | 'files.get'
  | 'files.download'
  | 'files.export'
  | 'exportLink'
  | 'changes.getStartPageToken'
  | 'changes.list'
  | 'drives.list'
  | 'drives.get'
  | 'about.get'
  | 'token'
  | 'revoke'
  | 'auth'
  | 'unknown';

/** One request as the emulator saw it. */
export interface LoggedRequest {
  time: number;
  method: string;
  /** Path without the query, e.g. /drive/v3/files/abc. */
  path: string;
  api: ApiName;
  params: Record<string, string>;
  /** Request headers (lower-case names); Authorization is kept so tests can check it is sent. */
  headers: Record<string, string>;
  /** The account of a valid bearer token (undefined before auth or when it is not valid). */
  account: string | undefined;
  fileId: string | undefined;
  status: number;
  /** The `reason` of an error answer. */
  reason?: string;
  /** Which fault or limiter answered, if one did. */
  fault?: string;
  /** Why the emulator refused something it does not emulate (e.g. a `q` term). */
  note?: string;
}

export type RequestMatcher =
  | ((req: LoggedRequest) => boolean)
  | {
      api?: ApiName | ApiName[];
      method?: string;
      path?: string | RegExp;
      account?: string;
      fileId?: string;
      /** Query parameters that must be present with these values (or match these patterns). */
      params?: Record<string, string | RegExp>;
    };

/** The errors a fault can answer, each with Google's status and body. */
export const FAULT_ERRORS = {
  userRateLimitExceeded: () => driveErrors.userRateLimitExceeded(),
  rateLimitExceeded: () => driveErrors.rateLimitExceeded(403),
  tooManyRequests: () => driveErrors.rateLimitExceeded(429),
  dailyLimitExceeded: () => driveErrors.dailyLimitExceeded(),
  downloadQuotaExceeded: () => driveErrors.downloadQuotaExceeded(),
  backendError: () => driveErrors.backendError(),
  serviceUnavailable: () => driveErrors.serviceUnavailable(),
  authError: () => driveErrors.authError(),
} satisfies Record<string, () => DriveApiError>;

export type FaultError = keyof typeof FAULT_ERRORS;

export type FaultAction =
  /** Answer this Google error; `retryAfter` (seconds) adds a Retry-After header. */
  | { error: FaultError; retryAfter?: number }
  /** Send the headers and the first `bytes` bytes of the body, then drop the connection. */
  | { dropAfterBytes: number }
  /** Wait this long before answering normally. */
  | { delayMs: number };

export type FaultSpec = FaultAction & {
  /** Which requests (default: every Drive API call, not the token endpoint). */
  match?: RequestMatcher;
  /** How many matching requests it hits (default 1; Infinity for all of them). */
  times?: number;
};

export class Fault {
  hits = 0;
  constructor(readonly spec: FaultSpec) {}
  get remaining(): number {
    return (this.spec.times ?? 1) - this.hits;
  }
  get label(): string {
    const s = this.spec;
    return 'error' in s
      ? s.error
      : 'dropAfterBytes' in s
        ? `drop@${s.dropAfterBytes}`
        : `delay${s.delayMs}ms`;
  }
}

const DRIVE_APIS = new Set<ApiName>([
  'files.list',
  'files.get',
  'files.download',
  'files.export',
  'exportLink',
  'changes.getStartPageToken',
  'changes.list',
  'drives.list',
  'drives.get',
  'about.get',
]);

export function matches(m: RequestMatcher | undefined, req: LoggedRequest): boolean {
  if (m === undefined) return DRIVE_APIS.has(req.api);
  if (typeof m === 'function') return m(req);
  if (m.api !== undefined && !(Array.isArray(m.api) ? m.api : [m.api]).includes(req.api))
    return false;
  if (m.api === undefined && !DRIVE_APIS.has(req.api)) return false;
  if (m.method && m.method.toUpperCase() !== req.method) return false;
  if (
    m.path !== undefined &&
    !(typeof m.path === 'string' ? req.path === m.path : m.path.test(req.path))
  )
    return false;
  if (m.account !== undefined && m.account !== req.account) return false;
  if (m.fileId !== undefined && m.fileId !== req.fileId) return false;
  for (const [k, v] of Object.entries(m.params ?? {})) {
    const got = req.params[k];
    if (got === undefined || (typeof v === 'string' ? got !== v : !v.test(got))) return false;
  }
  return true;
}

/** Drive's per-user limit: above `perSecond` requests in any second, 403 userRateLimitExceeded. */
export class RateLimiter {
  private readonly seen = new Map<string, number[]>();
  constructor(readonly perSecond: number) {
    if (!(perSecond > 0))
      throw new Error(`rate limit must be above 0 requests/s, got ${perSecond}`);
  }

  /** Counts the request; true when it is over the limit (and so not counted as served). */
  over(account: string, now: number): boolean {
    const times = (this.seen.get(account) ?? []).filter((t) => t > now - 1000);
    const over = times.length >= this.perSecond;
    if (!over) times.push(now);
    this.seen.set(account, times);
    return over;
  }
}
