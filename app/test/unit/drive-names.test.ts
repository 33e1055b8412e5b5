// Local names of Drive items: safe for ext4, distinct among siblings, deterministic, stable.
import { describe, expect, it } from 'vitest';
import {
  assignNames,
  disambiguated,
  NAME_MAX_BYTES,
  safeName,
} from '../../src/google/drive/names.js';

describe('safeName', () => {
  it('keeps a plain name as it is', () => {
    expect(safeName('report.pdf')).toBe('report.pdf');
  });
  it('replaces a slash, which a file system cannot hold, by a look-alike', () => {
    expect(safeName('a/b.txt')).toBe('a∕b.txt');
    expect(safeName('..')).toBe('_..');
  });
  it('adds the export extension unless the name already ends with it', () => {
    expect(safeName('Plan', '.docx')).toBe('Plan.docx');
    expect(safeName('Plan.docx', '.docx')).toBe('Plan.docx');
  });
  it('shortens a name too long for ext4, keeping the extension and staying distinct', () => {
    const a = safeName(`${'é'.repeat(200)}a.txt`);
    const b = safeName(`${'é'.repeat(200)}b.txt`);
    expect(Buffer.byteLength(a)).toBeLessThanOrEqual(NAME_MAX_BYTES - 16);
    expect(a.endsWith('.txt')).toBe(true);
    expect(a).not.toBe(b);
    expect(safeName(`${'é'.repeat(200)}a.txt`)).toBe(a);
  });
});

describe('assignNames', () => {
  it('gives the plain name to the oldest of same-name siblings and the id to the others', () => {
    const names = assignNames([
      { id: 'B', wanted: 'notes.txt', createdTime: '2021' },
      { id: 'A', wanted: 'notes.txt', createdTime: '2020' },
    ]);
    expect(names.get('A')).toBe('notes.txt');
    expect(names.get('B')).toBe('notes (B).txt');
  });
  it('keeps a name once given, whatever appears beside it later', () => {
    const names = assignNames([
      { id: 'B', wanted: 'notes.txt', current: 'notes.txt', createdTime: '2021' },
      { id: 'A', wanted: 'notes.txt', createdTime: '2020' },
    ]);
    expect(names.get('B')).toBe('notes.txt');
    expect(names.get('A')).toBe(disambiguated('notes.txt', 'A'));
  });
  it('never gives one name twice, even when a disambiguated name is taken', () => {
    const names = assignNames([
      { id: 'X', wanted: 'a (Y).txt', current: 'a (Y).txt' },
      { id: 'Z', wanted: 'a.txt' },
      { id: 'Y', wanted: 'a.txt' },
    ]);
    expect(new Set(names.values()).size).toBe(3);
  });
});
