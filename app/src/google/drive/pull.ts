/**
 * The pull of one Drive account into its mirror folder (`<local_path>/<email>/`).
 *
 * First pass: the changes start token is taken FIRST, then everything is listed (My Drive,
 * every shared drive, shared with me); whatever changes during the listing is replayed from
 * that token next time. Later passes read only `changes.list` from the saved token. Either way
 * the new metadata is merged into the model of the account (the state's drive_items), local
 * names are given (names.ts), and the mirror is brought to the model: moves and renames as
 * renames, removals as removals, new and changed content downloaded or exported. The token is
 * saved LAST, once everything it covers is applied: a crash replays changes, never skips them.
 * Files that could not be brought stay marked in the state and are tried again on every pass,
 * so the token can move on without them.
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../../log/index.js';
import type { DriveItemRecord, State } from '../../state/index.js';
import type { DriveClient, DriveFile } from './api.js';
import { TokenExpired } from './api.js';
import { downloadTo, hashFile, VerificationFailed } from './download.js';
import { exportPlan, kindOf, unexportableNote, type ExportFormats } from './exports.js';
import { writeManifest } from './manifest.js';
import { assignNames, safeName } from './names.js';
import { errorReason, messageOf, QuotaExceeded } from './retry.js';

/** The pull's own roots: the account folder and the two folders that are not Drive folders. */
export const ROOT = '@';
export const SHARED_DRIVES = '@shared-drives';
export const SHARED_WITH_ME = '@shared-with-me';
const VIRTUAL: Record<string, { parent: string | null; name: string }> = {
  [ROOT]: { parent: null, name: '' },
  [SHARED_DRIVES]: { parent: ROOT, name: 'Shared drives' },
  [SHARED_WITH_ME]: { parent: ROOT, name: 'Shared with me' },
};

/** A download deferred for the quota this many passes in a row is alerted. */
const QUOTA_ALERT_AFTER = 3;

export interface PullOptions {
  accountId: number;
  email: string;
  /** The account's folder on the mirror. */
  root: string;
  /** Where the manifest goes (the daemon's own folder beside the account folders). */
  manifestDir: string;
  client: DriveClient;
  state: State;
  logger: Logger;
  exportFormats?: ExportFormats;
  acknowledgeAbuse?: boolean;
  concurrency?: number;
  now?: () => number;
  signal?: AbortSignal;
}

export interface PassResult {
  kind: 'first' | 'changes';
  apiCalls: number;
  changes: number;
  downloaded: number;
  bytes: number;
  moved: number;
  removed: number;
  failed: number;
  deferred: number;
  skipped: number;
  /** Per-file problems, for the summary. */
  problems: { path: string; message: string }[];
}

type Model = Map<string, DriveItemRecord>;

