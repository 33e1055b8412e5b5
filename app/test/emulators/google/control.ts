// The test side's hands on the emulated Drive: what the owner (or a collaborator) does in
// Google Drive while the product watches. Each call changes the tree and appends the change
// entries Drive would report: a rename or move is a change whose `file` has the new name or
// parents; trashing shows `trashed: true` (for the folder and everything under it); a permanent
// deletion shows `removed: true` without `file`; leaving a shared drive removes its files.
import { Content, type ContentSpec } from './content.js';
import {
  FOLDER,
  type DriveStore,
  type Item,
  type NodeFixture,
  type SharedDriveFixture,
} from './store.js';

export class DriveControl {
  constructor(
    private readonly store: DriveStore,
    private readonly clock: () => Date,
    /** The account acting (its My Drive is where new items go by default). */
    readonly account: string,
  ) {}

  /** The id of the account's My Drive root folder. */
  get rootId(): string {
    return this.store.rootOf(this.account);
  }

  /** The item, as the emulator holds it (read it, do not change it). */
  file(id: string): Item {
    const item = this.store.items.get(id);
    if (!item || item.deleted) throw new Error(`no item ${id} in the emulated Drive`);
    return item;
  }

  /**
   * The id of the item at a path of names below My Drive (`['Photos', '2024', 'a.jpg']`, or
   * 'Photos/2024/a.jpg' when no name has a slash), or below a shared drive with `{ drive }`.
   * With several items of one name in a folder, the first created.
   */
  idOf(path: string | string[], opts: { drive?: string } = {}): string {
    const names = typeof path === 'string' ? path.split('/').filter(Boolean) : path;
    let cur = opts.drive ?? this.rootId;
    for (const name of names) {
      const next = [...this.store.items.values()].find(
        (i) => i.parent === cur && i.name === name && !i.deleted,
      );
      if (!next) throw new Error(`no "${name}" in ${cur} (path ${names.join('/')})`);
      cur = next.id;
    }
    return cur;
  }

  /** Creates an item (a folder with its children, a file, a doc...) under parentId (default My Drive). */
  create(node: NodeFixture, parentId?: string): string {
    const parent = parentId ?? this.rootId;
    const owner = this.store.items.get(parent)?.driveId
      ? undefined
      : this.store.person(this.account);
    const before = new Set(this.store.items.keys());
    // The new ids are known only after the build: log them in a second step.
    const id = this.store.build(node, parent, owner);
    const made = [...this.store.items.keys()].filter((k) => !before.has(k));
    this.store.mutate(made, () => {});
    return id;
  }

  /** New content for a binary file: new size and checksums, version + 1, modifiedTime now. */
  updateContent(id: string, content: ContentSpec): void {
    const item = this.file(id);
    if (!item.content) throw new Error(`"${item.name}" is not a binary file`);
    this.store.mutate([id], () => {
      item.content = new Content(content);
      item.headRevision++;
      this.touch(item, true);
    });
  }

  /** New export bodies for a Google Doc/Sheet/...: the document was edited. */
  updateExports(id: string, exports: Record<string, ContentSpec>): void {
    const item = this.file(id);
    if (!item.exports) throw new Error(`"${item.name}" is not a Docs Editors file`);
    this.store.mutate([id], () => {
      item.exports = new Map(Object.entries(exports).map(([m, c]) => [m, new Content(c)]));
      this.touch(item, true);
    });
  }

  rename(id: string, name: string): void {
    const item = this.file(id);
    this.store.mutate([id], () => {
      item.name = name;
      this.touch(item, false);
    });
  }

  /** Moves an item (and so its subtree) to another folder, possibly in or out of a shared drive. */
  move(id: string, newParentId: string): void {
    const item = this.file(id);
    const parent = this.file(newParentId);
    if (parent.mimeType !== FOLDER) throw new Error(`move: ${newParentId} is not a folder`);
    if (this.store.subtree(id).includes(newParentId))
      throw new Error('move: a folder cannot go inside itself');
    const ids = this.store.subtree(id);
    this.store.mutate(ids, () => {
      item.parent = newParentId;
      for (const sub of ids) {
        const i = this.store.items.get(sub)!;
        i.driveId = parent.driveId;
        if (parent.driveId) i.owner = undefined;
        else i.owner ??= this.store.person(this.account);
      }
      this.touch(item, false);
    });
  }

