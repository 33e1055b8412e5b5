// The offline pieces of the Google sign-in: PKCE as RFC 7636 defines it, reading back the
// address the browser ended on in the forms owners paste it, and the secret names of grants.
import { createHash } from 'node:crypto';
import { OAuth2Client } from 'google-auth-library';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Runtime } from '../../src/config/index.js';
import {
  googleApiRoot,
  googleRevokeUrl,
  googleTokenUrl,
  isInvalidGrant,
  refreshTokenKey,
  type StoredGoogleAccounts,
} from '../../src/google/accounts.js';
import { GoogleSignInError } from '../../src/google/errors.js';
import { GoogleSignIn, redirectMismatch, SIGN_IN_TTL_MS } from '../../src/google/signin.js';
import { challengeOf, newState, newVerifier, parseRedirect } from '../../src/google/pkce.js';

describe('PKCE', () => {
  it('matches the worked example of RFC 7636 (appendix B)', () => {
    expect(challengeOf('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe(
      'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    );
  });

  it('makes verifiers of 43 URL-safe characters, all different, whose challenge is their SHA-256', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const v = newVerifier();
      expect(v).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(challengeOf(v)).toBe(createHash('sha256').update(v).digest('base64url'));
      seen.add(v);
    }
    expect(seen.size).toBe(200);
  });

  it('refuses a verifier RFC 7636 does not allow', () => {
    expect(() => challengeOf('short')).toThrow(/43 to 128/);
    expect(() => challengeOf('x'.repeat(129))).toThrow(/43 to 128/);
  });

  it('makes states nobody can guess', () => {
    const a = newState();
    expect(a).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(newState()).not.toBe(a);
  });
});

describe('reading back the address the browser ended on', () => {
  const code = '4/0AVG7fiQ-abc_DEF';
  const state = 'St4te_-xyz';
  const scope = 'https://www.googleapis.com/auth/drive.readonly';
  const full = `http://127.0.0.1/?state=${state}&code=${encodeURIComponent(code)}&scope=${encodeURIComponent(scope)}`;

  it('takes the whole address, with spaces or quotes a copy brings along', () => {
    for (const pasted of [full, `  ${full}\n`, `"${full}"`, `<${full}>`]) {
      expect(parseRedirect(pasted)).toEqual({ code, state, scope });
    }
  });

  it('takes only the query, with or without its ?', () => {
    const q = full.slice(full.indexOf('?'));
    expect(parseRedirect(q)).toEqual({ code, state, scope });
    expect(parseRedirect(q.slice(1))).toEqual({ code, state, scope });
  });

  it('takes an address with a port and a path, and a localhost one', () => {
    expect(parseRedirect(`http://localhost:8080/cb?code=c1&state=s1`)).toEqual({
      code: 'c1',
      state: 's1',
    });
  });

  it("reads Google's refusal", () => {
    expect(parseRedirect(`http://127.0.0.1/?error=access_denied&state=${state}`)).toEqual({
      error: 'access_denied',
      state,
    });
  });

  it('says what is wrong with something that is not such an address', () => {
    for (const pasted of [
      '',
      'hello',
      'https://accounts.google.com/o/oauth2/v2/auth?client_id=x',
    ]) {
      let err: unknown;
      try {
        parseRedirect(pasted);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GoogleSignInError);
      expect((err as GoogleSignInError).code).toBe('not_a_redirect');
      expect((err as GoogleSignInError).fix).toMatch(/address bar/);
    }
  });
});

describe('endpoints and grants', () => {
  it('points at Google unless told otherwise, keeping only the origin of GOOGLE_API_ROOT', () => {
    expect(googleApiRoot({})).toBe('https://www.googleapis.com');
    expect(googleTokenUrl({})).toBe('https://oauth2.googleapis.com/token');
    expect(googleRevokeUrl({})).toBe('https://oauth2.googleapis.com/revoke');
    expect(googleApiRoot({ GOOGLE_API_ROOT: 'http://127.0.0.1:9/' })).toBe('http://127.0.0.1:9');
    expect(googleRevokeUrl({ GOOGLE_OAUTH_TOKEN_URL: 'http://127.0.0.1:9/token' })).toBe(
      'http://127.0.0.1:9/revoke',
    );
    expect(() => googleApiRoot({ GOOGLE_API_ROOT: 'not a url' })).toThrow(/GOOGLE_API_ROOT/);
  });

  it('tells invalid_grant from other failures', () => {
    const gaxios = (error: string) => ({
      message: error,
      response: {
        status: 400,
        data: { error, error_description: 'Token has been expired or revoked.' },
      },
    });
    expect(isInvalidGrant(gaxios('invalid_grant'))).toBe(true);
    expect(isInvalidGrant(new Error('invalid_grant: Token has been expired or revoked.'))).toBe(
      true,
    );
    expect(isInvalidGrant(gaxios('invalid_client'))).toBe(false);
    expect(isInvalidGrant(new Error('ECONNRESET'))).toBe(false);
    expect(isInvalidGrant(undefined)).toBe(false);
  });

  it('names each grant by source and account, distinctly, in what a secret name may hold', () => {
    const a = refreshTokenKey('google_drive', 'Ann+work@Example.com');
    const b = refreshTokenKey('google_drive', 'ann_2Bwork@example.com');
    expect(a).toBe('google.refresh_token.google_drive.ann+2Bwork@example.com');
    expect(a).toMatch(/^[a-z0-9_.@+-]+$/i);
    expect(a).not.toBe(b);
    expect(refreshTokenKey('google_photos', 'ann@example.com')).not.toBe(
      refreshTokenKey('google_drive', 'ann@example.com'),
    );
  });
});

