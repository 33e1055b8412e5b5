/**
 * The repositories the rest of the daemon uses. They are asynchronous and speak in plain
 * records so that a second implementation (PostgreSQL, for several workers sharing one queue)
 * can stand beside the SQLite one without touching any caller.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'fatal';
export const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error', 'fatal'];

export interface EventRecord {
  id: number;
  /** Milliseconds since the epoch. */
  time: number;
  level: LogLevel;
  source: string;
  message: string;
  data: Record<string, unknown> | null;
}
export type NewEvent = Omit<EventRecord, 'id'>;

export interface EventQuery {
  /** This level and above. */
  level?: LogLevel;
  source?: string;
  since?: number;
  until?: number;
  /** Only events with a smaller id (paging backwards). */
  beforeId?: number;
  limit: number;
}

export interface EventRepository {
  append(events: NewEvent[]): Promise<EventRecord[]>;
  /** Newest first. */
  list(query: EventQuery): Promise<EventRecord[]>;
  /** Deletes events older than `before` (ms); returns how many. */
  prune(before: number): Promise<number>;
}

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'interrupted';
export interface RunRecord {
  id: number;
  kind: string;
  started_at: number;
  finished_at: number | null;
  status: RunStatus;
  summary: Record<string, unknown> | null;
}
export interface RunRepository {
  start(kind: string, at: number): Promise<RunRecord>;
  finish(
    id: number,
    status: Exclude<RunStatus, 'running'>,
    summary: Record<string, unknown>,
    at: number,
  ): Promise<void>;
  latest(kind?: string): Promise<RunRecord | undefined>;
  list(limit: number): Promise<RunRecord[]>;
  /** Marks runs left 'running' by a process that died as 'interrupted'; returns how many. */
  interruptStale(at: number): Promise<number>;
}