export async function pullAccount(o: PullOptions): Promise<PassResult> {
  const now = o.now ?? Date.now;
  const log = o.logger.child({ source: 'google_drive', account: o.email });
  const account = (await o.state.accounts.list('google_drive')).find((a) => a.id === o.accountId);
  const cursor = account?.cursor ?? null;
  const model: Model = new Map(
    (await o.state.driveItems.all(o.accountId)).map((r) => [r.file_id, r]),
  );
  const prev = new Map([...model].map(([k, v]) => [k, { ...v }]));
  const result: PassResult = {
    kind: cursor ? 'changes' : 'first',
    apiCalls: 0,
    changes: 0,
    downloaded: 0,
    bytes: 0,
    moved: 0,
    removed: 0,
    failed: 0,
    deferred: 0,
    skipped: 0,
    problems: [],
  };
  const calls0 = o.client.calls;
  const touched = new Set<string>();
  const removed = new Set<string>();
  let token: string;

  const upsert = (f: DriveFile) => {
    const old = model.get(f.id);
    const rec = toRecord(o.accountId, f, old, now());
    model.set(f.id, rec);
    touched.add(f.id);
    removed.delete(f.id);
  };

  if (cursor) {
    let feed;
    try {
      feed = await o.client.changes(cursor);
    } catch (err) {
      if (!(err instanceof TokenExpired)) throw err;
      log.warn('the saved change token expired: listing the whole Drive again');
      await o.state.accounts.setCursor(o.accountId, null, account?.last_pass_at ?? 0);
      return pullAccount(o);
    }
    token = feed.newStartPageToken;
    result.changes = feed.changes.length;
    if (feed.changes.length === 0) {
      // Nothing changed: nothing more to ask Drive unless files wait for another try.
      const waiting = await o.state.driveItems.unfinished(o.accountId);
      if (waiting.length === 0) {
        if (token !== cursor) await o.state.accounts.setCursor(o.accountId, token, now());
        else await o.state.accounts.setCursor(o.accountId, cursor, now());
        result.apiCalls = o.client.calls - calls0;
        return result;
      }
    }
    for (const c of feed.changes) {
      if (c.changeType === 'drive') {
        const id = c.driveId ?? c.drive?.id;
        if (!id) continue;
        if (c.removed || !c.drive) removed.add(id);
        else
          upsert({
            id,
            name: c.drive.name,
            mimeType: 'application/vnd.google-apps.folder',
            parents: [SHARED_DRIVES],
            driveId: id,
          });
        continue;
      }
      const id = c.fileId ?? c.file?.id;
      if (!id) continue;
      if (c.removed || !c.file || c.file.trashed) {
        if (model.has(id)) removed.add(id);
        touched.delete(id);
      } else upsert(c.file);
    }
  } else {
    token = await o.client.startPageToken();
    const seen = new Set<string>([ROOT, SHARED_DRIVES, SHARED_WITH_ME]);
    const root = await o.client.rootFolder();
    upsert({ ...root, name: 'My Drive', parents: [ROOT] });
    seen.add(root.id);
    for (const d of await o.client.sharedDrives()) {
      upsert({
        id: d.id,
        name: d.name,
        mimeType: 'application/vnd.google-apps.folder',
        parents: [SHARED_DRIVES],
        driveId: d.id,
        ...(d.createdTime ? { createdTime: d.createdTime } : {}),
      });
      seen.add(d.id);
    }
    const onPage = async (files: DriveFile[]) => {
      for (const f of files) {
        upsert(f);
        seen.add(f.id);
      }
    };
    await o.client.listFiles(undefined, onPage);
    for (const d of [...model.values()].filter((r) => isSharedDrive(r)))
      if (seen.has(d.file_id)) await o.client.listFiles(d.file_id, onPage);
    for (const id of model.keys()) if (!seen.has(id)) removed.add(id);
  }
  o.signal?.throwIfAborted();

  // Items whose parent went away go with it; items without a visible parent are "shared with me".
  for (const rec of model.values()) rec.parent_id = parentOf(rec, model, root(model));
  for (const id of [...removed]) for (const d of descendants(model, id)) removed.add(d);

  // Local names, per folder, for the folders whose children changed.
  const folders = new Set<string>();
  for (const id of touched) {
    const r = model.get(id)!;
    if (r.parent_id) folders.add(r.parent_id);
    const p = prev.get(id);
    if (p?.parent_id) folders.add(p.parent_id);
  }
  const children = childrenOf(model, removed);
  for (const folder of folders) {
    const kids = (children.get(folder) ?? []).filter(occupiesName);
    const names = assignNames(
      kids.map((r) => {
        const p = prev.get(r.file_id);
        const keep =
          p &&
          p.local_name &&
          p.name === r.name &&
          p.parent_id === r.parent_id &&
          p.mime_type === r.mime_type;
        return {
          id: r.file_id,
          wanted: wantedName(r, o.exportFormats),
          ...(keep ? { current: p.local_name! } : {}),
          ...(r.meta?.createdTime ? { createdTime: String(r.meta.createdTime) } : {}),
        };
      }),
    );
    for (const [id, name] of names) model.get(id)!.local_name = name;
  }
  const paths = pathsOf(model, removed);

  // 1. Removed files, then moves (top-down), then removed folders.
  const removedList = [...removed]
    .map((id) => model.get(id))
    .filter((r): r is DriveItemRecord => !!r);
  for (const r of removedList.filter((r) => r.kind !== 'folder' && r.rel_path)) {
    await rm(join(o.root, r.rel_path!), { force: true, recursive: true });
    result.removed++;
  }
  const moving = [...model.values()]
    .filter(
      (r) =>
        !removed.has(r.file_id) &&
        r.rel_path &&
        paths.has(r.file_id) &&
        paths.get(r.file_id) !== r.rel_path,
    )
    .sort((a, b) => depth(paths.get(a.file_id)!) - depth(paths.get(b.file_id)!));
  for (const r of moving) {
    const from = r.rel_path!;
    const to = paths.get(r.file_id)!;
    if (from === to) continue; // moved with its folder
    await mkdir(dirname(join(o.root, to)), { recursive: true });
    try {
      await rename(join(o.root, from), join(o.root, to));
      result.moved++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Already moved by a pass that stopped before recording it, or gone: fetched again below.
      if (!(await exists(join(o.root, to)))) r.content_version = null;
    }
    for (const x of model.values())
      if (x.rel_path === from || x.rel_path?.startsWith(from + '/')) {
        x.rel_path = to + x.rel_path.slice(from.length);
        touched.add(x.file_id);
      }
  }
  for (const r of removedList.filter((r) => r.kind === 'folder' && r.rel_path)) {
    await rm(join(o.root, r.rel_path!), { force: true, recursive: true });
    result.removed++;
  }
  await o.state.driveItems.remove(o.accountId, [...removed]);
  for (const id of removed) model.delete(id);

  // 2. The account folder's fixed layout (CONTRACT.md), the folders, then record every touched item before any download: a crash keeps the listing.
  if (result.kind === 'first')
    for (const v of [SHARED_DRIVES, SHARED_WITH_ME])
      await mkdir(join(o.root, VIRTUAL[v]!.name), { recursive: true });
  for (const r of model.values()) {
    const p = paths.get(r.file_id);
    if (r.kind === 'folder' && p !== undefined && (touched.has(r.file_id) || r.rel_path !== p)) {
      await mkdir(join(o.root, p), { recursive: true });
      r.rel_path = p;
      r.state = 'ok';
      touched.add(r.file_id);
    }
  }
  for (const r of model.values()) {
    if (r.kind === 'shortcut') {
      const target = model.get(String(r.meta?.targetId ?? ''));
      r.state = 'recorded';
      r.note = target
        ? `a shortcut to ${paths.get(target.file_id) ?? target.name}; recorded, not followed`
        : 'a shortcut to an item this account cannot see; recorded, not followed';
    } else if (r.kind === 'unexportable') {
      r.state = 'recorded';
      r.note = unexportableNote(r.mime_type);
    }
  }
  await o.state.driveItems.put(
    [...touched].map((id) => model.get(id)).filter((r): r is DriveItemRecord => !!r),
  );

  // 3. Content: what is new or changed, what a previous pass could not bring, what is missing.
  const due: DriveItemRecord[] = [];
  const retry = new Set((await o.state.driveItems.unfinished(o.accountId)).map((r) => r.file_id));
  for (const r of model.values()) {
    if (r.kind !== 'file' && r.kind !== 'export') continue;
    const p = paths.get(r.file_id);
    if (p === undefined) continue;
    const wanted = contentVersion(r, o.exportFormats);
    const onDisk = r.rel_path === p && r.content_version === wanted;
    // A file Drive will not give (flagged, not downloadable) is tried again only when it changes.
    if (r.state === 'skipped' && !touched.has(r.file_id)) continue;
    if (onDisk && !retry.has(r.file_id)) {
      // A first pass (perhaps after a crash) trusts the state only where the file is there.
      if (result.kind === 'changes' || (await exists(join(o.root, p)))) continue;
    }
    due.push(r);
  }
  await pool(due, o.concurrency ?? 4, async (r) => {
    o.signal?.throwIfAborted();
    const p = paths.get(r.file_id)!;
    try {
      const got = await bring(o, r, join(o.root, p));
      if (r.rel_path && r.rel_path !== p) await rm(join(o.root, r.rel_path), { force: true });
      Object.assign(r, {
        rel_path: p,
        content_version: contentVersion(r, o.exportFormats),
        state: 'ok',
        note: null,
        attempts: 0,
        size: r.kind === 'export' ? got.bytes : r.size,
      });
      if (r.kind === 'export') r.meta = { ...r.meta, exportSha256: got.sha256, exportMd5: got.md5 };
      result.downloaded++;
      result.bytes += got.bytes;
    } catch (err) {
      if (o.signal?.aborted) throw err;
      const outcome = classifyFailure(err, o.acknowledgeAbuse ?? false);
      r.state = outcome.state;
      r.note = outcome.message;
      r.attempts += 1;
      if (outcome.state === 'deferred') result.deferred++;
      else if (outcome.state === 'skipped') result.skipped++;
      else result.failed++;
      if (outcome.state !== 'skipped') result.problems.push({ path: p, message: outcome.message });
      const alert =
        outcome.state === 'failed' ||
        (outcome.state === 'deferred' && r.attempts >= QUOTA_ALERT_AFTER);
      (alert ? log.error.bind(log) : log.warn.bind(log))(
        {
          path: p,
          file_id: r.file_id,
          attempts: r.attempts,
          ...(outcome.fix ? { fix: outcome.fix } : {}),
        },
        `${p}: ${outcome.message}`,
      );
    }
    r.updated_at = now();
    await o.state.driveItems.put([r]);
  });

  o.signal?.throwIfAborted();
  await writeManifest(o.manifestDir, o.email, [...model.values()], paths);
  // Last: the token, now that everything it covers is on the mirror or marked for another try.
  await o.state.accounts.setCursor(o.accountId, token, now());
  result.apiCalls = o.client.calls - calls0;
  log.info(
    {
      kind: result.kind,
      api_calls: result.apiCalls,
      changes: result.changes,
      downloaded: result.downloaded,
      bytes: result.bytes,
      moved: result.moved,
      removed: result.removed,
      failed: result.failed,
      deferred: result.deferred,
    },
    `drive pass of ${o.email} done`,
  );
  return result;
}