  /** To the trash: the item explicitly, everything under it implicitly (all reported). */
  trash(id: string): void {
    const ids = this.store.subtree(id);
    const now = this.clock();
    this.store.mutate(ids, () => {
      for (const sub of ids) {
        const i = this.store.items.get(sub)!;
        if (i.trashed) continue;
        i.trashed = true;
        i.explicitlyTrashed = sub === id;
        i.trashedTime = now;
        this.touch(i, false);
      }
    });
  }

  untrash(id: string): void {
    const ids = this.store.subtree(id);
    this.store.mutate(ids, () => {
      for (const sub of ids) {
        const i = this.store.items.get(sub)!;
        if (sub !== id && i.explicitlyTrashed) continue;
        i.trashed = i.explicitlyTrashed = false;
        i.trashedTime = undefined;
        this.touch(i, false);
      }
    });
  }

  /** Deleted forever (emptied from the trash): `removed: true`, for the subtree too. */
  deletePermanently(id: string): void {
    const ids = this.store.subtree(id);
    this.store.mutate(ids, () => {
      for (const sub of ids) this.store.items.get(sub)!.deleted = true;
    });
  }

  /** Description or star changes (metadata only: version + 1, modifiedTime unchanged). */
  patch(id: string, fields: { description?: string; starred?: boolean }): void {
    const item = this.file(id);
    this.store.mutate([id], () => {
      if (fields.description !== undefined) item.description = fields.description;
      if (fields.starred !== undefined) item.starred = fields.starred;
      this.touch(item, false);
    });
  }

  /** Shares the item (and its subtree) with someone: it shows in their "Shared with me". */
  share(id: string, email: string): void {
    const item = this.file(id);
    const by = this.store.person(this.account);
    const ids = this.store.subtree(id);
    this.store.mutate(ids, () => {
      item.sharedWith.set(email, { time: this.clock(), by });
      this.touch(item, false);
    });
  }

  /** Stops sharing: the other account loses access (its changes say `removed: true`). */
  unshare(id: string, email: string): void {
    const item = this.file(id);
    const ids = this.store.subtree(id);
    this.store.mutate(ids, () => {
      item.sharedWith.delete(email);
      this.touch(item, false);
    });
  }

  /** Google flags (or clears) the file as malware/spam. */
  flagAbusive(id: string, abusive = true): void {
    const item = this.file(id);
    this.store.mutate([id], () => {
      item.abusive = abusive;
    });
  }

  private touch(item: Item, content: boolean): void {
    item.version++;
    if (content) item.modifiedTime = this.clock();
  }
}

/** Shared drives from the test side: created, renamed, joined, left. */
export class SharedDriveControl {
  constructor(private readonly store: DriveStore) {}

  create(fixture: SharedDriveFixture): string {
    const before = new Set(this.store.items.keys());
    const drive = this.store.addSharedDrive(fixture);
    this.store.logDriveChange(drive.id, [...drive.members.keys()]);
    const made = [...this.store.items.keys()].filter((k) => !before.has(k) && k !== drive.id);
    this.store.mutate(made, () => {});
    return drive.id;
  }

  rename(driveId: string, name: string): void {
    const drive = this.get(driveId);
    this.store.mutateDrive(driveId, () => {
      drive.name = name;
      this.store.items.get(driveId)!.name = name;
    });
  }

  /** The account joins: the drive and its files appear in its changes. */
  addMember(driveId: string, email: string, role = 'reader'): void {
    const drive = this.get(driveId);
    this.store.logDriveChange(driveId, [email]);
    this.store.mutate(this.itemsOf(driveId), () => drive.members.set(email, role), {
      accessOnly: true,
    });
  }

  /** The account leaves (or is removed): the drive and its files are `removed` for it. */
  removeMember(driveId: string, email: string): void {
    const drive = this.get(driveId);
    this.store.mutate(this.itemsOf(driveId), () => drive.members.delete(email), {
      accessOnly: true,
    });
    this.store.logDriveChange(driveId, [email]);
  }

  private get(driveId: string) {
    const drive = this.store.drives.get(driveId);
    if (!drive) throw new Error(`no shared drive ${driveId}`);
    return drive;
  }

  private itemsOf(driveId: string): string[] {
    return [...this.store.items.values()]
      .filter((i) => i.driveId === driveId && !i.root && !i.deleted)
      .map((i) => i.id);
  }
}
