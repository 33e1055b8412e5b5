// Partial responses: the `fields` system parameter with Google's grammar ("Return specific
// fields" in the Drive guides): a comma-separated list, `a/b` for a field inside a field,
// `a(b,c)` for sub-fields of each element, `*` for every field. A selection naming a field the
// resource does not have is a 400 `invalidParameter` "Invalid field selection <name>", as on
// Drive; so is a sub-selection inside a map such as `exportLinks/application/pdf`.
import { driveErrors } from './errors.js';

/**
 * What fields a resource has: `true` for a value without sub-fields, a nested schema for an
 * object (or a list of objects), 'open' for an object whose sub-fields the emulator does not
 * check (capabilities, storageQuota...), 'map' for a map whose keys cannot be selected.
 */
export type Schema = { [field: string]: Schema | true | 'open' | 'map' };

/** A parsed selection: each selected field, with null meaning "the whole value". */
export type Mask = Map<string, Mask | null>;

export function parseFields(raw: string, schema: Schema): Mask {
  const text = raw.trim();
  if (text === '') throw driveErrors.invalidFieldSelection(raw);
  let pos = 0;
  const fail = (): never => {
    throw driveErrors.invalidFieldSelection(text.slice(Math.max(0, pos - 1)) || raw);
  };
  const skipSpace = () => {
    while (text[pos] === ' ') pos++;
  };
  const ident = (): string => {
    skipSpace();
    const start = pos;
    while (pos < text.length && /[A-Za-z0-9_*.$-]/.test(text[pos]!)) pos++;
    if (pos === start) fail();
    const name = text.slice(start, pos);
    skipSpace();
    return name;
  };
  const list = (): Mask => {
    const mask: Mask = new Map();
    for (;;) {
      const path = [ident()];
      while (text[pos] === '/') {
        pos++;
        path.push(ident());
      }
      let sub: Mask | null = null;
      if (text[pos] === '(') {
        pos++;
        sub = list();
        if (text[pos] !== ')') fail();
        pos++;
        skipSpace();
      }
      let leaf: Mask | null = sub;
      for (let i = path.length - 1; i >= 1; i--) leaf = new Map([[path[i]!, leaf]]);
      merge(mask, path[0]!, leaf);
      if (text[pos] !== ',') break;
      pos++;
    }
    return mask;
  };
  const mask = list();
  if (pos !== text.length) fail();
  check(mask, schema);
  return mask;
}

function merge(into: Mask, key: string, value: Mask | null): void {
  if (!into.has(key)) {
    into.set(key, value);
    return;
  }
  const prior = into.get(key)!;
  if (prior === null || value === null) {
    into.set(key, null);
    return;
  }
  for (const [k, v] of value) merge(prior, k, v);
}

function check(mask: Mask, schema: Schema): void {
  for (const [key, sub] of mask) {
    if (key === '*') {
      if (sub !== null) throw driveErrors.invalidFieldSelection('*');
      continue;
    }
    const field = schema[key];
    if (field === undefined) throw driveErrors.invalidFieldSelection(key);
    if (sub === null || field === 'open') continue;
    if (field === true || field === 'map') {
      throw driveErrors.invalidFieldSelection([...sub.keys()][0] ?? key);
    }
    check(sub, field);
  }
}

/** The value with only the selected fields; fields absent from the value stay absent. */
export function applyMask(value: unknown, mask: Mask | null): unknown {
  if (mask === null || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => applyMask(v, mask));
  const source = value as Record<string, unknown>;
  if (mask.has('*')) return source;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(source)) {
    if (mask.has(key)) out[key] = applyMask(source[key], mask.get(key)!);
  }
  return out;
}

/** Parses `fields` if given, else the method's default selection (parsed without a check). */
export function selection(raw: string | undefined, schema: Schema, fallback: string): Mask {
  return parseFields(raw ?? fallback, schema);
}

// The resources' schemas. Field names are those of the Drive v3 reference, so that a product
// asking for a real field the emulator does not fill gets it left out, not a 400.
const user: Schema = {
  kind: true,
  displayName: true,
  photoLink: true,
  me: true,
  permissionId: true,
  emailAddress: true,
};

