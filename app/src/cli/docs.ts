/**
 * `npm run docs`: writes the generated references, docs/configuration.md and
 * docs/openapi.json, from the schemas the code uses. A unit test fails when they are stale.
 */
import { writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiRoutes, openApiDocument, type ApiDeps } from '../api/index.js';
import { configReference } from '../config/index.js';
import { VERSION } from '../daemon/context.js';

export const DOCS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../docs');

/** The OpenAPI document; route handlers are not called, so no daemon is needed. */
export function openApiReference(): string {
  const deps = { version: VERSION } as ApiDeps;
  return `${JSON.stringify(openApiDocument(apiRoutes(deps), { version: VERSION }), null, 2)}\n`;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(resolve(DOCS_DIR, 'configuration.md'), configReference());
  writeFileSync(resolve(DOCS_DIR, 'openapi.json'), openApiReference());
  process.stdout.write(`wrote ${DOCS_DIR}/configuration.md and openapi.json\n`);
}
