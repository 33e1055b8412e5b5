// The generated references in docs/ must be what the code produces now.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { openApiReference } from '../../src/cli/docs.js';
import { configKeys, configReference } from '../../src/config/index.js';

const DOCS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs');
const STALE = 'is stale: run `npm run docs` (after `npm run build`) and commit the result';

describe('generated documentation', () => {
  it('docs/configuration.md matches the configuration schema', () => {
    const committed = readFileSync(path.join(DOCS, 'configuration.md'), 'utf8');
    expect(committed === configReference(), `docs/configuration.md ${STALE}`).toBe(true);
  });

  it('docs/openapi.json matches the API routes', () => {
    const committed = readFileSync(path.join(DOCS, 'openapi.json'), 'utf8');
    expect(committed === openApiReference(), `docs/openapi.json ${STALE}`).toBe(true);
  });

  it('every configuration key has a description', () => {
    const keys = configKeys();
    expect(keys.length).toBeGreaterThan(50);
    expect(keys.filter((k) => k.description.trim() === '').map((k) => k.path)).toEqual([]);
  });

  it('the reference documents every key, and every secret key is marked', () => {
    const doc = configReference();
    for (const k of configKeys()) {
      const name = k.path.split('.').pop()!;
      expect(doc, k.path).toContain(k.section ? `\`${k.path}\`` : `| \`${name}\` |`);
    }
    for (const k of configKeys().filter((k) => k.secret)) {
      const row = doc
        .split('\n')
        .find((l) => l.includes(`| \`${k.path.split('.').pop()}\` |`) && l.includes('**secret**'));
      expect(row, `${k.path} is marked secret`).toBeDefined();
    }
  });
});
