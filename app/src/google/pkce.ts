/**
 * The pieces of the authorization-code flow that need no network: PKCE (RFC 7636, S256 only:
 * Google accepts plain too, but plain would hand the secret to whoever reads the URL), the
 * one-time `state`, and reading back the URL the owner's browser ended on.
 */
import { createHash, randomBytes } from 'node:crypto';
import { GoogleSignInError } from './errors.js';

/** 32 random bytes, base64url: 43 characters, the shortest verifier RFC 7636 allows. */
export function newVerifier(): string {
  return randomBytes(32).toString('base64url');
}

export function challengeOf(verifier: string): string {
  if (!/^[A-Za-z0-9._~-]{43,128}$/.test(verifier))
    throw new Error('a PKCE verifier is 43 to 128 characters of A-Z a-z 0-9 . _ ~ -');
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/** Unguessable and single-use; it also names the pending sign-in. */
export function newState(): string {
  return randomBytes(24).toString('base64url');
}

export interface RedirectResult {
  code?: string;
  state?: string;
  /** Google's `error` (e.g. access_denied) and its description. */
  error?: string;
  errorDescription?: string;
  /** The scopes granted, space-separated, as Google reports them. */
  scope?: string;
}

/**
 * What the owner pastes: the whole URL from the address bar (`http://127.0.0.1/?code=...`),
 * or only its query (`?code=...&state=...` or `code=...&state=...`). Surrounding spaces and
 * quotes, which a copy from a chat or a terminal brings along, are dropped.
 */
export function parseRedirect(pasted: string): RedirectResult {
  const text = pasted.trim().replace(/^["'<]+|["'>]+$/g, '');
  let query: URLSearchParams;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw notARedirect(pasted);
    }
    query = url.searchParams;
    // Some flows put the answer in the fragment; Google's code flow does not, but a relay might.
    if (!query.has('code') && !query.has('error') && url.hash.length > 1)
      query = new URLSearchParams(url.hash.slice(1));
  } else {
    query = new URLSearchParams(text.replace(/^[?#]/, ''));
  }
  const get = (k: string) => query.get(k) ?? undefined;
  const out: RedirectResult = {};
  for (const [key, value] of [
    ['code', get('code')],
    ['state', get('state')],
    ['error', get('error')],
    ['errorDescription', get('error_description')],
  ] as const)
    if (value) out[key] = value;
  // An empty scope is an answer too: the owner unticked everything.
  if (query.has('scope')) out.scope = query.get('scope') ?? '';
  if (!out.code && !out.error) throw notARedirect(pasted);
  return out;
}

function notARedirect(pasted: string): GoogleSignInError {
  const shown = pasted.length > 80 ? `${pasted.slice(0, 80)}…` : pasted;
  return new GoogleSignInError(
    400,
    'not_a_redirect',
    `"${shown}" is not the address Google sent the browser to: it has no code= (nor error=) in it.`,
    'After you allow access, the browser goes to an address starting with the redirect URI (http://127.0.0.1/?state=...&code=...). The page itself does not load; copy the whole address from the address bar and paste it.',
  );
}
