/**
 * Reading, validating and writing the configuration file. Every problem is reported with
 * the key path, the line, the bad value and what is expected, never as a stack trace.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument, stringify, type Document } from 'yaml';
import type { z } from 'zod';
import { writeFileAtomic } from '../util/fs.js';
import { childKeys, configKey, secretPaths } from './keys.js';
import { configSchema, type Config } from './schema.js';

export interface ConfigProblem {
  /** Dotted key path, e.g. `sync.batch_size` (empty for the whole file). */
  path: string;
  line?: number;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string | undefined,
    readonly problems: ConfigProblem[],
  ) {
    super(formatProblems(file, problems));
    this.name = 'ConfigError';
  }
}

export function formatProblems(file: string | undefined, problems: ConfigProblem[]): string {
  const where = file ? `${file}` : 'the configuration';
  if (problems.length === 1 && !problems[0]!.path) {
    const p = problems[0]!;
    return `${where}${p.line ? ` line ${p.line}` : ''}: ${p.message}`;
  }
  const lines = problems.map(
    (p) => `  - ${p.path || '(file)'}${p.line ? ` (line ${p.line})` : ''}: ${p.message}`,
  );
  return `${where} is not valid (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}\nThe keys are described in docs/configuration.md.`;
}

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the file it came from (undefined when built in memory). */
  file: string | undefined;
  /** Things that work but should change, e.g. a secret written in the file. */
  warnings: ConfigProblem[];
  /** Secret values written inline in the file, by key path. */
  inlineSecrets: Record<string, string>;
}

export type ConfigSourceHow = 'flag' | 'env' | 'system' | 'cwd';

/** Where the configuration is: --config, then BACKUPD_CONFIG, then /etc/backupd, then ./config.yaml. */
export function findConfigFile(
  explicit: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  cwd = process.cwd(),
  exists: (p: string) => boolean = existsSync,
): { file: string; how: ConfigSourceHow } {
  if (explicit) return { file: resolve(cwd, explicit), how: 'flag' };
  if (env.BACKUPD_CONFIG) return { file: resolve(cwd, env.BACKUPD_CONFIG), how: 'env' };
  if (exists('/etc/backupd/config.yaml'))
    return { file: '/etc/backupd/config.yaml', how: 'system' };
  return { file: resolve(cwd, 'config.yaml'), how: 'cwd' };
}

export async function loadConfigFile(file: string): Promise<LoadedConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT'
        ? `no configuration file here. Create one (docs/configuration.md describes every key), pass --config FILE, set BACKUPD_CONFIG, or run \`npm start\` once to get a working default.`
        : code === 'EACCES'
          ? `cannot be read by this user (${process.getuid?.()}): check its owner and mode.`
          : `cannot be read: ${(err as Error).message}`;
    throw new ConfigError(file, [{ path: '', message }]);
  }
  return parseConfigText(text, file);
}

/** Validates YAML text; throws ConfigError listing every problem. */
export function parseConfigText(text: string, file?: string): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({
        path: '',
        line: e.linePos?.[0]?.line,
        message: `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}. Check the indentation (spaces, not tabs) and the quoting on that line.`,
      })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(file, [
      {
        path: '',
        message:
          'expected a mapping of sections (sources:, destinations:, sync:, ...) at the top level',
      },
    ]);
  }
  const lineOf = (path: (string | number)[]) => {
    const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
    return node?.range ? lineCounter.linePos(node.range[0]).line : undefined;
  };
  const result = validateConfig(raw, (path, key) => {
    if (key !== undefined) {
      const parent = path.length ? doc.getIn(path, true) : doc.contents;
      if (isMap(parent)) {
        const pair = parent.items.find((it) => isScalar(it.key) && it.key.value === key);
        const r = (pair?.key as { range?: [number, number, number] } | undefined)?.range;
        if (r) return lineCounter.linePos(r[0]).line;
      }
    }
    return lineOf(path);
  });
  if (!result.ok) throw new ConfigError(file, result.problems);
  return { ...result.loaded, file, warnings: result.loaded.warnings };
}

type LineFinder = (path: (string | number)[], unknownKey?: string) => number | undefined;

/** Validates a parsed object (from YAML or from the API). */
export function validateConfig(
  raw: unknown,
  lineOf: LineFinder = () => undefined,
): { ok: true; loaded: LoadedConfig } | { ok: false; problems: ConfigProblem[] } {
  const parsed = configSchema.safeParse(dropEmptySections(raw), { reportInput: true });
  if (!parsed.success) return { ok: false, problems: describeIssues(parsed.error.issues, lineOf) };
  const config = parsed.data;
  const inlineSecrets: Record<string, string> = {};
  const warnings: ConfigProblem[] = [];
  for (const p of secretPaths()) {
    const v = getPath(config, p);
    if (typeof v === 'string') {
      inlineSecrets[p] = v;
      warnings.push({
        path: p,
        line: lineOf(p.split('.')),
        message: `a secret is written in the configuration file. Move it to the encrypted secrets store: \`backupd secrets set ${p}\` (then delete the line)${configKey(p)?.env ? `, or set ${configKey(p)!.env} in the environment` : ''}.`,
      });
    }
  }
  return { ok: true, loaded: { config, file: undefined, warnings, inlineSecrets } };
}

