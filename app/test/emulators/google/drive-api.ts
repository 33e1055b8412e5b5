// The Drive v3 methods the product uses, over the store: files.list, files.get (metadata and
// alt=media with Range), files.export, changes.getStartPageToken, changes.list, drives.list,
// drives.get, about.get. Parameters are checked as Drive checks them (an unknown parameter, a
// bad `fields`, `q`, `orderBy`, `pageToken` or `pageSize` is a 400 with Google's body), and each
// answer keeps only the fields the request selected.
import { createHash } from 'node:crypto';
import type { Content } from './content.js';
import { DriveApiError, driveErrors } from './errors.js';
import type { ApiName } from './faults.js';
import {
  aboutSchema,
  applyMask,
  changeListSchema,
  defaultFields,
  driveListSchema,
  driveSchema,
  fileListSchema,
  fileSchema,
  parseFields,
  selection,
  startPageTokenSchema,
  type Mask,
} from './fields.js';
import type { Caller } from './oauth.js';
import { parseQuery, QueryError, type QueryTarget } from './query.js';
import { aboutResource, driveResource, fileResource, type RenderContext } from './resources.js';
import { EXPORT_LIMIT_BYTES, FOLDER, GOOGLE_APPS, type DriveStore, type Item } from './store.js';

export type Answer =
  | { kind: 'json'; status: number; body: unknown; headers?: Record<string, string> }
  | {
      kind: 'media';
      status: 200 | 206;
      content: Content;
      start: number;
      end: number;
      mimeType: string;
      headers: Record<string, string>;
    };

export interface DriveRequest {
  api: ApiName;
  fileId: string | undefined;
  params: Record<string, string>;
  headers: Record<string, string>;
}

const STANDARD_PARAMS = [
  'alt',
  'fields',
  'key',
  'access_token',
  'oauth_token',
  'prettyPrint',
  'quotaUser',
  'userIp',
  'callback',
  'upload_protocol',
  'uploadType',
  '$.xgafv',
];

const METHOD_PARAMS: Partial<Record<ApiName, string[]>> = {
  'files.list': [
    'corpora',
    'corpus',
    'driveId',
    'includeItemsFromAllDrives',
    'includeTeamDriveItems',
    'orderBy',
    'pageSize',
    'pageToken',
    'q',
    'spaces',
    'supportsAllDrives',
    'supportsTeamDrives',
    'teamDriveId',
    'includePermissionsForView',
    'includeLabels',
  ],
  'files.get': [
    'acknowledgeAbuse',
    'supportsAllDrives',
    'supportsTeamDrives',
    'includePermissionsForView',
    'includeLabels',
  ],
  'files.export': ['mimeType'],
  exportLink: ['mimeType'],
  'changes.getStartPageToken': [
    'driveId',
    'supportsAllDrives',
    'supportsTeamDrives',
    'teamDriveId',
  ],
  'changes.list': [
    'pageToken',
    'driveId',
    'includeCorpusRemovals',
    'includeItemsFromAllDrives',
    'includeRemoved',
    'includeTeamDriveItems',
    'pageSize',
    'restrictToMyDrive',
    'spaces',
    'supportsAllDrives',
    'supportsTeamDrives',
    'teamDriveId',
    'includePermissionsForView',
    'includeLabels',
  ],
  'drives.list': ['pageSize', 'pageToken', 'q', 'useDomainAdminAccess'],
  'drives.get': ['useDomainAdminAccess'],
  'about.get': [],
};

const ORDER_KEYS = new Set([
  'createdTime',
  'folder',
  'modifiedByMeTime',
  'modifiedTime',
  'name',
  'name_natural',
  'quotaBytesUsed',
  'recency',
  'sharedWithMeTime',
  'starred',
  'viewedByMeTime',
]);

const CHECKSUM_FIELDS = ['md5Checksum', 'sha1Checksum', 'sha256Checksum'];

