// Who may steer the appliance: the one-time setup code, the admin password, sessions, API keys
// and the limits on guessing, against a real state file and an injected clock.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  Access,
  AccessError,
  FailureLimiter,
  hashPassword,
  SESSION_IDLE_MS,
  verifyPassword,
} from '../../src/auth/index.js';
import { openState, type State } from '../../src/state/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-auth-');
const opened: State[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
});

const PASSWORD = 'correct horse battery staple';
const IP = '192.0.2.10';
const MINUTE = 60_000;

function setup(opts: { configuredApiKey?: string } = {}) {
  const dir = tmp();
  const file = path.join(dir, 'state.db');
  const state = openState({ kind: 'sqlite', path: file });
  opened.push(state);
  const clock = { now: Date.parse('2025-05-01T10:00:00Z') };
  const access = new Access({
    state,
    now: () => clock.now,
    passwordCost: 2 ** 10,
    configuredApiKey: () => opts.configuredApiKey,
  });
  return { dir, file, state, clock, access };
}

/** Resolves to the AccessError a promise rejects with; fails the test when it resolves. */
async function accessError(p: Promise<unknown>): Promise<AccessError> {
  const err = await p.then(
    () => {
      throw new Error('expected an AccessError');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AccessError);
  return err as AccessError;
}

/** An admin password set through the setup code; returns the first session token. */
async function setUp(access: Access): Promise<string> {
  const code = (await access.issueSetupCode())!;
  return access.completeSetup(code, PASSWORD, IP);
}

describe('passwords', () => {
  it('hashPassword uses scrypt with N = 2^15 by default and verifies', async () => {
    const stored = await hashPassword(PASSWORD);
    expect(stored).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    expect(stored).not.toContain(PASSWORD);
    expect(await verifyPassword(PASSWORD, stored)).toBe(true);
    expect(await verifyPassword(`${PASSWORD}!`, stored)).toBe(false);
  });

  it('the same password hashes differently each time (salted)', async () => {
    const a = await hashPassword(PASSWORD, 2 ** 10);
    const b = await hashPassword(PASSWORD, 2 ** 10);
    expect(a).not.toBe(b);
    expect(await verifyPassword(PASSWORD, a)).toBe(true);
    expect(await verifyPassword(PASSWORD, b)).toBe(true);
  });

  it('a stored value that is not a scrypt hash never verifies', async () => {
    expect(await verifyPassword(PASSWORD, PASSWORD)).toBe(false);
    expect(await verifyPassword('', '')).toBe(false);
    expect(await verifyPassword(PASSWORD, 'bcrypt$1$2$3$salt$hash')).toBe(false);
  });
});

describe('FailureLimiter', () => {
  it('blocks after max failures within the window, per key, until the window slides', () => {
    let now = 0;
    const limiter = new FailureLimiter(3, 10 * MINUTE, () => now);
    for (let i = 0; i < 3; i++) {
      expect(limiter.blockedFor('a')).toBe(0);
      limiter.fail('a');
      now += MINUTE;
    }
    // Three failures at 0, 1 and 2 minutes; now is 3 minutes: blocked until the first expires.
    expect(limiter.blockedFor('a')).toBe(7 * 60);
    expect(limiter.blockedFor('b')).toBe(0);
    now = 10 * MINUTE + 1;
    expect(limiter.blockedFor('a')).toBe(0);
    limiter.fail('a');
    limiter.reset('a');
    expect(limiter.blockedFor('a')).toBe(0);
  });
});

describe('first-run setup', () => {
  it('a setup code is issued only while no password is set; a new one replaces the old', async () => {
    const { access } = setup();
    expect(await access.setupNeeded()).toBe(true);
    const first = await access.issueSetupCode();
    expect(first).toMatch(/^[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}$/);
    const second = (await access.issueSetupCode())!;
    expect(second).not.toBe(first);

    expect((await accessError(access.completeSetup(first!, PASSWORD, IP))).status).toBe(403);
    await access.completeSetup(second, PASSWORD, IP);
    expect(await access.setupNeeded()).toBe(false);
    expect(await access.issueSetupCode()).toBeUndefined();
  });

  it('the code is accepted in any case, with or without dashes, and gives a session', async () => {
    for (const form of [
      (c: string) => c.toLowerCase(),
      (c: string) => c.replace(/-/g, ''),
      (c: string) => ` ${c.toLowerCase().replace(/-/g, ' ')} `,
    ]) {
      const { access } = setup();
      const code = (await access.issueSetupCode())!;
      const token = await access.completeSetup(form(code), PASSWORD, IP);
      expect(await access.authenticate(token, undefined)).toEqual({ via: 'session', token });
      expect(await access.setupNeeded()).toBe(false);
    }
  });

  it('sets the password only once: a second setup is 409', async () => {
    const { access } = setup();
    const code = (await access.issueSetupCode())!;
    await access.completeSetup(code, PASSWORD, IP);
    const err = await accessError(access.completeSetup(code, 'another long password', IP));
    expect(err.status).toBe(409);
    expect(err.code).toBe('already_set_up');
    await access.login(PASSWORD, IP);
    await accessError(access.login('another long password', IP));
  });

  it('a wrong code is 403; ten wrong codes are 429 until the window passes', async () => {
    const { access, clock } = setup();
    const code = (await access.issueSetupCode())!;
    for (let i = 0; i < 10; i++) {
      const err = await accessError(access.completeSetup('AAAA-BBBB-CCCC', PASSWORD, IP));
      expect(err.status).toBe(403);
      expect(err.fix).toBeTruthy();
      clock.now += 1000;
    }
    const blocked = await accessError(access.completeSetup(code, PASSWORD, IP));
    expect(blocked.status).toBe(429);
    expect(blocked.retryAfterSeconds).toBeGreaterThan(0);
    expect(blocked.message).toContain(`${blocked.retryAfterSeconds} seconds`);
    expect(await access.setupNeeded()).toBe(true);

    // Another address is not blocked by this one's guesses.
    expect(
      (await accessError(access.completeSetup('AAAA-BBBB-CCCC', PASSWORD, '192.0.2.99'))).status,
    ).toBe(403);

    clock.now += blocked.retryAfterSeconds! * 1000;
    await access.completeSetup(code, PASSWORD, IP);
    expect(await access.setupNeeded()).toBe(false);
  });

  it('a password under 12 characters is 400 and sets nothing; the code stays valid', async () => {
    const { access } = setup();
    const code = (await access.issueSetupCode())!;
    const err = await accessError(access.completeSetup(code, 'short-pass1', IP));
    expect(err.status).toBe(400);
    expect(err.code).toBe('weak_password');
    expect(await access.setupNeeded()).toBe(true);
    await access.completeSetup(code, 'exactly12chr', IP);
    expect(await access.setupNeeded()).toBe(false);
  });
});

describe("the appliance's setup code file", () => {
  it('is the code at every start while no password exists, and works once', async () => {
    const { dir, state } = setup();
    const codeFile = path.join(dir, 'setup-code');
    writeFileSync(codeFile, 'k7m2-p9qx-4rtw\n');
    const access = new Access({ state, passwordCost: 2 ** 10, setupCodeFile: codeFile });
    expect(await access.issueSetupCode()).toBe('K7M2-P9QX-4RTW');
    expect(await access.issueSetupCode()).toBe('K7M2-P9QX-4RTW'); // a restart: the same code
    await access.completeSetup('k7m2p9qx4rtw', PASSWORD, IP);
    expect(await access.issueSetupCode()).toBeUndefined();
    expect((await accessError(access.completeSetup('K7M2-P9QX-4RTW', PASSWORD, IP))).status).toBe(
      409,
    );
  });

  it('falls back to a random code when the file is missing', async () => {
    const { dir, state } = setup();
    const access = new Access({ state, setupCodeFile: path.join(dir, 'none') });
    expect(await access.issueSetupCode()).toMatch(/^[2-9A-Z]{4}-[2-9A-Z]{4}-[2-9A-Z]{4}$/);
  });
});

describe('login', () => {
  it('the right password gives a session; a wrong one is 401', async () => {
    const { access } = setup();
    await setUp(access);
    const token = await access.login(PASSWORD, IP);
    expect(await access.authenticate(token, undefined)).toEqual({ via: 'session', token });
    const err = await accessError(access.login('wrong password here', IP));
    expect(err.status).toBe(401);
  });

  it('before setup there is no password to log in with (409)', async () => {
    const { access } = setup();
    expect((await accessError(access.login(PASSWORD, IP))).status).toBe(409);
  });

  it('five wrong passwords block even the right one (429) until the window passes', async () => {
    const { access, clock } = setup();
    await setUp(access);
    for (let i = 0; i < 5; i++) {
      expect((await accessError(access.login(`wrong password ${i}`, IP))).status).toBe(401);
    }
    const blocked = await accessError(access.login(PASSWORD, IP));
    expect(blocked.status).toBe(429);
    expect(blocked.retryAfterSeconds).toBeGreaterThan(0);
    expect(await access.login(PASSWORD, '192.0.2.77')).toBeTruthy();

    clock.now += 15 * MINUTE + 1;
    expect(await access.login(PASSWORD, IP)).toBeTruthy();
  });

  it('a successful login forgets earlier failures', async () => {
    const { access } = setup();
    await setUp(access);
    for (let i = 0; i < 4; i++) await accessError(access.login('nope nope nope', IP));
    await access.login(PASSWORD, IP);
    for (let i = 0; i < 4; i++) await accessError(access.login('nope nope nope', IP));
    expect(await access.login(PASSWORD, IP)).toBeTruthy();
  });
});

describe('sessions', () => {
  it('a session expires after SESSION_IDLE_MS without use', async () => {
    const { access, clock } = setup();
    const token = await setUp(access);
    clock.now += SESSION_IDLE_MS - MINUTE;
    expect(await access.authenticate(token, undefined)).toBeDefined();
    const idle = await access.login(PASSWORD, IP);
    clock.now += SESSION_IDLE_MS + 1;
    expect(await access.authenticate(idle, undefined)).toBeUndefined();
  });

  it('using a session keeps it alive', async () => {
    const { access, clock } = setup();
    const token = await setUp(access);
    for (let i = 0; i < 3; i++) {
      clock.now += SESSION_IDLE_MS - MINUTE;
      expect(await access.authenticate(token, undefined)).toEqual({ via: 'session', token });
    }
  });

  it('logout ends the session; an unknown token is nobody', async () => {
    const { access } = setup();
    const token = await setUp(access);
    await access.logout(token);
    expect(await access.authenticate(token, undefined)).toBeUndefined();
    expect(await access.authenticate('made-up-token', undefined)).toBeUndefined();
    expect(await access.authenticate(undefined, undefined)).toBeUndefined();
  });

  it('changePassword needs the current password and ends every session', async () => {
    const { access } = setup();
    const a = await setUp(access);
    const b = await access.login(PASSWORD, '192.0.2.11');
    expect(
      (await accessError(access.changePassword('not the password', 'a brand new password'))).status,
    ).toBe(403);
    expect((await accessError(access.changePassword(PASSWORD, 'short'))).status).toBe(400);
    expect(await access.authenticate(a, undefined)).toBeDefined();

    await access.changePassword(PASSWORD, 'a brand new password');
    expect(await access.authenticate(a, undefined)).toBeUndefined();
    expect(await access.authenticate(b, undefined)).toBeUndefined();
    expect((await accessError(access.login(PASSWORD, IP))).status).toBe(401);
    expect(await access.login('a brand new password', IP)).toBeTruthy();
  });

  it('resetPassword forgets the password and every session, so setup is needed again', async () => {
    const { access } = setup();
    const token = await setUp(access);
    await access.resetPassword();
    expect(await access.setupNeeded()).toBe(true);
    expect(await access.authenticate(token, undefined)).toBeUndefined();
    expect((await accessError(access.login(PASSWORD, IP))).status).toBe(409);
    const code = await access.issueSetupCode();
    expect(code).toBeTruthy();
    await access.completeSetup(code!, 'the second password', IP);
    expect(await access.login('the second password', IP)).toBeTruthy();
  });
});

describe('API keys', () => {
  it('a created key authenticates; once revoked it does not', async () => {
    const { access, state, clock } = setup();
    const { key, record } = await access.createApiKey('remote dashboard');
    expect(key).toMatch(/^bkp_[A-Za-z0-9_-]{40,}$/);
    expect(record).toMatchObject({
      name: 'remote dashboard',
      prefix: key.slice(0, 10),
      revoked_at: null,
    });

    expect(await access.authenticate(undefined, key)).toEqual({ via: 'api_key', keyId: record.id });
    expect((await state.auth.listApiKeys())[0]!.last_used_at).toBe(clock.now);

    expect(await state.auth.revokeApiKey(record.id, clock.now)).toBe(true);
    expect(await access.authenticate(undefined, key)).toBeUndefined();
  });

  it('the configured api key (daemon.api_key) authenticates', async () => {
    const configured = 'configured-api-key-with-enough-length';
    const { access } = setup({ configuredApiKey: configured });
    expect(await access.authenticate(undefined, configured)).toEqual({
      via: 'api_key',
      keyId: 'config',
    });
    expect(await access.authenticate(undefined, `${configured}x`)).toBeUndefined();
  });

  it('with no configured key, a bearer is checked against the stored keys only', async () => {
    const { access } = setup();
    expect(await access.authenticate(undefined, 'anything-at-all')).toBeUndefined();
  });

  it('a wrong bearer does not fall back to a valid session', async () => {
    const { access } = setup();
    const token = await setUp(access);
    expect(await access.authenticate(token, 'bkp_wrong')).toBeUndefined();
    expect(await access.authenticate(token, undefined)).toEqual({ via: 'session', token });
  });
});

describe('what the database holds', () => {
  it('only hashes: no password, setup code, session token or API key in the SQLite files', async () => {
    const { access, state, file, dir } = setup();
    const code = (await access.issueSetupCode())!;
    const token = await access.completeSetup(code, PASSWORD, IP);
    const login = await access.login(PASSWORD, IP);
    const { key } = await access.createApiKey('script');
    const unsetUp = setup();
    const pendingCode = (await unsetUp.access.issueSetupCode())!;

    // Sanity: the state does hold what was made, so reading the bytes is meaningful.
    expect(await state.settings.get('auth.admin_password')).toMatch(/^scrypt\$/);

    const bytesOf = (d: string, base: string) =>
      Buffer.concat(
        readdirSync(d)
          .filter((f) => f.startsWith(path.basename(base)))
          .map((f) => readFileSync(path.join(d, f))),
      );
    // Read the database and its WAL as they are on disk now, then again after a checkpoint.
    const live = bytesOf(dir, file);
    await state.close();
    const closed = bytesOf(dir, file);
    const pending = bytesOf(unsetUp.dir, unsetUp.file);
    expect(closed.length).toBeGreaterThan(0);

    for (const bytes of [live, closed]) {
      for (const secret of [PASSWORD, token, login, key, code, code.replace(/-/g, '')])
        expect(bytes.includes(secret), secret).toBe(false);
    }
    expect(pending.includes(pendingCode.replace(/-/g, ''))).toBe(false);
    expect(pending.includes(pendingCode)).toBe(false);
  });
});
