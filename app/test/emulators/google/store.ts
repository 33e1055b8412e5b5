// The emulated Drive: one world of files, folders and shared drives seen by several accounts,
// and the change logs Drive keeps of it. Each account sees its own My Drive, the shared drives it
// is a member of, and what was shared with it (directly, or through a shared folder). Every
// mutation appends, to the log of each account that could see the item before or after it, a
// change with a new, increasing id; a log keeps only the latest change of each item, so a
// `changes.list` window shows each item once with its latest state, as Drive documents.
import { createHash } from 'node:crypto';
import { Content, type ContentSpec } from './content.js';

export const FOLDER = 'application/vnd.google-apps.folder';
export const SHORTCUT = 'application/vnd.google-apps.shortcut';
export const GOOGLE_APPS = 'application/vnd.google-apps.';

/** The Google-native types a fixture names by a short word. */
export const NATIVE_TYPES = {
  doc: 'application/vnd.google-apps.document',
  sheet: 'application/vnd.google-apps.spreadsheet',
  slides: 'application/vnd.google-apps.presentation',
  drawing: 'application/vnd.google-apps.drawing',
  script: 'application/vnd.google-apps.script',
  form: 'application/vnd.google-apps.form',
  site: 'application/vnd.google-apps.site',
  map: 'application/vnd.google-apps.map',
} as const;

/** The export formats Drive offers per native type (about.exportFormats); forms, sites, maps: none. */
export const EXPORT_FORMATS: Record<string, string[]> = {
  [NATIVE_TYPES.doc]: [
    'application/rtf',
    'application/vnd.oasis.opendocument.text',
    'text/html',
    'application/pdf',
    'application/epub+zip',
    'application/zip',
    'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    'text/plain',
    'text/markdown',
  ],
  [NATIVE_TYPES.sheet]: [
    'application/x-vnd.oasis.opendocument.spreadsheet',
    'text/tab-separated-values',
    'application/pdf',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    'text/csv',
    'application/zip',
    'application/vnd.oasis.opendocument.spreadsheet',
  ],
  [NATIVE_TYPES.slides]: [
    'application/vnd.oasis.opendocument.presentation',
    'application/pdf',
    'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    'text/plain',
    'image/jpeg',
    'image/png',
    'image/svg+xml',
  ],
  [NATIVE_TYPES.drawing]: ['image/svg+xml', 'image/png', 'application/pdf', 'image/jpeg'],
  [NATIVE_TYPES.script]: ['application/vnd.google-apps.script+json'],
};

/** Drive's limit on what files.export answers; larger exports go through exportLinks. */
export const EXPORT_LIMIT_BYTES = 10 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Fixture description

interface NodeBase {
  /** A fixed id, so that tests can name the item; otherwise one is made up. */
  id?: string;
  name: string;
  description?: string;
  starred?: boolean;
  trashed?: boolean;
  createdTime?: string | Date;
  modifiedTime?: string | Date;
  /** Drive's `version` (a counter every change increments). Default 1. */
  version?: number;
  /** Emails the item is shared with (as readers): it is in their "Shared with me". */
  sharedWith?: string[];
  /** Extra permissions to report, e.g. `{ type: 'anyone', role: 'reader' }`. */
  permissions?: {
    type: 'user' | 'group' | 'domain' | 'anyone';
    role: string;
    emailAddress?: string;
  }[];
}

export type NodeFixture =
  | (NodeBase & { type: 'folder'; children?: NodeFixture[]; folderColorRgb?: string })
  | (NodeBase & {
      type: 'file';
      content: ContentSpec;
      /** Default: from the name's extension, else application/octet-stream. */
      mimeType?: string;
      /** Flagged as malware/spam: downloads need acknowledgeAbuse=true. */
      abusive?: boolean;
    })
  | (NodeBase & {
      type: 'doc' | 'sheet' | 'slides' | 'drawing' | 'script';
      /** Export bodies per MIME type; default: a short text for each format Drive offers. */
      exports?: Record<string, ContentSpec>;
    })
  | (NodeBase & { type: 'form' | 'site' | 'map' })
  | (NodeBase & { type: 'shortcut'; /** The target's fixture id. */ target: string })
  | (NodeBase & { type: 'native'; mimeType: string; exports?: Record<string, ContentSpec> });

