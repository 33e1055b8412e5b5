// The shapes of the backupd API, as the daemon serves them (see docs/openapi.json).

export interface ErrorBody {
  error: { code: string; message: string; fix?: string };
}

/** A problem the daemon reports on an account or a destination. */
export interface Problem {
  message: string;
  fix?: string | null;
}

export interface Version {
  name: string;
  version: string;
  node: string;
}

export interface SetupState {
  needed: boolean;
}

export interface Session {
  authenticated: boolean;
  via: 'session' | 'api_key' | null;
}

/** Where the owner stands, decided before any page shows. */
export type Gate =
  | { kind: 'setup' }
  | { kind: 'login' }
  | { kind: 'in'; session: Session }
  | { kind: 'unreachable'; status: number; message: string; fix: string | undefined };

export interface Ok {
  ok: true;
}

export type DaemonState = 'idle' | 'syncing' | 'paused' | 'error';

export interface Account {
  email: string;
  status: 'ok' | 'needs_sign_in' | 'error';
  last_pass_at: string | null;
  error: Problem | null;
}

export interface Source {
  name: string;
  enabled: boolean;
  local_path: string;
  accounts: Account[];
}

export interface Destination {
  name: string;
  type: string;
  enabled: boolean;
  target: string;
  health: 'ok' | 'failing' | 'unknown';
  last_success_at: string | null;
  error: Problem | null;
}

export interface Run {
  id: number;
  kind: string;
  started_at: string;
  finished_at: string | null;
  status: 'running' | 'succeeded' | 'failed';
  summary: Record<string, unknown> | null;
}

export interface Status {
  state: DaemonState;
  version: string;
  started_at: string;
  uptime_seconds: number;
  sources: Source[];
  destinations: Destination[];
  queue: { pending: number; failed: number };
  last_run: Run | null;
}

export const LEVELS = ['debug', 'info', 'warn', 'error', 'fatal'] as const;
export type Level = (typeof LEVELS)[number];

export interface LogEntry {
  id: number;
  time: string;
  level: Level;
  source: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface LogPage {
  entries: LogEntry[];
  next_cursor: string | null;
}