const isSharedDrive = (r: DriveItemRecord) =>
  (r.meta?.parents as string[] | undefined)?.[0] === SHARED_DRIVES;

/** The id of My Drive's root folder (the one item whose parent is the account folder). */
function root(model: Model): string | undefined {
  for (const r of model.values())
    if ((r.meta?.parents as string[] | undefined)?.[0] === ROOT) return r.file_id;
  return undefined;
}

function parentOf(r: DriveItemRecord, model: Model, rootId: string | undefined): string {
  const parents = (r.meta?.parents as string[] | undefined) ?? [];
  if (parents[0] === ROOT || parents[0] === SHARED_DRIVES) return parents[0];
  const visible = parents.find((p) => model.has(p));
  if (visible) return visible;
  if (r.meta?.driveId) return String(r.meta.driveId);
  // Drive keeps items whose folder is gone or unseen: owned ones belong in My Drive.
  return r.meta?.ownedByMe && rootId ? rootId : SHARED_WITH_ME;
}

function toRecord(
  accountId: number,
  f: DriveFile,
  old: DriveItemRecord | undefined,
  at: number,
): DriveItemRecord {
  const kind = kindOf(f.mimeType);
  const meta: Record<string, unknown> = {
    parents: f.parents ?? [],
    ...(f.driveId ? { driveId: f.driveId } : {}),
    ...(f.ownedByMe !== undefined ? { ownedByMe: f.ownedByMe } : {}),
    owners: (f.owners ?? []).map((p) => p.emailAddress ?? p.displayName),
    sharing: summarizeSharing(f),
    ...(f.description ? { description: f.description } : {}),
    starred: !!f.starred,
    ...(f.createdTime ? { createdTime: f.createdTime } : {}),
    ...(f.modifiedTime ? { modifiedTime: f.modifiedTime } : {}),
    ...(f.originalFilename ? { originalFilename: f.originalFilename } : {}),
    ...(f.shortcutDetails?.targetId
      ? { targetId: f.shortcutDetails.targetId, targetMimeType: f.shortcutDetails.targetMimeType }
      : {}),
    ...(f.exportLinks ? { exportLinks: f.exportLinks } : {}),
    ...(f.sharedWithMeTime ? { sharedWithMeTime: f.sharedWithMeTime } : {}),
  };
  return {
    account_id: accountId,
    file_id: f.id,
    parent_id: old?.parent_id ?? null,
    name: f.name,
    mime_type: f.mimeType,
    kind,
    local_name: old?.local_name ?? null,
    rel_path: old?.rel_path ?? null,
    size: f.size !== undefined ? Number(f.size) : kind === 'export' ? (old?.size ?? null) : null,
    md5: f.md5Checksum ?? null,
    sha256: f.sha256Checksum ?? null,
    version: f.version ?? null,
    modified_time: f.modifiedTime ?? null,
    content_version: old?.content_version ?? null,
    state: old?.state === 'ok' || kind === 'folder' ? (old?.state ?? 'pending') : 'pending',
    note: old?.note ?? null,
    attempts: old?.attempts ?? 0,
    meta: {
      ...(old?.kind === 'export' && old.meta?.exportSha256
        ? { exportSha256: old.meta.exportSha256 }
        : {}),
      ...meta,
    },
    updated_at: at,
  };
}

