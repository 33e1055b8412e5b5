/**
 * Local names for Drive items. Drive allows what ext4 does not (a `/` in a name, names over
 * 255 bytes) and several items with one name in one folder; the mirror must hold them all.
 * A local name is derived from the Drive name alone when it is free, and otherwise carries
 * the item's Drive id, so it is deterministic; once given, the state keeps it as long as the
 * item keeps its name and folder, so it is stable from pass to pass whatever appears beside it.
 */
import { createHash } from 'node:crypto';

/** ext4's limit on one name, in bytes. */
export const NAME_MAX_BYTES = 255;
/** Room kept for `.backupd-partial`, the temporary name of a download beside its target. */
const PARTIAL_ROOM = 16;
const LIMIT = NAME_MAX_BYTES - PARTIAL_ROOM;

/** A name the file system takes: no `/` or NUL, not `.`/`..`, at most LIMIT bytes. */
export function safeName(name: string, ext = ''): string {
  let base = name.replace(/\//g, '∕').replace(/\0/g, '');
  if (base === '' || base === '.' || base === '..') base = `_${base}`;
  // The export's extension is added unless the name already says it (a Doc called "notes.docx").
  if (ext && !base.toLowerCase().endsWith(ext.toLowerCase())) base += ext;
  return fitBytes(base, LIMIT, name);
}

/** Shortens to `max` bytes keeping the extension, with a hash of the whole name so shortened names stay distinct. */
function fitBytes(name: string, max: number, original: string): string {
  if (Buffer.byteLength(name) <= max) return name;
  const hash = createHash('sha256').update(original).digest('hex').slice(0, 8);
  const { stem, ext } = splitExt(name);
  const keepExt = Buffer.byteLength(ext) <= 16 ? ext : '';
  const tail = `~${hash}${keepExt}`;
  return truncateBytes(stem, max - Buffer.byteLength(tail)) + tail;
}

function truncateBytes(s: string, max: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch);
    if (bytes + b > max) break;
    out += ch;
    bytes += b;
  }
  return out;
}

export function splitExt(name: string): { stem: string; ext: string } {
  const i = name.lastIndexOf('.');
  if (i <= 0 || i === name.length - 1) return { stem: name, ext: '' };
  return { stem: name.slice(0, i), ext: name.slice(i) };
}

/** The name of an item that cannot have the plain one: its Drive id before the extension. */
export function disambiguated(name: string, driveId: string): string {
  const { stem, ext } = splitExt(name);
  const tail = ` (${driveId})${ext}`;
  return truncateBytes(stem, LIMIT - Buffer.byteLength(tail)) + tail;
}

export interface NameRequest {
  id: string;
  /** The wanted name, already safe (safeName). */
  wanted: string;
  /** The name this item has now on the mirror, if it has one and keeps it. */
  current?: string;
  /** Orders claims on a free name: the oldest item gets the plain name. */
  createdTime?: string;
}

/**
 * Names in one folder. Items that keep their current name keep it; the others claim their
 * wanted name if no one holds it (oldest first, then by id), else get the disambiguated one.
 * Names are compared case-sensitively, as ext4 does.
 */
export function assignNames(items: NameRequest[]): Map<string, string> {
  const out = new Map<string, string>();
  const taken = new Set<string>();
  for (const it of items)
    if (it.current !== undefined && it.current.length > 0 && !taken.has(it.current)) {
      out.set(it.id, it.current);
      taken.add(it.current);
    }
  const rest = items
    .filter((it) => !out.has(it.id))
    .sort(
      (a, b) =>
        (a.createdTime ?? '').localeCompare(b.createdTime ?? '') || a.id.localeCompare(b.id),
    );
  for (const it of rest) {
    let name = taken.has(it.wanted) ? disambiguated(it.wanted, it.id) : it.wanted;
    for (let n = 2; taken.has(name); n++) name = disambiguated(it.wanted, `${it.id}-${n}`);
    out.set(it.id, name);
    taken.add(name);
  }
  return out;
}
