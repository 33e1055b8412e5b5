/**
 * Every key of the configuration, read off the schema once: the documentation, the error
 * messages and the secrets logic all use this list, so none of them can drift from the schema.
 */
import { z } from 'zod';
import { configSchema } from './schema.js';

export interface ConfigKey {
  /** Dotted path, e.g. `sync.batch_size`. */
  path: string;
  type: string;
  description: string;
  default?: unknown;
  secret: boolean;
  env?: string;
  addition: boolean;
  /** True for a section (an object holding more keys). */
  section: boolean;
}

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  minimum?: number;
  maximum?: number;
  secret?: boolean;
  env?: string;
  addition?: boolean;
  format?: string;
};

let cache: ConfigKey[] | undefined;

/** The configuration's JSON Schema (draft 2020-12, as OpenAPI 3.1 uses), as the file is written. */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
}

export function configKeys(): ConfigKey[] {
  if (cache) return cache;
  const keys: ConfigKey[] = [];
  const walk = (node: JsonSchema, prefix: string) => {
    for (const [name, child] of Object.entries(node.properties ?? {})) {
      const p = prefix ? `${prefix}.${name}` : name;
      const section = !!child.properties;
      keys.push({
        path: p,
        type: describeType(child),
        description: child.description ?? '',
        ...(child.default !== undefined && !section ? { default: child.default } : {}),
        secret: child.secret === true,
        ...(child.env ? { env: child.env } : {}),
        addition: child.addition === true,
        section,
      });
      if (section) walk(child, p);
    }
  };
  walk(configJsonSchema() as JsonSchema, '');
  cache = keys;
  return keys;
}

export function configKey(path: string): ConfigKey | undefined {
  return configKeys().find((k) => k.path === path);
}

/** Dotted paths of the keys that hold secrets. */
export function secretPaths(): string[] {
  return configKeys()
    .filter((k) => k.secret)
    .map((k) => k.path);
}

/** The keys directly below a section (`''` for the top level). */
export function childKeys(section: string): string[] {
  const depth = section ? section.split('.').length + 1 : 1;
  return configKeys()
    .filter(
      (k) =>
        k.path.split('.').length === depth && (section === '' || k.path.startsWith(`${section}.`)),
    )
    .map((k) => k.path.split('.').pop()!);
}

function describeType(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (s.anyOf) return s.anyOf.map(describeType).join(' or ');
  if (s.properties) return 'section';
  const t = Array.isArray(s.type) ? s.type.join(' or ') : (s.type ?? 'any');
  if (t === 'array') return `list of ${s.items ? describeType(s.items) : 'any'}`;
  const range =
    s.minimum !== undefined || s.maximum !== undefined
      ? ` (${s.minimum ?? '…'} to ${s.maximum !== undefined && s.maximum < 1e15 ? s.maximum : '…'})`
      : '';
  return `${s.format ?? t}${range}`;
}
