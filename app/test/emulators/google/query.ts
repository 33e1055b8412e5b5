// The `q` of files.list, for the forms the product uses: `'<id>' in parents`, `trashed = true`,
// `mimeType = '...'`, `mimeType != '...'`, `name = '...'`, `name contains '...'`,
// `starred = ...`, `sharedWithMe = ...`, joined with `and`. Anything else (`or`, `not`,
// parentheses, other terms) is answered as Drive answers a query it cannot parse: 400 `invalid`
// "Invalid Value" at `q`; the request log says which part the emulator did not understand.
import { driveErrors } from './errors.js';

/** What a term is tested against: one file as the caller sees it. */
export interface QueryTarget {
  name: string;
  mimeType: string;
  trashed: boolean;
  starred: boolean;
  sharedWithMe: boolean;
  /** The parents the caller can see, 'root' already resolved to the caller's root id. */
  parents: string[];
}

export type Predicate = (f: QueryTarget) => boolean;

/** A query the emulator cannot answer; `detail` goes to the request log, not to the client. */
export class QueryError extends Error {
  readonly apiError = driveErrors.invalidValue('q');
  constructor(readonly detail: string) {
    super(detail);
  }
}

type Token = { kind: 'string' | 'word' | 'op'; text: string };

function tokenize(q: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < q.length) {
    const c = q[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === "'" || c === '"') {
      let text = '';
      i++;
      for (;;) {
        if (i >= q.length) throw new QueryError(`unterminated string in q: ${q}`);
        const d = q[i]!;
        if (d === '\\' && i + 1 < q.length) {
          text += q[i + 1];
          i += 2;
        } else if (d === c) {
          i++;
          break;
        } else {
          text += d;
          i++;
        }
      }
      tokens.push({ kind: 'string', text });
    } else if (c === '!' && q[i + 1] === '=') {
      tokens.push({ kind: 'op', text: '!=' });
      i += 2;
    } else if (c === '=') {
      tokens.push({ kind: 'op', text: '=' });
      i++;
    } else if (/[A-Za-z0-9_]/.test(c)) {
      const start = i;
      while (i < q.length && /[A-Za-z0-9_]/.test(q[i]!)) i++;
      tokens.push({ kind: 'word', text: q.slice(start, i) });
    } else {
      throw new QueryError(`the emulator does not understand "${c}" in q: ${q}`);
    }
  }
  return tokens;
}

export function parseQuery(q: string, rootId: string): Predicate {
  const tokens = tokenize(q);
  const terms: Predicate[] = [];
  let i = 0;
  const next = () => tokens[i++];
  const expectBool = (t: Token | undefined, field: string): boolean => {
    if (t?.kind === 'word' && /^(true|false)$/i.test(t.text))
      return t.text.toLowerCase() === 'true';
    throw new QueryError(`${field} compares with true or false, in q: ${q}`);
  };
  for (;;) {
    const a = next();
    const b = next();
    const c = next();
    if (!a || !b || !c) throw new QueryError(`incomplete term in q: ${q}`);
    if (a.kind === 'string' && b.kind === 'word' && b.text === 'in' && c.text === 'parents') {
      const id = a.text === 'root' ? rootId : a.text;
      terms.push((f) => f.parents.includes(id));
    } else if (a.kind === 'word' && b.kind === 'op') {
      const negate = b.text === '!=';
      let test: Predicate;
      switch (a.text) {
        case 'trashed':
        case 'starred':
        case 'sharedWithMe': {
          const want = expectBool(c, a.text);
          const field = a.text;
          test = (f) => f[field] === want;
          break;
        }
        case 'mimeType':
        case 'name': {
          if (c.kind !== 'string') throw new QueryError(`${a.text} compares with a quoted string`);
          const field = a.text;
          const want = c.text;
          test = (f) => f[field] === want;
          break;
        }
        default:
          throw new QueryError(`the emulator does not support the term "${a.text}" in q: ${q}`);
      }
      terms.push(negate ? (f) => !test(f) : test);
    } else if (a.kind === 'word' && a.text === 'name' && b.text === 'contains') {
      if (c.kind !== 'string') throw new QueryError('name contains takes a quoted string');
      const want = c.text.toLowerCase();
      terms.push((f) => f.name.toLowerCase().includes(want));
    } else {
      throw new QueryError(`the emulator does not understand the term near "${a.text}" in q: ${q}`);
    }
    const joiner = next();
    if (!joiner) break;
    if (joiner.kind !== 'word' || joiner.text.toLowerCase() !== 'and')
      throw new QueryError(`the emulator joins terms with "and" only, not "${joiner.text}": ${q}`);
  }
  return (f) => terms.every((t) => t(f));
}
