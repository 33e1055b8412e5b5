// Drive v3 resources (File, Drive, About, User) as one account sees them, with every field the
// emulator knows; `fields` (fields.ts) then keeps what the request selected. As on Drive:
// checksums and size only for binary files, no owners on shared-drive items, parents only when
// the caller can see the parent, exportLinks only for Docs Editors files.
import {
  EXPORT_FORMATS,
  FOLDER,
  SHORTCUT,
  type DriveStore,
  type Item,
  type Person,
  type SharedDrive,
} from './store.js';

export function userResource(p: Person, me: boolean): Record<string, unknown> {
  return {
    kind: 'drive#user',
    displayName: p.displayName,
    me,
    permissionId: p.permissionId,
    emailAddress: p.email,
  };
}

const iso = (d: Date) => d.toISOString();

export interface RenderContext {
  store: DriveStore;
  /** The account asking. */
  email: string;
  /** Where exportLinks point (the emulator's origin). */
  origin: string;
  /** Whether to compute checksums (costly for large generated files): only when selected. */
  checksums: boolean;
}

export function fileResource(ctx: RenderContext, item: Item): Record<string, unknown> {
  const { store, email } = ctx;
  const binary = item.content !== undefined;
  const isFolder = item.mimeType === FOLDER;
  const parents = store.visibleParents(email, item);
  const sharedWithMe = store.sharedWithMe(email, item);
  const me = store.people.get(email);
  const out: Record<string, unknown> = {
    kind: 'drive#file',
    id: item.id,
    name: item.name,
    mimeType: item.mimeType,
  };
  if (item.description !== undefined) out.description = item.description;
  out.starred = item.starred;
  out.trashed = item.trashed;
  out.explicitlyTrashed = item.explicitlyTrashed;
  if (item.trashedTime && item.explicitlyTrashed) {
    out.trashedTime = iso(item.trashedTime);
    out.trashingUser = userResource(item.owner ?? me!, item.owner?.email === email);
  }
  if (parents.length) out.parents = parents;
  out.spaces = ['drive'];
  out.version = String(item.version);
  out.webViewLink = isFolder
    ? `https://drive.google.com/drive/folders/${item.id}`
    : `https://drive.google.com/file/d/${item.id}/view?usp=drivesdk`;
  if (binary) out.webContentLink = `https://drive.google.com/uc?id=${item.id}&export=download`;
  out.hasThumbnail = false;
  out.thumbnailVersion = '0';
  out.viewedByMe = true;
  out.createdTime = iso(item.createdTime);
  out.modifiedTime = iso(item.modifiedTime);
  if (sharedWithMe) {
    const share = item.sharedWith.get(email)!;
    out.sharedWithMeTime = iso(share.time);
    out.sharingUser = userResource(share.by, false);
  }
  if (item.owner) out.owners = [userResource(item.owner, item.owner.email === email)];
  if (item.driveId) {
    out.driveId = item.driveId;
    out.teamDriveId = item.driveId;
  }
  if (item.owner) out.lastModifyingUser = userResource(item.owner, item.owner.email === email);
  const permissions = permissionsOf(store, item);
  out.shared = permissions.length > 1;
  out.ownedByMe = item.owner?.email === email;
  out.capabilities = {
    canDownload: true,
    canCopy: !isFolder,
    canEdit: item.owner?.email === email || item.driveId !== undefined,
    canListChildren: isFolder,
    canRename: item.owner?.email === email,
    canTrash: item.owner?.email === email,
    canShare: item.owner?.email === email,
  };
  out.viewersCanCopyContent = true;
  out.copyRequiresWriterPermission = false;
  out.writersCanShare = true;
  out.permissions = permissions;
  out.permissionIds = permissions.map((p) => p.id);
  if (isFolder && item.folderColorRgb) out.folderColorRgb = item.folderColorRgb;
  if (item.exports) {
    const links: Record<string, string> = {};
    for (const mime of item.exports.keys())
      links[mime] =
        `${ctx.origin}/emulator/export/${encodeURIComponent(item.id)}?mimeType=${encodeURIComponent(mime)}`;
    if (Object.keys(links).length) out.exportLinks = links;
  }
  if (item.mimeType === SHORTCUT && item.shortcutTarget) {
    const target = store.items.get(item.shortcutTarget);
    out.shortcutDetails = { targetId: item.shortcutTarget, targetMimeType: target?.mimeType ?? '' };
  }
  if (binary) {
    const content = item.content!;
    const dot = item.name.lastIndexOf('.');
    out.originalFilename = item.name;
    if (dot > 0) {
      out.fullFileExtension = item.name.slice(item.name.indexOf('.', 1) + 1);
      out.fileExtension = item.name.slice(dot + 1);
    }
    if (ctx.checksums) {
      const sums = content.checksums();
      out.md5Checksum = sums.md5;
      out.sha1Checksum = sums.sha1;
      out.sha256Checksum = sums.sha256;
    }
    out.size = String(content.size);
    out.quotaBytesUsed = String(item.driveId ? 0 : content.size);
    out.headRevisionId = `0B${item.id.slice(1, 20)}${item.headRevision}`;
  } else {
    out.quotaBytesUsed = '0';
  }
  out.isAppAuthorized = false;
  return out;
}

function permissionsOf(store: DriveStore, item: Item): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const user = (p: Person, role: string) => ({
    kind: 'drive#permission',
    id: p.permissionId,
    type: 'user',
    emailAddress: p.email,
    role,
    displayName: p.displayName,
    deleted: false,
  });
  if (item.owner) out.push(user(item.owner, 'owner'));
  if (item.driveId) {
    for (const [email, role] of store.drives.get(item.driveId)?.members ?? [])
      out.push(user(store.person(email), role));
  }
  for (const email of item.sharedWith.keys()) out.push(user(store.person(email), 'reader'));
  item.extraPermissions.forEach((p, i) =>
    out.push({
      kind: 'drive#permission',
      id: p.type === 'anyone' ? 'anyoneWithLink' : `extra${i}`,
      type: p.type,
      role: p.role,
      ...(p.emailAddress ? { emailAddress: p.emailAddress } : {}),
      deleted: false,
    }),
  );
  return out;
}

export function driveResource(drive: SharedDrive, email: string): Record<string, unknown> {
  const role = drive.members.get(email);
  return {
    kind: 'drive#drive',
    id: drive.id,
    name: drive.name,
    createdTime: drive.createdTime.toISOString(),
    hidden: drive.hidden,
    capabilities: {
      canDownload: true,
      canEdit: role === 'organizer' || role === 'fileOrganizer' || role === 'writer',
      canListChildren: true,
      canManageMembers: role === 'organizer',
    },
    restrictions: {
      adminManagedRestrictions: false,
      copyRequiresWriterPermission: false,
      domainUsersOnly: false,
      driveMembersOnly: false,
    },
  };
}

export function aboutResource(store: DriveStore, email: string): Record<string, unknown> {
  const person = store.people.get(email)!;
  const { total, trash } = store.usage(email);
  return {
    kind: 'drive#about',
    user: userResource(person, true),
    storageQuota: {
      limit: String(person.storageLimit),
      usage: String(total),
      usageInDrive: String(total),
      usageInDriveTrash: String(trash),
    },
    exportFormats: EXPORT_FORMATS,
    maxUploadSize: String(5 * 1024 ** 4),
    appInstalled: false,
    canCreateDrives: true,
  };
}