export interface AccountFixture {
  email: string;
  displayName?: string;
  /** Storage limit in bytes reported by about.get (default 15 GB); usage is computed. */
  storageLimit?: number;
  /** The account's My Drive, top level. */
  myDrive?: NodeFixture[];
  /**
   * Items shared with this account that live outside its My Drive: they are created in the
   * owner's My Drive (an emulated account's, or an outsider's) and shared with this account.
   */
  sharedWithMe?: (NodeFixture & { owner?: string })[];
}

export interface SharedDriveFixture {
  id?: string;
  name: string;
  /** Member emails (role organizer), or email → role. */
  members: string[] | Record<string, string>;
  createdTime?: string | Date;
  hidden?: boolean;
  children?: NodeFixture[];
}

// ---------------------------------------------------------------------------------------------
// The model

export interface Person {
  email: string;
  displayName: string;
  permissionId: string;
}

export interface Item {
  id: string;
  name: string;
  mimeType: string;
  /** Drive v3 items have one parent; undefined for roots. */
  parent: string | undefined;
  /** The shared drive the item lives in. */
  driveId: string | undefined;
  /** Undefined for items of shared drives (Drive reports no owner there). */
  owner: Person | undefined;
  root: 'user' | 'drive' | undefined;
  content: Content | undefined;
  exports: Map<string, Content> | undefined;
  shortcutTarget: string | undefined;
  trashed: boolean;
  explicitlyTrashed: boolean;
  trashedTime: Date | undefined;
  starred: boolean;
  description: string | undefined;
  createdTime: Date;
  modifiedTime: Date;
  version: number;
  headRevision: number;
  sharedWith: Map<string, { time: Date; by: Person }>;
  extraPermissions: NonNullable<NodeBase['permissions']>;
  abusive: boolean;
  folderColorRgb: string | undefined;
  /** Permanently deleted: kept as a tombstone so the change logs can still say where it was. */
  deleted: boolean;
}

export interface SharedDrive {
  id: string;
  name: string;
  createdTime: Date;
  hidden: boolean;
  members: Map<string, string>;
}

interface LogEntry {
  id: number;
  kind: 'file' | 'drive';
  target: string;
  time: Date;
}

/** One change log (an account's, or a shared drive's): append-only, latest per item kept. */
export class ChangeLog {
  readonly entries: LogEntry[] = [];
  private readonly latest = new Map<string, number>();
  /** Tokens below this answer "invalid" (see `expireTokensBefore`). */
  oldestValidToken = 1;

  append(entry: LogEntry): void {
    this.entries.push(entry);
    this.latest.set(`${entry.kind}:${entry.target}`, entry.id);
  }

  /** The live entries with id >= token, in id order (an item changed again appears later). */
  *since(token: number): Generator<LogEntry> {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid]!.id < token) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (this.latest.get(`${e.kind}:${e.target}`) === e.id) yield e;
    }
  }
}

const EXTENSION_TYPES: Record<string, string> = {
  txt: 'text/plain',
  md: 'text/markdown',
  csv: 'text/csv',
  html: 'text/html',
  json: 'application/json',
  pdf: 'application/pdf',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  mp4: 'video/mp4',
  mov: 'video/quicktime',
  zip: 'application/zip',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
};

const OUTSIDER = 'owner@outside.example';

export class DriveStore {
  readonly items = new Map<string, Item>();
  readonly drives = new Map<string, SharedDrive>();
  readonly people = new Map<string, Person & { rootId: string; storageLimit: number }>();
  /** The emulated accounts (people who can sign in), by email. */
  readonly accounts = new Set<string>();
  readonly userLogs = new Map<string, ChangeLog>();
  readonly driveLogs = new Map<string, ChangeLog>();
  private nextChange = 1000;
  private idCounter = 0;
  private readonly salt: string;

  constructor(
    private readonly clock: () => Date,
    seed = 'drive',
  ) {
    this.salt = seed;
  }