function summarizeSharing(f: DriveFile): string {
  const perms = f.permissions ?? [];
  if (perms.some((p) => p.type === 'anyone')) return 'anyone with the link';
  if (perms.some((p) => p.type === 'domain')) return 'domain';
  const others = perms
    .filter((p) => p.role !== 'owner')
    .map((p) => `${p.emailAddress ?? p.type}:${p.role}`);
  return others.length ? others.join(', ') : f.shared ? 'shared' : 'private';
}

const occupiesName = (r: DriveItemRecord) =>
  r.kind === 'folder' || r.kind === 'file' || r.kind === 'export';

function wantedName(r: DriveItemRecord, formats?: ExportFormats): string {
  if (r.kind === 'export') return safeName(r.name, exportPlan(r.mime_type, formats)?.ext ?? '');
  return safeName(r.name);
}

function contentVersion(r: DriveItemRecord, formats?: ExportFormats): string {
  if (r.kind === 'export')
    return `export:${exportPlan(r.mime_type, formats)?.mimeType}:${r.version ?? r.modified_time}`;
  return r.sha256 ?? r.md5 ?? `v${r.version}:${r.modified_time}:${r.size}`;
}

function childrenOf(model: Model, removed: Set<string>): Map<string, DriveItemRecord[]> {
  const out = new Map<string, DriveItemRecord[]>();
  for (const r of model.values()) {
    if (removed.has(r.file_id) || !r.parent_id) continue;
    let list = out.get(r.parent_id);
    if (!list) out.set(r.parent_id, (list = []));
    list.push(r);
  }
  return out;
}