/** `sync:` with every key commented out is YAML null: read it as an empty section. */
function dropEmptySections(raw: unknown, prefix = ''): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v === null && configKey(path)?.section) continue;
    out[k] = dropEmptySections(v, path);
  }
  return out;
}

function describeIssues(issues: z.core.$ZodIssue[], lineOf: LineFinder): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of issues) {
    const path = issue.path.map(String);
    const dotted = path.join('.');
    if (issue.code === 'unrecognized_keys') {
      const allowed = childKeys(dotted);
      for (const key of issue.keys) {
        const guess = closest(key, allowed);
        out.push({
          path: dotted ? `${dotted}.${key}` : key,
          line: lineOf(issue.path as (string | number)[], key),
          message: `unknown key.${guess ? ` Did you mean "${guess}"?` : ''} Allowed here: ${allowed.join(', ')}.`,
        });
      }
      continue;
    }
    const key = configKey(dotted.replace(/\.\d+$/, ''));
    // A secret in the wrong shape is still a secret: never echo it.
    const got =
      'input' in issue && issue.input !== undefined && !key?.secret
        ? `got ${show(issue.input)}, `
        : '';
    let expected: string;
    switch (issue.code) {
      case 'invalid_type':
        expected =
          issue.input === undefined
            ? `missing, expected ${article(issue.expected)}`
            : `expected ${article(issue.expected)}`;
        break;
      case 'invalid_value':
        expected = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      case 'too_small':
        expected = `expected ${issue.origin === 'string' ? `at least ${issue.minimum} characters` : issue.origin === 'array' ? `at least ${issue.minimum} entries` : `at least ${issue.minimum}`}`;
        break;
      case 'too_big':
        expected = `expected ${issue.origin === 'string' ? `at most ${issue.maximum} characters` : issue.origin === 'array' ? `at most ${issue.maximum} entries` : `at most ${issue.maximum}`}`;
        break;
      case 'invalid_format':
        expected = `expected ${article(issue.format === 'url' ? 'URL' : issue.format === 'email' ? 'email address' : issue.format)}`;
        break;
      default:
        expected = issue.message;
    }
    const hint = key?.description && issue.code !== 'custom' ? ` (${key.description})` : '';
    out.push({
      path: dotted,
      line: lineOf(issue.path as (string | number)[]),
      message: `${got}${expected}${hint}`,
    });
  }
  return out;
}

const article = (t: string) =>
  ({
    int: 'an integer',
    number: 'a number',
    string: 'a text',
    boolean: 'true or false',
    array: 'a list',
    object: 'a section of keys',
  })[t] ?? (/^[aeiou]/i.test(t) ? `an ${t}` : `a ${t}`);

function show(v: unknown): string {
  const s = JSON.stringify(v);
  if (s === undefined) return String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function closest(word: string, options: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const o of options) {
    const d = editDistance(word.toLowerCase(), o.toLowerCase());
    if (d < bestD) [best, bestD] = [o, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

export function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

export function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    if (cur[part] === null || typeof cur[part] !== 'object') cur[part] = {};
    cur = cur[part] as Record<string, unknown>;
  }
  if (value === undefined) delete cur[parts.at(-1)!];
  else cur[parts.at(-1)!] = value;
}

/** Writes the configuration as YAML, atomically, keeping the file's comments where keys stay. */
export async function writeConfigFile(
  file: string,
  config: Record<string, unknown>,
): Promise<void> {
  let doc: Document;
  try {
    doc = parseDocument(await readFile(file, 'utf8'));
    if (doc.errors.length) throw new Error('unparsable');
    mergeInto(doc, [], config);
  } catch {
    doc = parseDocument(stringify(config));
  }
  await writeFileAtomic(file, doc.toString(), 0o640);
}

/** Sets every leaf of `value` in the YAML document and removes keys that are gone. */
function mergeInto(doc: Document, path: string[], value: unknown): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const node = path.length ? doc.getIn(path, true) : doc.contents;
    if (!isMap(node)) {
      if (path.length) doc.setIn(path, doc.createNode(value));
      else doc.contents = doc.createNode(value) as never;
      return;
    }
    const wanted = new Set(Object.keys(value));
    for (const it of [...node.items]) {
      const k = isScalar(it.key) ? String(it.key.value) : undefined;
      if (k !== undefined && !wanted.has(k)) doc.deleteIn([...path, k]);
    }
    for (const [k, v] of Object.entries(value)) mergeInto(doc, [...path, k], v);
    return;
  }
  const current = doc.getIn(path);
  if (JSON.stringify(current) !== JSON.stringify(value)) doc.setIn(path, doc.createNode(value));
}