const permission: Schema = {
  kind: true,
  id: true,
  type: true,
  emailAddress: true,
  domain: true,
  role: true,
  view: true,
  allowFileDiscovery: true,
  displayName: true,
  photoLink: true,
  expirationTime: true,
  teamDrivePermissionDetails: 'open',
  permissionDetails: 'open',
  deleted: true,
  pendingOwner: true,
  inheritedPermissionsDisabled: true,
};

export const fileSchema: Schema = {
  kind: true,
  driveId: true,
  fileExtension: true,
  copyRequiresWriterPermission: true,
  md5Checksum: true,
  contentHints: 'open',
  writersCanShare: true,
  viewedByMe: true,
  mimeType: true,
  exportLinks: 'map',
  parents: true,
  thumbnailLink: true,
  iconLink: true,
  shared: true,
  lastModifyingUser: user,
  owners: user,
  headRevisionId: true,
  sharingUser: user,
  webViewLink: true,
  webContentLink: true,
  size: true,
  viewersCanCopyContent: true,
  permissions: permission,
  hasThumbnail: true,
  spaces: true,
  folderColorRgb: true,
  id: true,
  name: true,
  description: true,
  starred: true,
  trashed: true,
  explicitlyTrashed: true,
  createdTime: true,
  modifiedTime: true,
  modifiedByMeTime: true,
  viewedByMeTime: true,
  sharedWithMeTime: true,
  quotaBytesUsed: true,
  version: true,
  originalFilename: true,
  ownedByMe: true,
  fullFileExtension: true,
  properties: 'map',
  appProperties: 'map',
  isAppAuthorized: true,
  teamDriveId: true,
  capabilities: 'open',
  hasAugmentedPermissions: true,
  trashingUser: user,
  thumbnailVersion: true,
  trashedTime: true,
  modifiedByMe: true,
  permissionIds: true,
  imageMediaMetadata: 'open',
  videoMediaMetadata: 'open',
  shortcutDetails: { targetId: true, targetMimeType: true, targetResourceKey: true },
  contentRestrictions: 'open',
  resourceKey: true,
  linkShareMetadata: 'open',
  labelInfo: 'open',
  sha1Checksum: true,
  sha256Checksum: true,
  inheritedPermissionsDisabled: true,
  downloadRestrictions: 'open',
};

export const fileListSchema: Schema = {
  kind: true,
  nextPageToken: true,
  incompleteSearch: true,
  files: fileSchema,
};

export const driveSchema: Schema = {
  kind: true,
  id: true,
  name: true,
  themeId: true,
  colorRgb: true,
  backgroundImageFile: 'open',
  backgroundImageLink: true,
  capabilities: 'open',
  createdTime: true,
  hidden: true,
  restrictions: 'open',
  orgUnitId: true,
};

export const driveListSchema: Schema = { kind: true, nextPageToken: true, drives: driveSchema };

export const changeSchema: Schema = {
  kind: true,
  removed: true,
  file: fileSchema,
  fileId: true,
  time: true,
  driveId: true,
  changeType: true,
  type: true,
  teamDriveId: true,
  teamDrive: driveSchema,
  drive: driveSchema,
};

export const changeListSchema: Schema = {
  kind: true,
  nextPageToken: true,
  newStartPageToken: true,
  changes: changeSchema,
};

export const startPageTokenSchema: Schema = { kind: true, startPageToken: true };

export const aboutSchema: Schema = {
  kind: true,
  user,
  storageQuota: 'open',
  importFormats: 'map',
  exportFormats: 'map',
  maxImportSizes: 'map',
  maxUploadSize: true,
  appInstalled: true,
  folderColorPalette: true,
  driveThemes: 'open',
  canCreateDrives: true,
  canCreateTeamDrives: true,
  teamDriveThemes: 'open',
};

/** The selections Drive answers when `fields` is absent (about.get has none: it is required). */
export const defaultFields = {
  file: 'kind,id,name,mimeType',
  fileList: 'kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)',
  changeList:
    'kind,nextPageToken,newStartPageToken,changes(kind,changeType,type,time,removed,fileId,driveId,file(kind,id,name,mimeType),drive(kind,id,name))',
  startPageToken: 'kind,startPageToken',
  drive: 'kind,id,name',
  driveList: 'kind,nextPageToken,drives(kind,id,name)',
};