function descendants(model: Model, id: string): string[] {
  const kids = childrenOf(model, new Set());
  const out: string[] = [];
  const stack = [id];
  const seen = new Set<string>();
  while (stack.length) {
    const x = stack.pop()!;
    if (seen.has(x)) continue;
    seen.add(x);
    for (const k of kids.get(x) ?? []) {
      out.push(k.file_id);
      stack.push(k.file_id);
    }
  }
  return out;
}

/** Each item's path under the account folder; items in a parent loop (never on Drive) get none. */
function pathsOf(model: Model, removed: Set<string>): Map<string, string> {
  const out = new Map<string, string>();
  const resolve = (id: string, trail: Set<string>): string | undefined => {
    if (id in VIRTUAL) {
      const v = VIRTUAL[id]!;
      return v.parent === null ? '' : v.name;
    }
    const known = out.get(id);
    if (known !== undefined) return known;
    const r = model.get(id);
    if (
      !r ||
      removed.has(id) ||
      !r.parent_id ||
      trail.has(id) ||
      (!r.local_name && r.kind !== 'folder')
    )
      return undefined;
    trail.add(id);
    const parent = resolve(r.parent_id, trail);
    if (parent === undefined) return undefined;
    const name = r.parent_id === ROOT ? 'My Drive' : r.local_name;
    if (!name) return undefined;
    const p = parent ? `${parent}/${name}` : name;
    out.set(id, p);
    return p;
  };
  for (const id of model.keys()) if (occupiesName(model.get(id)!)) resolve(id, new Set());
  return out;
}

