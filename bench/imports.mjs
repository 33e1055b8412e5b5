#!/usr/bin/env node
// What loading each big dependency and each part of the daemon costs: every module is imported
// alone in a fresh Node process, and the RSS and V8 heap after a full GC are compared with those
// before the import. Prints a table; docs/benchmarks.md ("Memory") records it.
//
//   node bench/imports.mjs            # needs npm run build (for the app/dist modules)
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const app = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'app');
const modules = [
  'koa',
  '@koa/router',
  'koa-static',
  'pino',
  'zod',
  'yaml',
  'better-sqlite3',
  './dist/config/index.js',
  './dist/state/index.js',
  './dist/push/rcd.js',
  './dist/daemon/context.js',
  './dist/api/index.js',
  './dist/sync/service.js',
  './dist/daemon/index.js',
];
// Run in app/, so that bare names resolve as the daemon resolves them. `http` and `fetch` are
// one POST to a local server, by node:http and by fetch (whose undici loads at the first call).
const probe = `
const before = (globalThis.gc(), process.memoryUsage());
const t = performance.now();
const name = process.argv[1];
if (name === 'http' || name === 'fetch') {
  const http = await import('node:http');
  const s = http.createServer((q, r) => r.end('{}'));
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const url = 'http://127.0.0.1:' + s.address().port + '/';
  if (name === 'fetch') await (await fetch(url, { method: 'POST', body: '{}' })).text();
  else await new Promise((r) => http.request(url, { method: 'POST' }, (res) => res.resume().on('end', r)).end('{}'));
  s.close();
} else if (name !== '-') await import(name);
const ms = performance.now() - t;
globalThis.gc();
const m = process.memoryUsage();
console.log(JSON.stringify({ rss: m.rss - before.rss, heap: m.heapUsed - before.heapUsed, ms, total: m.rss }));
`;
const labels = {
  '-': '(nothing)',
  'data:text/javascript,export{}': 'an empty module: the loader itself',
  http: 'a first node:http request',
  fetch: 'a first `fetch` (loads undici)',
};
const MiB = (b) => (b / 2 ** 20).toFixed(1);
console.log(`# node ${process.version}; each row a fresh process`);
console.log('');
console.log('| module | RSS after (MiB) | RSS added | V8 heap used added | load time (ms) |');
console.log('| --- | --- | --- | --- | --- |');
for (const m of ['-', 'data:text/javascript,export{}', ...modules, 'http', 'fetch']) {
  const out = execFileSync(
    process.execPath,
    ['--expose-gc', '--input-type=module', '-e', probe, m],
    { cwd: app, encoding: 'utf8' },
  );
  const r = JSON.parse(out);
  console.log(
    `| ${labels[m] ?? m} | ${MiB(r.total)} | ${MiB(r.rss)} | ${MiB(r.heap)} | ${r.ms.toFixed(0)} |`,
  );
}
