/**
 * The Drive client the pull uses: a few calls of Drive v3, each asking only for the fields the
 * pull needs and paging as Google documents, under the product's own retry policy (retry.ts;
 * the client library's retries are turned off so that one policy, Google's, applies). It is
 * the side-effect adapter of the pull: tests of the core may hand it a fake.
 */
import type { Readable } from 'node:stream';
import { drive, type drive_v3 } from '@googleapis/drive';
import type { OAuth2Client } from 'google-auth-library';
import { withRetry, type RetryDeps } from './retry.js';

/** What the pull reads of a file: the mirror, the manifest and the change detection need these. */
export const FILE_FIELDS =
  'id,name,mimeType,parents,trashed,size,md5Checksum,sha256Checksum,createdTime,modifiedTime,version,driveId,description,starred,ownedByMe,shared,sharedWithMeTime,originalFilename,owners(emailAddress,displayName),permissions(type,role,emailAddress,domain),shortcutDetails(targetId,targetMimeType),exportLinks';

export interface DriveFile {
  id: string;
  name: string;
  mimeType: string;
  parents?: string[];
  trashed?: boolean;
  size?: string;
  md5Checksum?: string;
  sha256Checksum?: string;
  createdTime?: string;
  modifiedTime?: string;
  version?: string;
  driveId?: string;
  description?: string;
  starred?: boolean;
  ownedByMe?: boolean;
  shared?: boolean;
  sharedWithMeTime?: string;
  originalFilename?: string;
  owners?: { emailAddress?: string; displayName?: string }[];
  permissions?: { type?: string; role?: string; emailAddress?: string; domain?: string }[];
  shortcutDetails?: { targetId?: string; targetMimeType?: string };
  exportLinks?: Record<string, string>;
}

export interface DriveChange {
  changeType: 'file' | 'drive';
  removed: boolean;
  fileId?: string;
  file?: DriveFile;
  driveId?: string;
  drive?: { id: string; name: string };
}

export interface SharedDrive {
  id: string;
  name: string;
  createdTime?: string;
}

export interface DriveClient {
  /** API calls made, for the request budget a pass reports. */
  readonly calls: number;
  startPageToken(): Promise<string>;
  rootFolder(): Promise<DriveFile>;
  sharedDrives(): Promise<SharedDrive[]>;
  /** Every non-trashed file of the user's corpus (My Drive and shared with me), or of one shared drive. */
  listFiles(
    driveId: string | undefined,
    onPage: (files: DriveFile[]) => Promise<void>,
  ): Promise<void>;
  /** The changes since `token`, every page, and the token to start from next time. */
  changes(token: string): Promise<{ changes: DriveChange[]; newStartPageToken: string }>;
  media(fileId: string, opts: { offset: number; acknowledgeAbuse: boolean }): Promise<Readable>;
  exportMedia(fileId: string, mimeType: string): Promise<Readable>;
  /** A body from one of the file's exportLinks (exports over files.export's 10 MB). */
  exportLink(url: string, offset: number): Promise<Readable>;
}

/** Drive said the change token is no longer valid (too old): a full listing is due. */
export class TokenExpired extends Error {
  override name = 'TokenExpired';
}

