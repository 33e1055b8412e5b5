// Which format each Google-native kind is exported in, and what has no export.
import { describe, expect, it } from 'vitest';
import { exportPlan, kindOf, unexportableNote } from '../../src/google/drive/exports.js';
import { EXPORT_FORMATS } from '../emulators/google/index.js';

describe('exports', () => {
  it('defaults to formats Drive offers, the extension telling which', () => {
    for (const [mime, ext] of [
      ['application/vnd.google-apps.document', '.docx'],
      ['application/vnd.google-apps.spreadsheet', '.xlsx'],
      ['application/vnd.google-apps.presentation', '.pptx'],
      ['application/vnd.google-apps.drawing', '.svg'],
    ] as const) {
      const plan = exportPlan(mime)!;
      expect(plan.ext).toBe(ext);
      expect(EXPORT_FORMATS[mime]).toContain(plan.mimeType);
    }
  });
  it('follows the configured format', () => {
    expect(exportPlan('application/vnd.google-apps.spreadsheet', { spreadsheet: 'csv' })).toEqual({
      mimeType: 'text/csv',
      ext: '.csv',
    });
  });
  it('says what is wrong with a format Google does not offer', () => {
    expect(() => exportPlan('application/vnd.google-apps.drawing', { drawing: 'docx' })).toThrow(
      /not one Google offers for a drawing: use one of svg, png, pdf, jpg/,
    );
  });
  it('records forms, sites and maps with a note instead of failing', () => {
    expect(kindOf('application/vnd.google-apps.form')).toBe('unexportable');
    expect(exportPlan('application/vnd.google-apps.form')).toBeUndefined();
    expect(unexportableNote('application/vnd.google-apps.site')).toMatch(
      /Google Site has no export/,
    );
    expect(kindOf('application/vnd.google-apps.shortcut')).toBe('shortcut');
    expect(kindOf('image/png')).toBe('file');
  });
});