/** Whether the file-level selection (reached by `path` from the top) asks for checksums. */
function wantsChecksums(mask: Mask, path: string[]): boolean {
  let level: Mask | null = mask;
  for (const key of path) {
    if (level === null || level.has('*')) return true;
    if (!level.has(key)) return false;
    level = level.get(key)!;
  }
  return level === null || level.has('*') || CHECKSUM_FIELDS.some((f) => level!.has(f));
}

export class DriveApi {
  /** Tests can note why a request was refused (e.g. the q term the emulator lacks). */
  lastNote: string | undefined;

  constructor(
    private readonly store: DriveStore,
    private readonly origin: () => string,
  ) {}

  handle(req: DriveRequest, caller: Caller): Answer {
    this.lastNote = undefined;
    const allowed = METHOD_PARAMS[req.api];
    if (allowed)
      for (const name of Object.keys(req.params))
        if (!allowed.includes(name) && !STANDARD_PARAMS.includes(name))
          throw driveErrors.unknownParameter(name);
    const alt = req.params.alt ?? 'json';
    if (alt !== 'json' && !(alt === 'media' && req.api === 'files.get'))
      throw driveErrors.invalidValue('alt');
    switch (req.api) {
      case 'files.list':
        return this.filesList(req, caller);
      case 'files.get':
        return alt === 'media' ? this.download(req, caller) : this.filesGet(req, caller);
      case 'files.export':
        return this.export(req, caller, true);
      case 'exportLink':
        return this.export(req, caller, false);
      case 'changes.getStartPageToken':
        return this.startPageToken(req, caller);
      case 'changes.list':
        return this.changesList(req, caller);
      case 'drives.list':
        return this.drivesList(req, caller);
      case 'drives.get':
        return this.drivesGet(req, caller);
      case 'about.get':
        return this.about(req, caller);
      default:
        throw driveErrors.notImplemented(`${req.api}`);
    }
  }

  // ------------------------------------------------------------------ helpers

  private bool(req: DriveRequest, name: string, fallback = false): boolean {
    const v = req.params[name];
    if (v === undefined) return fallback;
    if (v === 'true') return true;
    if (v === 'false') return false;
    throw driveErrors.invalidValue(name, `Invalid boolean value: '${v}'`);
  }