const depth = (p: string) => p.split('/').length;

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function bring(o: PullOptions, r: DriveItemRecord, target: string) {
  const mtime = r.modified_time ? new Date(r.modified_time) : undefined;
  if (r.kind === 'file') {
    // A file already in place with Drive's checksum (renamed by a pass killed before it could
    // record it) is not downloaded again.
    const have = await hashFile(target).catch(() => undefined);
    if (
      have &&
      (r.md5 || r.sha256) &&
      (!r.md5 || have.md5 === r.md5) &&
      (!r.sha256 || have.sha256 === r.sha256)
    )
      return { ...have, resumed: 0, bytes: 0 };
    return downloadTo({
      target,
      open: (offset) =>
        o.client.media(r.file_id, { offset, acknowledgeAbuse: o.acknowledgeAbuse ?? false }),
      expected: {
        ...(r.size !== null ? { size: r.size } : {}),
        ...(r.md5 ? { md5: r.md5 } : {}),
        ...(r.sha256 ? { sha256: r.sha256 } : {}),
      },
      ...(mtime ? { mtime } : {}),
      resumable: true,
      ...(o.signal ? { signal: o.signal } : {}),
    });
  }
  const plan = exportPlan(r.mime_type, o.exportFormats)!;
  const link = (r.meta?.exportLinks as Record<string, string> | undefined)?.[plan.mimeType];
  // files.export answers up to 10 MB; beyond, Drive says exportSizeLimitExceeded and the
  // file's exportLinks serve the same format (with Range, so a broken body resumes).
  let viaLink = false;
  const open = async (offset: number) => {
    if (!viaLink) {
      try {
        return await o.client.exportMedia(r.file_id, plan.mimeType);
      } catch (err) {
        if (errorReason(err) !== 'exportSizeLimitExceeded' || !link) throw err;
        viaLink = true;
      }
    }
    return o.client.exportLink(link!, offset);
  };
  return downloadTo({
    target,
    open,
    expected: {},
    ...(mtime ? { mtime } : {}),
    resumable: false,
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

function classifyFailure(
  err: unknown,
  acknowledgeAbuse: boolean,
): { state: 'failed' | 'deferred' | 'skipped'; message: string; fix?: string } {
  if (err instanceof QuotaExceeded)
    return {
      state: 'deferred',
      message:
        'Drive refused the download for now (downloadQuotaExceeded): deferred to the next pass',
      fix: 'Nothing to do if it passes; if it persists for days the file is downloaded too often by others: make a copy of it in Drive.',
    };
  const reason = errorReason(err);
  if (reason === 'cannotDownloadAbusiveFile' && !acknowledgeAbuse)
    return {
      state: 'skipped',
      message: 'Google flagged this file as malware or spam; it is not downloaded',
      fix: 'To back it up anyway, set sources.google_drive.acknowledge_abuse: true.',
    };
  if (reason === 'fileNotDownloadable' || reason === 'cannotExportFile')
    return { state: 'skipped', message: `Drive offers no download of this file (${reason})` };
  if (err instanceof VerificationFailed)
    return {
      state: 'failed',
      message: err.message,
      fix: 'It is downloaded again on the next pass.',
    };
  return { state: 'failed', message: messageOf(err), fix: 'It is tried again on the next pass.' };
}

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}
