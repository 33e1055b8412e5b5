/**
 * Google-native files (Docs, Sheets, Slides, Drawings, Apps Script) have no bytes of their own:
 * they are exported, in a format the owner chooses per kind (config
 * `sources.google_drive.export_formats`), and the extension of the local name says which.
 * Forms, Sites, My Maps and other native types without an export are recorded, not exported.
 */

export const GOOGLE_APPS = 'application/vnd.google-apps.';
export const FOLDER = 'application/vnd.google-apps.folder';
export const SHORTCUT = 'application/vnd.google-apps.shortcut';

/** The exportable kinds, by the word the configuration uses. */
export const EXPORT_KINDS = {
  document: 'application/vnd.google-apps.document',
  spreadsheet: 'application/vnd.google-apps.spreadsheet',
  presentation: 'application/vnd.google-apps.presentation',
  drawing: 'application/vnd.google-apps.drawing',
  script: 'application/vnd.google-apps.script',
} as const;
export type ExportKind = keyof typeof EXPORT_KINDS;

/** Formats per kind, by extension: what Drive offers (about.exportFormats). */
export const EXPORT_CHOICES: Record<ExportKind, Record<string, string>> = {
  document: {
    docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    odt: 'application/vnd.oasis.opendocument.text',
    pdf: 'application/pdf',
    rtf: 'application/rtf',
    txt: 'text/plain',
    md: 'text/markdown',
    html: 'text/html',
    epub: 'application/epub+zip',
  },
  spreadsheet: {
    xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    ods: 'application/vnd.oasis.opendocument.spreadsheet',
    pdf: 'application/pdf',
    csv: 'text/csv',
    tsv: 'text/tab-separated-values',
    zip: 'application/zip',
  },
  presentation: {
    pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    odp: 'application/vnd.oasis.opendocument.presentation',
    pdf: 'application/pdf',
    txt: 'text/plain',
  },
  drawing: {
    svg: 'image/svg+xml',
    png: 'image/png',
    pdf: 'application/pdf',
    jpg: 'image/jpeg',
  },
  script: { json: 'application/vnd.google-apps.script+json' },
};

/**
 * Defaults: the Office formats open everywhere and keep the most of a Doc, Sheet or Slides
 * (all sheets of a spreadsheet, unlike CSV); SVG keeps a Drawing as vectors.
 */
export const DEFAULT_EXPORT_FORMATS: Record<ExportKind, string> = {
  document: 'docx',
  spreadsheet: 'xlsx',
  presentation: 'pptx',
  drawing: 'svg',
  script: 'json',
};

export type ExportFormats = Partial<Record<ExportKind, string>>;

export interface ExportPlan {
  mimeType: string;
  /** The extension of the local name, with its dot. */
  ext: string;
}

export type ItemKind = 'folder' | 'file' | 'export' | 'shortcut' | 'unexportable';

/** What the pull does with an item of this MIME type. */
export function kindOf(mimeType: string): ItemKind {
  if (mimeType === FOLDER) return 'folder';
  if (mimeType === SHORTCUT) return 'shortcut';
  if (!mimeType.startsWith(GOOGLE_APPS)) return 'file';
  return Object.values(EXPORT_KINDS).includes(mimeType as never) ? 'export' : 'unexportable';
}

/** The export of a native type under the configured formats, or undefined for one without. */
export function exportPlan(mimeType: string, formats: ExportFormats = {}): ExportPlan | undefined {
  const kind = (Object.keys(EXPORT_KINDS) as ExportKind[]).find(
    (k) => EXPORT_KINDS[k] === mimeType,
  );
  if (!kind) return undefined;
  const ext = formats[kind] ?? DEFAULT_EXPORT_FORMATS[kind];
  const mime = EXPORT_CHOICES[kind][ext];
  if (!mime) throw new Error(exportFormatProblem(kind, ext));
  return { mimeType: mime, ext: `.${ext}` };
}

export function exportFormatProblem(kind: ExportKind, ext: string): string {
  return `export format "${ext}" is not one Google offers for a ${kind}: use one of ${Object.keys(EXPORT_CHOICES[kind]).join(', ')}`;
}

/** A note for the native types the pull records without content. */
export function unexportableNote(mimeType: string): string {
  const what = mimeType.slice(GOOGLE_APPS.length);
  const known: Record<string, string> = {
    form: 'a Google Form',
    site: 'a Google Site',
    map: 'a Google My Maps map',
    fusiontable: 'a Fusion Table',
    jam: 'a Jamboard',
  };
  return `${known[what] ?? `a Google ${what}`} has no export in Drive's API: its metadata is kept in the manifest, its content stays at Google (use Google Takeout for it)`;
}