  // ------------------------------------------------------------------ ids, people, fixtures

  private makeId(kind: 'file' | 'root'): string {
    const hash = createHash('sha256')
      .update(`${this.salt}:${kind}:${++this.idCounter}`)
      .digest('base64url');
    return kind === 'file' ? `1${hash.slice(0, 32)}` : `0A${hash.slice(0, 11)}Uk9PVA`;
  }

  person(email: string, displayName?: string, storageLimit?: number): Person {
    let p = this.people.get(email);
    if (!p) {
      const rootId = this.makeId('root');
      p = {
        email,
        displayName: displayName ?? email.split('@')[0]!,
        permissionId: String(
          BigInt('0x' + createHash('sha256').update(email).digest('hex').slice(0, 15)),
        ),
        rootId,
        storageLimit: storageLimit ?? 15 * 1024 ** 3,
      };
      this.people.set(email, p);
      const now = this.clock();
      this.items.set(rootId, this.blankItem(rootId, 'My Drive', FOLDER, undefined, p, now, 'user'));
    } else if (displayName) {
      p.displayName = displayName;
    }
    return p;
  }

  addAccount(fx: AccountFixture): void {
    if (!/^[^@\s]+@[^@\s]+$/.test(fx.email))
      throw new Error(`account email "${fx.email}" is not an email address`);
    if (this.accounts.has(fx.email)) throw new Error(`account ${fx.email} is given twice`);
    const p = this.person(fx.email, fx.displayName, fx.storageLimit);
    this.accounts.add(fx.email);
    this.userLogs.set(fx.email, new ChangeLog());
    for (const node of fx.myDrive ?? []) this.build(node, this.people.get(fx.email)!.rootId, p);
  }

  addSharedWithMe(fx: AccountFixture): void {
    for (const node of fx.sharedWithMe ?? []) {
      const owner = this.person(node.owner ?? OUTSIDER);
      const shared = { ...node, sharedWith: [...(node.sharedWith ?? []), fx.email] };
      this.build(shared, this.people.get(owner.email)!.rootId, owner);
    }
  }

  addSharedDrive(fx: SharedDriveFixture): SharedDrive {
    const id = fx.id ?? this.makeId('root');
    if (this.items.has(id)) throw new Error(`id ${id} is used twice`);
    const members = Array.isArray(fx.members)
      ? new Map(fx.members.map((m) => [m, 'organizer']))
      : new Map(Object.entries(fx.members));
    const drive: SharedDrive = {
      id,
      name: fx.name,
      createdTime: date(fx.createdTime) ?? this.clock(),
      hidden: fx.hidden ?? false,
      members,
    };
    this.drives.set(id, drive);
    this.driveLogs.set(id, new ChangeLog());
    const root = this.blankItem(
      id,
      fx.name,
      FOLDER,
      undefined,
      undefined,
      drive.createdTime,
      'drive',
    );
    root.driveId = id;
    this.items.set(id, root);
    for (const child of fx.children ?? []) this.build(child, id, undefined);
    return drive;
  }

  /** Shortcuts name their target by fixture id; checked once every fixture is built. */
  checkShortcuts(): void {
    for (const item of this.items.values()) {
      if (item.shortcutTarget && !this.items.has(item.shortcutTarget))
        throw new Error(
          `shortcut "${item.name}" points at "${item.shortcutTarget}", which no fixture item has as id`,
        );
    }
  }

  private blankItem(
    id: string,
    name: string,
    mimeType: string,
    parent: string | undefined,
    owner: Person | undefined,
    now: Date,
    root?: 'user' | 'drive',
  ): Item {
    return {
      id,
      name,
      mimeType,
      parent,
      driveId: undefined,
      owner,
      root,
      content: undefined,
      exports: undefined,
      shortcutTarget: undefined,
      trashed: false,
      explicitlyTrashed: false,
      trashedTime: undefined,
      starred: false,
      description: undefined,
      createdTime: now,
      modifiedTime: now,
      version: 1,
      headRevision: 1,
      sharedWith: new Map(),
      extraPermissions: [],
      abusive: false,
      folderColorRgb: undefined,
      deleted: false,
    };
  }