describe('pending sign-ins', () => {
  // A sign-in against a fake clock; no request leaves before the code exchange, which the
  // state checks come before.
  const signIn = (clock: { t: number }) => {
    const runtime = {
      config: {
        google: { loopback_redirect_uri: 'http://127.0.0.1/', relay_redirect_uri: undefined },
      },
      secret: (name: string) => (name === 'google.client_secret' ? 'secret' : undefined),
      secrets: { get: () => undefined },
    } as unknown as Runtime;
    const accounts = {
      newClient: (_t: unknown, redirectUri: string) =>
        new OAuth2Client({ clientId: 'id.apps.googleusercontent.com', redirectUri }),
    } as unknown as StoredGoogleAccounts;
    return new GoogleSignIn({
      accounts,
      runtime: () => runtime,
      env: { GOOGLE_CLIENT_ID: 'id.apps.googleusercontent.com' },
      logger: pino({ level: 'silent' }),
      now: () => clock.t,
    });
  };
  const failure = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (e) {
      return e as GoogleSignInError;
    }
    throw new Error('expected a failure');
  };

  it('refuses a state once its 10 minutes are over, and says so', async () => {
    const clock = { t: Date.parse('2026-01-01T10:00:00Z') };
    const s = signIn(clock);
    const started = s.start();
    expect(started.expires_at).toBe('2026-01-01T10:10:00.000Z');
    clock.t += SIGN_IN_TTL_MS + 1;
    const err = await failure(
      s.complete({ url: `http://127.0.0.1/?code=c&state=${started.state}` }),
    );
    expect(err.code).toBe('state_expired');
    expect(err.message).toMatch(/expired at 2026-01-01T10:10:00/);
    expect(err.fix).toMatch(/Start the sign-in again/);
  });

  it('uses a state once, even when Google refused', async () => {
    const s = signIn({ t: Date.now() });
    const { state } = s.start();
    expect(
      (await failure(s.complete({ url: `http://127.0.0.1/?error=access_denied&state=${state}` })))
        .code,
    ).toBe('access_denied');
    expect((await failure(s.complete({ code: 'c', state }))).code).toBe('state_used');
    expect((await failure(s.complete({ code: 'c' }))).code).toBe('state_missing');
    expect((await failure(s.complete({}))).code).toBe('not_a_redirect');
  });

  it('asks for read-only Drive, offline, with consent and an S256 challenge', () => {
    const { url, redirect_uri } = signIn({ t: Date.now() }).start({ loginHint: 'ann@example.com' });
    const q = new URL(url).searchParams;
    expect(redirect_uri).toBe('http://127.0.0.1/');
    expect(Object.fromEntries(q)).toMatchObject({
      scope: 'https://www.googleapis.com/auth/drive.readonly',
      access_type: 'offline',
      prompt: 'consent',
      response_type: 'code',
      code_challenge_method: 'S256',
      redirect_uri: 'http://127.0.0.1/',
      login_hint: 'ann@example.com',
      client_id: 'id.apps.googleusercontent.com',
    });
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('says the relay needs its https page configured', () => {
    let err: unknown;
    try {
      signIn({ t: Date.now() }).start({ redirect: 'relay' });
    } catch (e) {
      err = e;
    }
    expect((err as GoogleSignInError).code).toBe('no_relay');
  });
});

describe('redirect_uri_mismatch', () => {
  it('names the exact URI to register, and where, for each kind of client', () => {
    const relay = redirectMismatch({ kind: 'relay', redirectUri: 'https://relay.example.com/cb' });
    expect(relay.code).toBe('redirect_uri_mismatch');
    expect(relay.message).toContain('https://relay.example.com/cb');
    expect(relay.fix).toMatch(/Web-application client.*exactly https:\/\/relay\.example\.com\/cb/);
    const loopback = redirectMismatch({ kind: 'loopback', redirectUri: 'http://127.0.0.1/' });
    expect(loopback.fix).toMatch(/Desktop app.*http:\/\/127\.0\.0\.1\//);
  });
});
