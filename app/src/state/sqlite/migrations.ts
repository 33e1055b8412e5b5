/**
 * Versioned schema migrations, applied in order at start-up, each in its own transaction.
 * Never edit a migration that has shipped: add the next one.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'foundation',
    sql: `
CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE accounts (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  email TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok','needs_sign_in','error','paused')),
  error_message TEXT,
  error_fix TEXT,
  cursor TEXT,
  last_pass_at INTEGER,
  created_at INTEGER NOT NULL,
  UNIQUE (source, email)
);

-- One row per file on the mirror, as last seen: what reconciliation compares against.
CREATE TABLE files (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  rel_path TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ms REAL NOT NULL,
  inode INTEGER,
  sha256 TEXT,
  account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
  remote_id TEXT,
  meta TEXT,
  state TEXT NOT NULL DEFAULT 'present' CHECK (state IN ('present','deleted')),
  updated_at INTEGER NOT NULL,
  UNIQUE (source, rel_path)
);
CREATE INDEX files_sha256 ON files (sha256) WHERE sha256 IS NOT NULL;
CREATE INDEX files_remote ON files (account_id, remote_id) WHERE remote_id IS NOT NULL;

-- What each destination holds of each file, proven by verification.
CREATE TABLE destination_files (
  file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
  destination TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('verified','pending','failed','trashed')),
  size INTEGER,
  sha256 TEXT,
  verified_at INTEGER,
  error TEXT,
  PRIMARY KEY (file_id, destination)
);
CREATE INDEX destination_files_dest ON destination_files (destination, state);

-- The durable change queue, per path and destination.
CREATE TABLE queue (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  rel_path TEXT NOT NULL,
  op TEXT NOT NULL CHECK (op IN ('upsert','delete','move')),
  from_path TEXT,
  destination TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','running','done','failed','held')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX queue_ready ON queue (destination, state, next_attempt_at, id);
CREATE INDEX queue_path ON queue (source, rel_path, destination, state);

CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  status TEXT NOT NULL CHECK (status IN ('running','succeeded','failed','interrupted')),
  summary TEXT
);
CREATE INDEX runs_kind ON runs (kind, id);

CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,
  level TEXT NOT NULL,
  level_no INTEGER NOT NULL,
  source TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_source ON events (source, id);

CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  ip TEXT
);

CREATE TABLE api_keys (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at INTEGER
);
`,
  },
  {
    version: 2,
    name: 'push queue details',
    sql: `
-- The MD5 beside the SHA-256: what S3 ETags and rclone's remote hashes are compared with.
ALTER TABLE files ADD COLUMN md5 TEXT;
-- A folder move is one queue item.
ALTER TABLE queue ADD COLUMN is_dir INTEGER NOT NULL DEFAULT 0;
-- Where the destination holds the file (it differs from the mirror's path while a move is queued).
ALTER TABLE destination_files ADD COLUMN remote_path TEXT;
CREATE INDEX queue_done ON queue (state, updated_at) WHERE state = 'done';
CREATE INDEX destination_files_sha256 ON destination_files (destination, sha256) WHERE sha256 IS NOT NULL;
`,
  },
  {
    version: 3,
    name: 'google drive items',
    sql: `
-- Every item of a Drive account as the pull last applied it: Drive's metadata (what a restore
-- needs and a file system cannot carry), the local name it was given and where it stands on
-- the mirror, and what of its content the mirror holds.
CREATE TABLE drive_items (
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
  file_id TEXT NOT NULL,
  parent_id TEXT,
  name TEXT NOT NULL,
  mime_type TEXT NOT NULL,
  kind TEXT NOT NULL,
  local_name TEXT,
  rel_path TEXT,
  size INTEGER,
  md5 TEXT,
  sha256 TEXT,
  version TEXT,
  modified_time TEXT,
  content_version TEXT,
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending','ok','failed','deferred','skipped','recorded')),
  note TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  meta TEXT,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, file_id)
);
CREATE INDEX drive_items_state ON drive_items (account_id, state) WHERE state <> 'ok';
`,
  },
];