  /** Creates a fixture node (and its children) under parentId; returns its id. */
  build(node: NodeFixture, parentId: string, owner: Person | undefined): string {
    const parent = this.items.get(parentId);
    if (!parent) throw new Error(`parent ${parentId} of "${node.name}" does not exist`);
    if (parent.mimeType !== FOLDER) throw new Error(`parent of "${node.name}" is not a folder`);
    if (typeof node.name !== 'string' || node.name === '')
      throw new Error('every fixture item needs a non-empty name');
    const id = node.id ?? this.makeId('file');
    if (this.items.has(id)) throw new Error(`id ${id} is used twice`);
    const now = this.clock();
    const created = date(node.createdTime) ?? now;
    const item = this.blankItem(id, node.name, FOLDER, parentId, owner, created);
    item.driveId = parent.driveId;
    if (item.driveId) item.owner = undefined;
    item.modifiedTime = date(node.modifiedTime) ?? created;
    item.version = node.version ?? 1;
    item.starred = node.starred ?? false;
    item.description = node.description;
    item.extraPermissions = node.permissions ?? [];
    if (node.trashed) {
      item.trashed = item.explicitlyTrashed = true;
      item.trashedTime = now;
    }
    const sharer = owner ?? this.person(OUTSIDER);
    for (const email of node.sharedWith ?? [])
      item.sharedWith.set(email, { time: now, by: sharer });
    switch (node.type) {
      case 'folder':
        item.folderColorRgb = node.folderColorRgb;
        break;
      case 'file':
        item.mimeType = node.mimeType ?? guessType(node.name);
        if (item.mimeType.startsWith(GOOGLE_APPS))
          throw new Error(`"${node.name}": a binary file cannot have the type ${item.mimeType}`);
        item.content = new Content(node.content);
        item.abusive = node.abusive ?? false;
        break;
      case 'doc':
      case 'sheet':
      case 'slides':
      case 'drawing':
      case 'script':
        item.mimeType = NATIVE_TYPES[node.type];
        item.exports = makeExports(item.name, item.mimeType, node.exports);
        break;
      case 'form':
      case 'site':
      case 'map':
        item.mimeType = NATIVE_TYPES[node.type];
        break;
      case 'native':
        if (!node.mimeType.startsWith(GOOGLE_APPS))
          throw new Error(`"${node.name}": a native type starts with ${GOOGLE_APPS}`);
        item.mimeType = node.mimeType;
        item.exports = makeExports(item.name, item.mimeType, node.exports);
        break;
      case 'shortcut':
        item.mimeType = SHORTCUT;
        item.shortcutTarget = node.target;
        break;
      default:
        throw new Error(`unknown fixture type ${(node as { type: string }).type}`);
    }
    this.items.set(id, item);
    if (node.type === 'folder')
      for (const child of node.children ?? []) this.build(child, id, owner);
    return id;
  }

  // ------------------------------------------------------------------ who sees what

  rootOf(email: string): string {
    const p = this.people.get(email);
    if (!p) throw new Error(`no account ${email}`);
    return p.rootId;
  }

  isMember(email: string, driveId: string): boolean {
    return this.drives.get(driveId)?.members.has(email) ?? false;
  }

  canSee(email: string, item: Item): boolean {
    if (item.deleted) return false;
    if (item.driveId) return this.isMember(email, item.driveId);
    if (item.root === 'user') return item.owner?.email === email;
    for (
      let cur: Item | undefined = item;
      cur;
      cur = cur.parent ? this.items.get(cur.parent) : undefined
    ) {
      if (cur.owner?.email === email && cur.root !== 'user') return true;
      if (cur.sharedWith.has(email)) return true;
    }
    return false;
  }

  /** Whether the item is in the account's My Drive hierarchy (for restrictToMyDrive). */
  inMyDrive(email: string, item: Item): boolean {
    const root = this.rootOf(email);
    for (
      let cur: Item | undefined = item;
      cur;
      cur = cur.parent ? this.items.get(cur.parent) : undefined
    )
      if (cur.id === root) return true;
    return false;
  }