  private int(
    req: DriveRequest,
    name: string,
    fallback: number,
    min: number,
    max?: number,
  ): number {
    const v = req.params[name];
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!/^-?\d+$/.test(v) || n < min || (max !== undefined && n > max))
      throw driveErrors.invalidValue(
        name,
        max === undefined
          ? `Invalid value '${v}'. Values must be at least ${min}.`
          : `Invalid value '${v}'. Values must be within the range: [${min}, ${max}]`,
      );
    return n;
  }

  private ctx(caller: Caller, checksums: boolean): RenderContext {
    return { store: this.store, email: caller.account, origin: this.origin(), checksums };
  }

  private json(body: unknown, status = 200): Answer {
    return { kind: 'json', status, body };
  }

  /** The item the caller names, or Drive's 404 (also for a shared-drive item without supportsAllDrives). */
  private visibleItem(req: DriveRequest, caller: Caller, allDrives: boolean): Item {
    const raw = req.fileId ?? '';
    const id = raw === 'root' ? this.store.rootOf(caller.account) : raw;
    const item = this.store.items.get(id);
    if (!item || !this.store.canSee(caller.account, item)) throw driveErrors.fileNotFound(raw);
    if (item.driveId && !allDrives) throw driveErrors.fileNotFound(raw);
    return item;
  }

  private target(item: Item, email: string): QueryTarget {
    return {
      name: item.name,
      mimeType: item.mimeType,
      trashed: item.trashed,
      starred: item.starred,
      sharedWithMe: this.store.sharedWithMe(email, item),
      parents: this.store.visibleParents(email, item),
    };
  }

  // ------------------------------------------------------------------ files

  private filesList(req: DriveRequest, caller: Caller): Answer {
    const p = req.params;
    const mask = selection(p.fields, fileListSchema, defaultFields.fileList);
    const pageSize = this.int(req, 'pageSize', 100, 1, 1000);
    const allDrives = this.bool(req, 'supportsAllDrives') || this.bool(req, 'supportsTeamDrives');
    const includeDrives =
      this.bool(req, 'includeItemsFromAllDrives') || this.bool(req, 'includeTeamDriveItems');
    const driveId = p.driveId ?? p.teamDriveId;
    const corpora = p.corpora ?? (p.corpus === 'domain' ? 'domain' : 'user');
    if (!['user', 'domain', 'drive', 'allDrives'].includes(corpora))
      throw driveErrors.invalidValue('corpora');
    if ((corpora === 'drive') !== (driveId !== undefined))
      throw driveErrors.driveIdRequiresDriveCorpora();
    if ((corpora === 'drive' || corpora === 'allDrives') && !includeDrives)
      throw driveErrors.includeItemsRequired();
    if (driveId !== undefined && !this.store.isMember(caller.account, driveId))
      throw driveErrors.driveNotFound(driveId);
    const spaces = (p.spaces ?? 'drive').split(',').map((s) => s.trim());
    if (spaces.some((s) => s !== 'drive' && s !== 'appDataFolder'))
      throw driveErrors.invalidValue('spaces');
    let predicate: (f: QueryTarget) => boolean = () => true;
    if (p.q !== undefined && p.q.trim() !== '') {
      try {
        predicate = parseQuery(p.q, this.store.rootOf(caller.account));
      } catch (e) {
        if (e instanceof QueryError) {
          this.lastNote = e.detail;
          throw e.apiError;
        }
        throw e;
      }
    }
    const compare = this.orderBy(p.orderBy, caller.account);
    const offset = this.pageOffset(p.pageToken, [
      p.q,
      corpora,
      driveId,
      p.orderBy,
      p.spaces,
      String(includeDrives && allDrives),
    ]);

    const matching: Item[] = [];
    if (spaces.includes('drive')) {
      for (const item of this.store.visibleItems(caller.account)) {
        if (item.driveId) {
          // Shared-drive items: only for an app that says it supports them and asks for them.
          if (!allDrives || !includeDrives) continue;
          if (corpora === 'drive' ? item.driveId !== driveId : corpora !== 'allDrives') continue;
        } else if (corpora === 'drive') continue;
        if (predicate(this.target(item, caller.account))) matching.push(item);
      }
    }
    if (compare) matching.sort(compare);
    const page = matching.slice(offset, offset + pageSize);
    const ctx = this.ctx(caller, wantsChecksums(mask, ['files']));
    const body: Record<string, unknown> = { kind: 'drive#fileList' };
    if (offset + pageSize < matching.length)
      body.nextPageToken = this.makePageToken(offset + pageSize, [
        p.q,
        corpora,
        driveId,
        p.orderBy,
        p.spaces,
        String(includeDrives && allDrives),
      ]);
    body.incompleteSearch = false;
    body.files = page.map((item) => fileResource(ctx, item));
    return this.json(applyMask(body, mask));
  }

  private orderBy(
    raw: string | undefined,
    email: string,
  ): ((a: Item, b: Item) => number) | undefined {
    if (raw === undefined || raw.trim() === '') return undefined;
    const keys = raw.split(',').map((part) => {
      const [key, dir, extra] = part.trim().split(/\s+/);
      if (
        !key ||
        !ORDER_KEYS.has(key) ||
        extra !== undefined ||
        (dir && !/^(asc|desc)$/i.test(dir))
      )
        throw driveErrors.invalidValue('orderBy', `Invalid Value`);
      return { key, desc: dir?.toLowerCase() === 'desc' };
    });
    const natural = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });
    const value = (item: Item, key: string): number | string => {
      switch (key) {
        case 'name':
          return item.name;
        case 'folder':
          return item.mimeType === FOLDER ? 0 : 1;
        case 'starred':
          return item.starred ? 1 : 0;
        case 'createdTime':
          return item.createdTime.getTime();
        case 'quotaBytesUsed':
          return item.content?.size ?? 0;
        case 'sharedWithMeTime':
          return item.sharedWith.get(email)?.time.getTime() ?? 0;
        default:
          return item.modifiedTime.getTime();
      }
    };
    return (a, b) => {
      for (const { key, desc } of keys) {
        let c: number;
        if (key === 'name_natural') c = natural.compare(a.name, b.name);
        else {
          const x = value(a, key);
          const y = value(b, key);
          c = x < y ? -1 : x > y ? 1 : 0;
        }
        if (c !== 0) return desc ? -c : c;
      }
      return 0;
    };
  }

  /** files.list and drives.list page tokens: an offset bound to the query it belongs to. */
  private makePageToken(offset: number, query: (string | undefined)[]): string {
    const h = createHash('sha256').update(JSON.stringify(query)).digest('base64url').slice(0, 8);
    return Buffer.from(JSON.stringify({ o: offset, h })).toString('base64url');
  }

  private pageOffset(token: string | undefined, query: (string | undefined)[]): number {
    if (token === undefined) return 0;
    try {
      const parsed = JSON.parse(Buffer.from(token, 'base64url').toString()) as {
        o: number;
        h: string;
      };
      const h = createHash('sha256').update(JSON.stringify(query)).digest('base64url').slice(0, 8);
      if (Number.isInteger(parsed.o) && parsed.o >= 0 && parsed.h === h) return parsed.o;
    } catch {
      // falls through to Drive's answer for a token it did not issue
    }
    throw driveErrors.invalidValue('pageToken');
  }

  private filesGet(req: DriveRequest, caller: Caller): Answer {
    const mask = selection(req.params.fields, fileSchema, defaultFields.file);
    const allDrives = this.bool(req, 'supportsAllDrives') || this.bool(req, 'supportsTeamDrives');
    this.bool(req, 'acknowledgeAbuse');
    const item = this.visibleItem(req, caller, allDrives);
    const ctx = this.ctx(caller, wantsChecksums(mask, []));
    return this.json(applyMask(fileResource(ctx, item), mask));
  }

  private download(req: DriveRequest, caller: Caller): Answer {
    const allDrives = this.bool(req, 'supportsAllDrives') || this.bool(req, 'supportsTeamDrives');
    const acknowledge = this.bool(req, 'acknowledgeAbuse');
    const item = this.visibleItem(req, caller, allDrives);
    if (caller.access !== 'content') throw driveErrors.insufficientPermissions();
    if (!item.content) throw driveErrors.fileNotDownloadable();
    if (item.abusive && !acknowledge) throw driveErrors.cannotDownloadAbusiveFile();
    return this.media(item.content, item.mimeType, req.headers.range);
  }

  /** A whole body (200) or, for `Range: bytes=...`, a 206 with Content-Range (416 outside). */
  private media(content: Content, mimeType: string, range: string | undefined): Answer {
    const size = content.size;
    if (range === undefined)
      return { kind: 'media', status: 200, content, start: 0, end: size, mimeType, headers: {} };
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (!m || (m[1] === '' && m[2] === '')) {
      // Not a single byte range: HTTP says ignore the header and send everything.
      return { kind: 'media', status: 200, content, start: 0, end: size, mimeType, headers: {} };
    }
    let start: number;
    let end: number; // exclusive
    if (m[1] === '') {
      const suffix = Number(m[2]);
      if (suffix === 0) throw driveErrors.rangeNotSatisfiable(size);
      start = Math.max(0, size - suffix);
      end = size;
    } else {
      start = Number(m[1]);
      end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
      if (m[2] !== '' && Number(m[2]) < start) {
        return { kind: 'media', status: 200, content, start: 0, end: size, mimeType, headers: {} };
      }
    }
    if (start >= size) throw driveErrors.rangeNotSatisfiable(size);
    return {
      kind: 'media',
      status: 206,
      content,
      start,
      end,
      mimeType,
      headers: { 'content-range': `bytes ${start}-${end - 1}/${size}` },
    };
  }

  private export(req: DriveRequest, caller: Caller, limited: boolean): Answer {
    const item = this.visibleItem(req, caller, true);
    if (caller.access !== 'content') throw driveErrors.insufficientPermissions();
    const mime = req.params.mimeType;
    if (!mime) throw driveErrors.required('mimeType');
    if (!item.mimeType.startsWith(GOOGLE_APPS) || item.mimeType === FOLDER)
      throw driveErrors.fileNotExportable();
    const content = item.exports?.get(mime);
    if (!content) throw driveErrors.conversionNotSupported();
    if (limited && content.size > EXPORT_LIMIT_BYTES) throw driveErrors.exportSizeLimitExceeded();
    return this.media(content, mime, limited ? undefined : req.headers.range);
  }

  // ------------------------------------------------------------------ changes

  private startPageToken(req: DriveRequest, caller: Caller): Answer {
    const mask = selection(req.params.fields, startPageTokenSchema, defaultFields.startPageToken);
    this.bool(req, 'supportsAllDrives');
    const driveId = req.params.driveId ?? req.params.teamDriveId;
    if (driveId !== undefined && !this.store.isMember(caller.account, driveId))
      throw driveErrors.driveNotFound(driveId);
    return this.json(
      applyMask(
        { kind: 'drive#startPageToken', startPageToken: String(this.store.headToken) },
        mask,
      ),
    );
  }

  private changesList(req: DriveRequest, caller: Caller): Answer {
    const p = req.params;
    const mask = selection(p.fields, changeListSchema, defaultFields.changeList);
    if (p.pageToken === undefined) throw driveErrors.required('pageToken');
    const pageSize = Math.min(1000, this.int(req, 'pageSize', 100, 1));
    const includeRemoved = this.bool(req, 'includeRemoved', true);
    const restrict = this.bool(req, 'restrictToMyDrive');
    const allDrives = this.bool(req, 'supportsAllDrives') || this.bool(req, 'supportsTeamDrives');
    const includeDrives =
      this.bool(req, 'includeItemsFromAllDrives') || this.bool(req, 'includeTeamDriveItems');
    this.bool(req, 'includeCorpusRemovals');
    const spaces = (p.spaces ?? 'drive').split(',').map((s) => s.trim());
    if (spaces.some((s) => s !== 'drive' && s !== 'appDataFolder'))
      throw driveErrors.invalidValue('spaces');
    const driveId = p.driveId ?? p.teamDriveId;
    if (driveId !== undefined && !this.store.isMember(caller.account, driveId))
      throw driveErrors.driveNotFound(driveId);
    const log =
      driveId !== undefined
        ? this.store.driveLogs.get(driveId)!
        : this.store.userLogs.get(caller.account)!;
    const token = /^\d+$/.test(p.pageToken) ? Number(p.pageToken) : NaN;
    if (!(token >= log.oldestValidToken && token <= this.store.headToken))
      throw driveErrors.invalidValue('pageToken');

    const email = caller.account;
    const ctx = this.ctx(caller, wantsChecksums(mask, ['changes', 'file']));
    const changes: Record<string, unknown>[] = [];
    let next: number | undefined;
    if (spaces.includes('drive')) {
      for (const entry of log.since(token)) {
        const change = this.change(entry, ctx, {
          email,
          driveId,
          includeRemoved,
          restrict,
          sharedDrives: allDrives && includeDrives,
        });
        if (!change) continue;
        if (changes.length === pageSize) {
          next = entry.id;
          break;
        }
        changes.push(change);
      }
    }
    const body: Record<string, unknown> = { kind: 'drive#changeList' };
    if (next !== undefined) body.nextPageToken = String(next);
    else body.newStartPageToken = String(this.store.headToken);
    body.changes = changes;
    return this.json(applyMask(body, mask));
  }

  private change(
    entry: { id: number; kind: 'file' | 'drive'; target: string; time: Date },
    ctx: RenderContext,
    o: {
      email: string;
      driveId: string | undefined;
      includeRemoved: boolean;
      restrict: boolean;
      sharedDrives: boolean;
    },
  ): Record<string, unknown> | undefined {
    const time = entry.time.toISOString();
    if (entry.kind === 'drive') {
      // Drive changes (a shared drive renamed, joined or left) reach an app that supports shared
      // drives, in the user's log.
      if (o.driveId !== undefined || !o.sharedDrives || o.restrict) return undefined;
      const drive = this.store.drives.get(entry.target);
      const removed = !drive || !drive.members.has(o.email);
      if (removed && !o.includeRemoved) return undefined;
      const out: Record<string, unknown> = {
        kind: 'drive#change',
        changeType: 'drive',
        type: 'drive',
        time,
        removed,
        driveId: entry.target,
      };
      if (!removed) out.drive = driveResource(drive!, o.email);
      return out;
    }
    const item = this.store.items.get(entry.target);
    if (!item) return undefined;
    if (item.driveId && o.driveId === undefined && !o.sharedDrives) return undefined;
    if (o.restrict && !this.store.inMyDrive(o.email, item)) return undefined;
    // In a shared drive's log, an item that moved out of the drive is gone from it.
    const removed =
      !this.store.canSee(o.email, item) || (o.driveId !== undefined && item.driveId !== o.driveId);
    if (removed && !o.includeRemoved) return undefined;
    const out: Record<string, unknown> = {
      kind: 'drive#change',
      changeType: 'file',
      type: 'file',
      time,
      removed,
      fileId: item.id,
    };
    if (!removed) out.file = fileResource(ctx, item);
    return out;
  }

  // ------------------------------------------------------------------ drives, about

  private drivesList(req: DriveRequest, caller: Caller): Answer {
    const mask = selection(req.params.fields, driveListSchema, defaultFields.driveList);
    if (req.params.q !== undefined) {
      this.lastNote = 'drives.list q is not emulated';
      throw driveErrors.notImplemented('the q parameter of drives.list');
    }
    const pageSize = this.int(req, 'pageSize', 10, 1, 100);
    const offset = this.pageOffset(req.params.pageToken, ['drives']);
    const drives = [...this.store.drives.values()].filter((d) => d.members.has(caller.account));
    const body: Record<string, unknown> = { kind: 'drive#driveList' };
    if (offset + pageSize < drives.length)
      body.nextPageToken = this.makePageToken(offset + pageSize, ['drives']);
    body.drives = drives
      .slice(offset, offset + pageSize)
      .map((d) => driveResource(d, caller.account));
    return this.json(applyMask(body, mask));
  }

  private drivesGet(req: DriveRequest, caller: Caller): Answer {
    const mask = selection(req.params.fields, driveSchema, defaultFields.drive);
    const drive = this.store.drives.get(req.fileId ?? '');
    if (!drive || !drive.members.has(caller.account))
      throw driveErrors.driveNotFound(req.fileId ?? '');
    return this.json(applyMask(driveResource(drive, caller.account), mask));
  }

  private about(req: DriveRequest, caller: Caller): Answer {
    if (req.params.fields === undefined) throw driveErrors.fieldsRequired();
    const mask = parseFields(req.params.fields, aboutSchema);
    return this.json(applyMask(aboutResource(this.store, caller.account), mask));
  }
}

export { DriveApiError };
