// Every call the panel makes to backupd goes through this file.
import type { ErrorBody, LogPage, Ok, Session, SetupState, Status, Version } from './types';

/**
 * Where the API lives. Empty (the default) means the panel's own origin, which is how the
 * appliance serves it; a remote build (Vercel) sets VITE_API_BASE to the appliance's origin.
 */
export const API_BASE: string = (import.meta.env.VITE_API_BASE ?? '').replace(/\/+$/, '');

/** The URL of an API path such as `/api/status`. */
export function apiUrl(path: string): string {
  return `${API_BASE}${path}`;
}

/** A failed call, carrying what the daemon said went wrong and what to do about it. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fix: string | undefined;
  /** Seconds to wait before trying again (from `Retry-After`), when the daemon said so. */
  readonly retryAfter: number | undefined;

  constructor(status: number, code: string, message: string, fix?: string, retryAfter?: number) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.fix = fix;
    this.retryAfter = retryAfter;
  }
}

/** Any thrown value, as something the panel can show. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new ApiError(0, 'client_error', message);
}

function isErrorBody(body: unknown): body is ErrorBody {
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  const e = (body as { error: unknown }).error;
  return (
    typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string'
  );
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

async function request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const init: RequestInit = { method, credentials: 'include', headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }

  let res: Response;
  try {
    res = await fetch(apiUrl(path), init);
  } catch {
    throw new ApiError(
      0,
      'unreachable',
      'The appliance cannot be reached.',
      'Check that it is powered on and connected to the network, then try again.',
    );
  }

  let parsed: unknown = undefined;
  const text = await res.text().catch(() => '');
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
  }

  if (!res.ok) {
    const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
    if (isErrorBody(parsed)) {
      const { code, message, fix } = parsed.error;
      throw new ApiError(res.status, code, message, fix, retryAfter);
    }
    throw new ApiError(
      res.status,
      `http_${res.status}`,
      `The appliance answered ${res.status} ${res.statusText}`.trim() + '.',
      res.status >= 500 ? 'Look at the log on the appliance, then try again.' : undefined,
      retryAfter,
    );
  }
  if (parsed === undefined) {
    throw new ApiError(
      res.status,
      'bad_response',
      'The appliance sent an answer the panel cannot read.',
      'Make sure the panel and the daemon are the same version.',
    );
  }
  return parsed as T;
}

export interface LogQuery {
  level?: string;
  source?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== '') q.set(key, String(value));
  }
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

export const api = {
  health: () => request<{ status: string }>('GET', '/api/health'),
  version: () => request<Version>('GET', '/api/version'),
  setupState: () => request<SetupState>('GET', '/api/setup'),
  setup: (code: string, password: string) => request<Ok>('POST', '/api/setup', { code, password }),
  session: () => request<Session>('GET', '/api/auth/session'),
  login: (password: string) => request<Ok>('POST', '/api/auth/login', { password }),
  logout: () => request<Ok>('POST', '/api/auth/logout'),
  status: () => request<Status>('GET', '/api/status'),
  logs: (q: LogQuery = {}) => request<LogPage>('GET', `/api/logs${query({ ...q })}`),
};

/** The live log stream (Server-Sent Events, `event: log`). */
export function openLogStream(): EventSource {
  return new EventSource(apiUrl('/api/logs/stream'), { withCredentials: true });
}
