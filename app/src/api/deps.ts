import type { Access } from '../auth/index.js';
import type { ConfigService } from '../config/index.js';
import type { Google } from '../google/index.js';
import type { EventRecorder, Logger, Redactor } from '../log/index.js';
import type { State } from '../state/index.js';
import type { StatusReport } from '../status/index.js';
import type { SyncService } from '../sync/service.js';
import type { DrivePoller } from '../google/drive/poller.js';
import type { DiskService } from '../disk/index.js';

/** What the API needs from the daemon; tests build it with real state and a temporary folder. */
export interface ApiDeps {
  config: ConfigService;
  state: State;
  access: Access;
  events: EventRecorder;
  logger: Logger;
  redactor: Redactor;
  version: string;
  status: () => Promise<StatusReport>;
  /** The push half; absent when it could not start (the API still answers). */
  sync?: SyncService;
  /** Google sign-in and accounts; built from the other deps when absent (tests of the API). */
  google?: Google;
  /** The Drive pull of the running daemon (its activity, for GET /api/sources). */
  drive?: DrivePoller;
  /** running, or standby while the appliance waits for its data disk. */
  mode?: () => 'running' | 'standby';
  /** The appliance's data disk; absent on an ordinary install. */
  disks?: DiskService;
}

export const SESSION_COOKIE = 'backupd_session';