export interface SettingsRepository {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

export interface SessionRecord {
  token_hash: string;
  created_at: number;
  expires_at: number;
  last_seen_at: number;
  ip: string | null;
}
export interface ApiKeyRecord {
  id: number;
  name: string;
  prefix: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}
export interface AuthRepository {
  createSession(s: SessionRecord): Promise<void>;
  getSession(tokenHash: string): Promise<SessionRecord | undefined>;
  touchSession(tokenHash: string, at: number, expiresAt: number): Promise<void>;
  deleteSession(tokenHash: string): Promise<void>;
  deleteAllSessions(): Promise<void>;
  deleteExpiredSessions(now: number): Promise<number>;
  createApiKey(name: string, keyHash: string, prefix: string, at: number): Promise<ApiKeyRecord>;
  listApiKeys(): Promise<ApiKeyRecord[]>;
  findApiKey(keyHash: string): Promise<ApiKeyRecord | undefined>;
  markApiKeyUsed(id: number, at: number): Promise<void>;
  revokeApiKey(id: number, at: number): Promise<boolean>;
}

export type AccountStatus = 'ok' | 'needs_sign_in' | 'error' | 'paused';
export interface AccountRecord {
  id: number;
  source: string;
  email: string;
  status: AccountStatus;
  error_message: string | null;
  error_fix: string | null;
  /** The source's own resume point (e.g. Drive's changes page token). */
  cursor: string | null;
  last_pass_at: number | null;
  created_at: number;
}
export interface AccountRepository {
  list(source?: string): Promise<AccountRecord[]>;
  upsert(source: string, email: string, at: number): Promise<AccountRecord>;
  setStatus(
    id: number,
    status: AccountStatus,
    error?: { message: string; fix?: string },
  ): Promise<void>;
  setCursor(id: number, cursor: string | null, passAt: number): Promise<void>;
}

export interface FileRecord {
  id: number;
  source: string;
  rel_path: string;
  size: number;
  mtime_ms: number;
  inode: number | null;
  sha256: string | null;
  md5: string | null;
  state: 'present' | 'deleted';
  updated_at: number;
}
export interface FileTotals {
  source: string;
  files: number;
  bytes: number;
}
export interface FileRepository {
  get(source: string, relPath: string): Promise<FileRecord | undefined>;
  upsert(f: Omit<FileRecord, 'id'>): Promise<FileRecord>;
  markDeleted(source: string, relPath: string, at: number): Promise<void>;
  /** Renames a file, or a folder and everything below it; returns how many files moved. */
  move(source: string, from: string, to: string, isDir: boolean, at: number): Promise<number>;
  /** Every present file of a source, streamed (a mirror can hold millions); below `dir` if given. */
  present(source: string, dir?: string): AsyncIterable<FileRecord>;
  /** Present files of a source that a destination does not hold verified (a new destination's backfill). */
  missingAt(destination: string, source: string): AsyncIterable<FileRecord>;
  totals(): Promise<FileTotals[]>;
}

export type QueueOp = 'upsert' | 'delete' | 'move';
export type QueueState = 'pending' | 'running' | 'done' | 'failed' | 'held';
export interface QueueCounts {
  pending: number;
  running: number;
  failed: number;
  held: number;
}
export interface QueueItem {
  id: number;
  source: string;
  rel_path: string;
  op: QueueOp;
  /** For a move: where the file or folder was. */
  from_path: string | null;
  /** The path is a folder (a folder move is one item). */
  is_dir: boolean;
  destination: string;
  state: QueueState;
  attempts: number;
  next_attempt_at: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface NewChange {
  source: string;
  rel_path: string;
  op: QueueOp;
  from_path?: string;
  is_dir?: boolean;
}

export interface QueueRepository {
  counts(destination?: string): Promise<QueueCounts>;
  /**
   * Adds each change for each destination, in order. A change to a path that still has a
   * pending (not yet running) upsert or delete replaces it: only the last state of a file
   * matters. Moves are never merged. `held` parks the items until the owner releases them.
   */
  enqueue(
    changes: NewChange[],
    destinations: string[],
    at: number,
    opts?: { held?: boolean },
  ): Promise<number>;
  /** Up to `limit` items of a destination that are due, oldest first, marked running. */
  claim(destination: string, now: number, limit: number): Promise<QueueItem[]>;
  complete(id: number, at: number): Promise<void>;
  /** Records a failed attempt; `failed` once the retries are used up (still retried, rarely). */
  retry(
    id: number,
    error: string,
    nextAttemptAt: number,
    failed: boolean,
    at: number,
  ): Promise<void>;
  /** Items a dead process left running go back to pending; returns how many. */
  requeueRunning(at: number): Promise<number>;
  /** Items that failed for good (retried hourly) become due now: a pass the owner asked for. */
  retryFailedNow(at: number): Promise<number>;
  list(filter: { destination?: string; state?: QueueState; limit: number }): Promise<QueueItem[]>;
  /** Held items become pending (ids, or all of them). */
  release(ids: number[] | 'all', at: number): Promise<number>;
  /** Held items are dropped: the destinations keep those files. */
  discardHeld(ids: number[] | 'all'): Promise<number>;
  /** Drops finished items older than `before`. */
  pruneDone(before: number): Promise<number>;
  /** How many of a destination's items were finished at or after `since` and before `until` (ms). */
  countDone(destination: string, since: number, until: number): Promise<number>;
}

export interface DestinationTotals {
  destination: string;
  files: number;
  bytes: number;
  last_success_at: number | null;
}
export interface DestinationFileRepository {
  /** Records that a file is present and verified at a destination. */
  markVerified(
    destination: string,
    source: string,
    relPath: string,
    size: number,
    at: number,
  ): Promise<void>;
  /** Where a destination holds verified content with this hash (for a server-side copy). */
  holderOf(
    destination: string,
    sha256: string,
  ): Promise<{ source: string; remote_path: string } | undefined>;
  /** What a destination holds of a mirror file. */
  get(
    destination: string,
    source: string,
    relPath: string,
  ): Promise<
    { remote_path: string; sha256: string | null; size: number | null; state: string } | undefined
  >;
  /** Follows a move done at the destination (a file, or a folder and everything below it). */
  moved(
    destination: string,
    source: string,
    from: string,
    to: string,
    isDir: boolean,
  ): Promise<void>;
  /** The destination no longer holds the file at its path (it went to the trash). */
  forget(destination: string, source: string, relPath: string): Promise<void>;
  totals(): Promise<DestinationTotals[]>;
}

export type DriveItemState = 'pending' | 'ok' | 'failed' | 'deferred' | 'skipped' | 'recorded';
export interface DriveItemRecord {
  account_id: number;
  file_id: string;
  /** The Drive parent, or a root of the pull's own ('@', '@shared-drives', '@shared-with-me'). */
  parent_id: string | null;
  /** The name on Drive. */
  name: string;
  mime_type: string;
  kind: string;
  /** The name on the mirror (distinct among its siblings, safe for ext4). */
  local_name: string | null;
  /** Where it stands on the mirror, relative to the account's folder; null: not on it. */
  rel_path: string | null;
  size: number | null;
  md5: string | null;
  sha256: string | null;
  version: string | null;
  modified_time: string | null;
  /** What of Drive's content the mirror holds (checksum or export version); null: none yet. */
  content_version: string | null;
  state: DriveItemState;
  note: string | null;
  attempts: number;
  /** Drive's metadata a restore needs (owners, sharing, description, starred, times, target). */
  meta: Record<string, unknown> | null;
  updated_at: number;
}
export interface DriveItemCounts {
  items: number;
  files: number;
  bytes: number;
  failed: number;
  deferred: number;
  skipped: number;
  recorded: number;
}
export interface DriveItemRepository {
  all(accountId: number): Promise<DriveItemRecord[]>;
  /** Writes the records (insert or replace), in one transaction. */
  put(records: DriveItemRecord[]): Promise<void>;
  remove(accountId: number, fileIds: string[]): Promise<void>;
  /** Items whose content the last pass could not bring (failed, deferred, pending). */
  unfinished(accountId: number): Promise<DriveItemRecord[]>;
  counts(accountId: number): Promise<DriveItemCounts>;
}

export interface State {
  readonly url: string;
  settings: SettingsRepository;
  events: EventRepository;
  runs: RunRepository;
  auth: AuthRepository;
  accounts: AccountRepository;
  driveItems: DriveItemRepository;
  files: FileRepository;
  destinationFiles: DestinationFileRepository;
  queue: QueueRepository;
  /** `ok` or the problems `PRAGMA integrity_check` (or its equivalent) reports. */
  integrityCheck(): Promise<string[]>;
  /** A consistent copy of the whole state, for the destinations' `.backupd/`. */
  snapshotTo(file: string): Promise<void>;
  schemaVersion(): Promise<number>;
  close(): Promise<void>;
}