  /** The parents the account can see (Drive leaves out parents the caller has no access to). */
  visibleParents(email: string, item: Item): string[] {
    if (!item.parent) return [];
    const parent = this.items.get(item.parent);
    return parent && this.canSee(email, parent) ? [parent.id] : [];
  }

  sharedWithMe(email: string, item: Item): boolean {
    return !item.driveId && item.owner?.email !== email && item.sharedWith.has(email);
  }

  /** Every item the account can see, roots excluded, in creation order. */
  *visibleItems(email: string): Generator<Item> {
    for (const item of this.items.values()) if (!item.root && this.canSee(email, item)) yield item;
  }

  subtree(id: string): string[] {
    const out = [id];
    for (let i = 0; i < out.length; i++)
      for (const item of this.items.values())
        if (item.parent === out[i] && !item.deleted) out.push(item.id);
    return out;
  }

  // ------------------------------------------------------------------ change logs

  /** The token a client starts from: the id the next change will get. */
  get headToken(): number {
    return this.nextChange;
  }

  private audience(id: string): { accounts: Set<string>; drive: string | undefined } {
    const item = this.items.get(id);
    const accounts = new Set<string>();
    if (item) for (const email of this.accounts) if (this.canSee(email, item)) accounts.add(email);
    return { accounts, drive: item?.driveId };
  }

  /**
   * Runs a mutation of the given items and logs a change for each item, in the log of every
   * account that could see it before or after, and of its shared drive(s).
   */
  mutate(ids: string[], fn: () => void, opts: { accessOnly?: boolean } = {}): void {
    const before = ids.map((id) => this.audience(id));
    fn();
    const time = this.clock();
    ids.forEach((id, i) => {
      const after = this.audience(id);
      const entry = (): LogEntry => ({ id: this.nextChange++, kind: 'file', target: id, time });
      // With accessOnly (a membership change), only those who gained or lost the item see a
      // change: the item itself did not change for the others.
      const told = opts.accessOnly
        ? [...before[i]!.accounts, ...after.accounts].filter(
            (e) => before[i]!.accounts.has(e) !== after.accounts.has(e),
          )
        : [...before[i]!.accounts, ...after.accounts];
      for (const email of new Set(told)) this.userLogs.get(email)!.append(entry());
      if (!opts.accessOnly)
        for (const drive of new Set([before[i]!.drive, after.drive]))
          if (drive) this.driveLogs.get(drive)?.append(entry());
    });
  }

  /** Logs a drive change (a rename) for every member. */
  mutateDrive(driveId: string, fn: () => void): void {
    fn();
    this.logDriveChange(driveId, [...(this.drives.get(driveId)?.members.keys() ?? [])]);
  }

  /** Logs a drive change for these accounts only (the one who joined or left). */
  logDriveChange(driveId: string, emails: string[]): void {
    const time = this.clock();
    for (const email of emails)
      this.userLogs
        .get(email)
        ?.append({ id: this.nextChange++, kind: 'drive', target: driveId, time });
  }

  // ------------------------------------------------------------------ storage

  usage(email: string): { total: number; trash: number } {
    let total = 0;
    let trash = 0;
    for (const item of this.items.values()) {
      if (item.owner?.email !== email || !item.content) continue;
      total += item.content.size;
      if (item.trashed) trash += item.content.size;
    }
    return { total, trash };
  }
}

function date(v: string | Date | undefined): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error(`"${String(v)}" is not a date`);
  return d;
}

function guessType(name: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(name)?.[1]?.toLowerCase();
  return (ext && EXTENSION_TYPES[ext]) ?? 'application/octet-stream';
}

function makeExports(
  name: string,
  mimeType: string,
  given: Record<string, ContentSpec> | undefined,
): Map<string, Content> {
  const out = new Map<string, Content>();
  if (given) {
    for (const [mime, spec] of Object.entries(given)) out.set(mime, new Content(spec));
  } else {
    for (const mime of EXPORT_FORMATS[mimeType] ?? [])
      out.set(mime, new Content(`Export of "${name}" as ${mime}\n`));
  }
  return out;
}