export function googleDriveClient(opts: {
  auth: OAuth2Client;
  apiRoot: string;
  retry?: Omit<RetryDeps, 'refresh'>;
}): DriveClient {
  // The pull owns its retry policy, the one refresh after a 401 included: the library must not
  // refresh on its own after every failure (a 403 rate limit would cost a token call each).
  opts.auth.forceRefreshOnFailure = false;
  const api = drive({ version: 'v3', auth: opts.auth, rootUrl: `${opts.apiRoot}/` });
  // Without an expiry the library refreshes by itself after a 401; with one, it does not: the
  // retry policy drops the access token once so that the next request refreshes it.
  const refresh = async () => {
    opts.auth.setCredentials({ refresh_token: opts.auth.credentials.refresh_token });
  };
  let calls = 0;
  const call = <T>(fn: () => Promise<T>): Promise<T> =>
    withRetry(
      () => {
        calls++;
        return fn();
      },
      { ...opts.retry, refresh },
    );
  const noRetry = { retry: false } as const;
  const stream = { retry: false, responseType: 'stream' } as const;

  return {
    get calls() {
      return calls;
    },
    async startPageToken() {
      const r = await call(() =>
        api.changes.getStartPageToken(
          { supportsAllDrives: true, fields: 'startPageToken' },
          noRetry,
        ),
      );
      return r.data.startPageToken!;
    },
    async rootFolder() {
      const r = await call(() => api.files.get({ fileId: 'root', fields: FILE_FIELDS }, noRetry));
      return r.data as DriveFile;
    },
    async sharedDrives() {
      const out: SharedDrive[] = [];
      let pageToken: string | undefined;
      do {
        const r = await call(() =>
          api.drives.list(
            {
              pageSize: 100,
              fields: 'nextPageToken,drives(id,name,createdTime)',
              ...(pageToken ? { pageToken } : {}),
            },
            noRetry,
          ),
        );
        for (const d of r.data.drives ?? []) out.push(d as SharedDrive);
        pageToken = r.data.nextPageToken ?? undefined;
      } while (pageToken);
      return out;
    },
    async listFiles(driveId, onPage) {
      let pageToken: string | undefined;
      do {
        const params: drive_v3.Params$Resource$Files$List = {
          q: 'trashed = false',
          pageSize: 1000,
          fields: `nextPageToken,incompleteSearch,files(${FILE_FIELDS})`,
          supportsAllDrives: true,
          includeItemsFromAllDrives: true,
          ...(driveId ? { corpora: 'drive', driveId } : { corpora: 'user' }),
          ...(pageToken ? { pageToken } : {}),
        };
        const r = await call(() => api.files.list(params, noRetry));
        // corpora=user with includeItemsFromAllDrives also returns shared-drive items; they are
        // listed per drive, where their folders are.
        const files = (r.data.files ?? []) as DriveFile[];
        await onPage(driveId ? files : files.filter((f) => !f.driveId));
        pageToken = r.data.nextPageToken ?? undefined;
      } while (pageToken);
    },
    async changes(token) {
      const changes: DriveChange[] = [];
      let pageToken: string | undefined = token;
      let newStartPageToken: string | undefined;
      while (pageToken) {
        const current: string = pageToken;
        const r = await call(() =>
          api.changes.list(
            {
              pageToken: current,
              pageSize: 1000,
              includeRemoved: true,
              includeItemsFromAllDrives: true,
              supportsAllDrives: true,
              fields: `nextPageToken,newStartPageToken,changes(changeType,removed,fileId,driveId,file(${FILE_FIELDS}),drive(id,name))`,
            },
            noRetry,
          ),
        ).catch((err: unknown) => {
          const e = err as { response?: { status?: number } };
          if (
            e.response?.status === 400 &&
            /pageToken/i.test(
              JSON.stringify((err as { response?: { data?: unknown } }).response?.data ?? ''),
            )
          )
            throw new TokenExpired('Drive no longer accepts the saved change token', {
              cause: err,
            });
          throw err;
        });
        for (const c of r.data.changes ?? []) changes.push(c as DriveChange);
        pageToken = r.data.nextPageToken ?? undefined;
        newStartPageToken = r.data.newStartPageToken ?? newStartPageToken;
      }
      return { changes, newStartPageToken: newStartPageToken ?? token };
    },
    async media(fileId, o) {
      const r = await call(() =>
        api.files.get(
          {
            fileId,
            alt: 'media',
            supportsAllDrives: true,
            ...(o.acknowledgeAbuse ? { acknowledgeAbuse: true } : {}),
          },
          { ...stream, ...(o.offset > 0 ? { headers: { Range: `bytes=${o.offset}-` } } : {}) },
        ),
      );
      return r.data as unknown as Readable;
    },
    async exportMedia(fileId, mimeType) {
      const r = await call(() => api.files.export({ fileId, mimeType }, stream));
      return r.data as unknown as Readable;
    },
    async exportLink(url, offset) {
      const r = await call(() =>
        opts.auth.request<Readable>({
          url,
          ...stream,
          ...(offset > 0 ? { headers: { Range: `bytes=${offset}-` } } : {}),
        }),
      );
      return r.data;
    },
  };
}
