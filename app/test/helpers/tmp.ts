// Temporary folders for tests: each made under the system's temporary folder and removed after
// the test (or the file) that made it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach } from 'vitest';

/**
 * Returns a function that makes a fresh temporary folder. Call it at the top of a test file
 * (or a describe block); the folders are removed after each test, or after all of them with
 * `{ keep: 'file' }`.
 */
export function tempDirs(
  prefix = 'backupd-test-',
  opts: { keep?: 'test' | 'file' } = {},
): () => string {
  const made: string[] = [];
  const cleanup = () => {
    for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
  };
  if (opts.keep === 'file') afterAll(cleanup);
  else afterEach(cleanup);
  return () => {
    const dir = mkdtempSync(path.join(tmpdir(), prefix));
    made.push(dir);
    return dir;
  };
}
