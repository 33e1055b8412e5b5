/**
 * Google's retry policy, owned here rather than left to the client library (whose own retries
 * are turned off): 403 userRateLimitExceeded / rateLimitExceeded, 429 and 5xx wait with
 * truncated exponential backoff and jitter, or as long as Retry-After says; network errors
 * retry the same way; a 401 refreshes the access token once. Everything else is final.
 */

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** First backoff, in milliseconds. */
  baseMs: number;
  /** The truncation: no single wait longer than this (Google suggests 32-64 s). */
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 7, baseMs: 1000, maxMs: 32_000 };

export type Verdict =
  { kind: 'retry'; waitMs?: number } | { kind: 'refresh' } | { kind: 'final' } | { kind: 'quota' };

/** What an error of Google's client (gaxios) or of the network says about trying again. */
export function classify(err: unknown): Verdict {
  const e = err as {
    status?: number;
    code?: string | number;
    response?: { status?: number; headers?: unknown; data?: unknown };
  };
  const status = e?.response?.status ?? (typeof e?.status === 'number' ? e.status : undefined);
  const reason = errorReason(err);
  if (status === undefined) {
    // No answer at all: a dropped connection, a reset, a timeout.
    return { kind: 'retry' };
  }
  const waitMs = retryAfterMs(e.response?.headers);
  if (status === 401) return { kind: 'refresh' };
  if (status === 403 && reason === 'downloadQuotaExceeded') return { kind: 'quota' };
  if (status === 403 && (reason === 'userRateLimitExceeded' || reason === 'rateLimitExceeded'))
    return { kind: 'retry', ...(waitMs !== undefined ? { waitMs } : {}) };
  if (status === 429 || status >= 500)
    return { kind: 'retry', ...(waitMs !== undefined ? { waitMs } : {}) };
  return { kind: 'final' };
}

/** Drive's error `reason` (errors[0].reason of its JSON body), when there is one. */
export function errorReason(err: unknown): string | undefined {
  const data = (err as { response?: { data?: unknown } })?.response?.data;
  const body =
    typeof data === 'string'
      ? (() => {
          try {
            return JSON.parse(data) as unknown;
          } catch {
            return undefined;
          }
        })()
      : data;
  const error = (body as { error?: { errors?: { reason?: string }[]; status?: string } })?.error;
  const direct =
    error?.errors?.[0]?.reason ?? (err as { errors?: { reason?: string }[] })?.errors?.[0]?.reason;
  if (direct) return direct;
  // A streamed request's error carries Google's JSON body in its message only.
  const msg = (err as { message?: unknown })?.message;
  return typeof msg === 'string' ? /"reason":\s*"(\w+)"/.exec(msg)?.[1] : undefined;
}

function retryAfterMs(headers: unknown): number | undefined {
  let raw: string | null | undefined;
  if (headers && typeof (headers as Headers).get === 'function')
    raw = (headers as Headers).get('retry-after');
  else if (headers && typeof headers === 'object')
    raw = (headers as Record<string, string | undefined>)['retry-after'];
  if (!raw) return undefined;
  if (/^\d+$/.test(raw.trim())) return Number(raw) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The wait before attempt `n` (1 = the first retry): min(max, base·2^(n-1)) plus up to 1 s of jitter. */
export function backoffMs(n: number, policy: RetryPolicy, random: () => number): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** (n - 1));
  return Math.min(policy.maxMs, exp + Math.floor(random() * Math.min(1000, policy.baseMs)));
}

export interface RetryDeps {
  policy?: RetryPolicy;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  /** Called on a 401, once: gets a fresh access token. */
  refresh?: () => Promise<void>;
  signal?: AbortSignal;
  onRetry?: (info: { attempt: number; waitMs: number; err: unknown }) => void;
}

export class QuotaExceeded extends Error {
  override name = 'QuotaExceeded';
}

export const abortableSleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Runs `fn` under the policy; the last error is thrown when the attempts are used up. */
export async function withRetry<T>(fn: () => Promise<T>, deps: RetryDeps = {}): Promise<T> {
  const policy = deps.policy ?? DEFAULT_RETRY;
  const sleep = deps.sleep ?? abortableSleep;
  const random = deps.random ?? Math.random;
  let refreshed = false;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      deps.signal?.throwIfAborted();
      const v = classify(err);
      if (v.kind === 'refresh' && !refreshed && deps.refresh) {
        refreshed = true;
        await deps.refresh();
        attempt--; // a refresh is not a failed attempt
        continue;
      }
      if (v.kind === 'quota') throw new QuotaExceeded(messageOf(err), { cause: err });
      if (v.kind !== 'retry' || attempt >= policy.attempts) throw err;
      // Google's Retry-After wins over the backoff, even when longer than its truncation.
      const waitMs = v.waitMs ?? backoffMs(attempt, policy, random);
      deps.onRetry?.({ attempt, waitMs, err });
      await sleep(waitMs, deps.signal);
    }
  }
}

export function messageOf(err: unknown): string {
  const reason = errorReason(err);
  const msg = (err as Error)?.message ?? String(err);
  return reason && !msg.includes(reason) ? `${msg} (${reason})` : msg;
}
