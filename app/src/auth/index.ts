/**
 * Who may steer the appliance. No default credential exists anywhere: the first start makes a
 * one-time setup code, and the owner turns it into an admin password. After that, a session
 * cookie for the panel and bearer API keys for scripts and the remote dashboard.
 */
import {
  createHash,
  randomBytes,
  randomInt,
  scrypt as scryptCb,
  timingSafeEqual,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { State } from '../state/index.js';

export class AccessError extends Error {
  override name = 'AccessError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fix?: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
  }
}

export const MIN_PASSWORD_LENGTH = 12;
export const SESSION_IDLE_MS = 7 * 86_400_000;
const SETTING_PASSWORD = 'auth.admin_password';
const SETTING_SETUP_CODE = 'auth.setup_code';
const CODE_ALPHABET = '23456789ABCDEFGHJKLMNPQRSTUVWXYZ';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const normalizeCode = (c: string) => c.toUpperCase().replace(/[^0-9A-Z]/g, '');

function scrypt(
  password: string,
  salt: Buffer,
  n: number,
  r: number,
  p: number,
  len: number,
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, len, { N: n, r, p, maxmem: 256 * n * r }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** `scrypt$N$r$p$salt$hash`, with N = 2^15 (about 32 MB and 0.1 s on a Raspberry Pi 4). */
export async function hashPassword(password: string, n = 2 ** 15): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(password, salt, n, 8, 1, 32);
  return `scrypt$${n}$8$1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, n, r, p, salt, hash] = stored.split('$');
  if (kind !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const got = await scrypt(
    password,
    Buffer.from(salt, 'base64'),
    Number(n),
    Number(r),
    Number(p),
    expected.length,
  );
  return timingSafeEqual(got, expected);
}

/** Counts failures per key in a sliding window. */
export class FailureLimiter {
  private hits = new Map<string, number[]>();
  constructor(
    private readonly max: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Seconds until another attempt is allowed, or 0. */
  blockedFor(key: string): number {
    const recent = this.recent(key);
    if (recent.length < this.max) return 0;
    return Math.max(1, Math.ceil((recent[0]! + this.windowMs - this.now()) / 1000));
  }

  fail(key: string): void {
    const recent = this.recent(key);
    recent.push(this.now());
    this.hits.set(key, recent);
  }

  reset(key: string): void {
    this.hits.delete(key);
  }

  private recent(key: string): number[] {
    const cutoff = this.now() - this.windowMs;
    const list = (this.hits.get(key) ?? []).filter((t) => t > cutoff);
    if (list.length) this.hits.set(key, list);
    else this.hits.delete(key);
    return list;
  }
}

export type Principal =
  { via: 'session'; token: string } | { via: 'api_key'; keyId: number | 'config' };

export interface AccessDeps {
  /** Where the password, sessions and API keys live: the state, or the appliance's access db. */
  state: State;
  /**
   * The appliance's first-boot setup code (`appliance.setup_code_file`): while no password
   * exists it is the code, the same at every start, instead of a new random one.
   */
  setupCodeFile?: string;
  now?: () => number;
  /** The API key from `daemon.api_key` / `API_SECRET_KEY`, if any. */
  configuredApiKey?: () => string | undefined;
  passwordCost?: number;
}

export class Access {
  private readonly now: () => number;
  readonly loginLimiter: FailureLimiter;
  readonly setupLimiter: FailureLimiter;

  constructor(private readonly deps: AccessDeps) {
    this.now = deps.now ?? Date.now;
    this.loginLimiter = new FailureLimiter(5, 15 * 60_000, this.now);
    this.setupLimiter = new FailureLimiter(10, 15 * 60_000, this.now);
  }

  async setupNeeded(): Promise<boolean> {
    return (await this.deps.state.settings.get(SETTING_PASSWORD)) === undefined;
  }

  /**
   * A fresh one-time setup code when no admin password exists yet (each start replaces the
   * previous one), else undefined. Only its hash is stored.
   */
  async issueSetupCode(): Promise<string | undefined> {
    if (!(await this.setupNeeded())) {
      await this.deps.state.settings.delete(SETTING_SETUP_CODE);
      return undefined;
    }
    const fromFile = this.readSetupCodeFile();
    const raw =
      fromFile ??
      Array.from({ length: 12 }, () => CODE_ALPHABET[randomInt(CODE_ALPHABET.length)]).join('');
    await this.deps.state.settings.set(SETTING_SETUP_CODE, sha256(raw));
    return raw.match(/.{1,4}/g)!.join('-');
  }

  /** The code in setup_code_file, normalized; undefined when unset, unreadable or too short. */
  private readSetupCodeFile(): string | undefined {
    if (!this.deps.setupCodeFile) return undefined;
    try {
      const code = normalizeCode(readFileSync(this.deps.setupCodeFile, 'utf8'));
      return code.length >= 8 ? code : undefined;
    } catch {
      return undefined;
    }
  }

  listApiKeys() {
    return this.deps.state.auth.listApiKeys();
  }

  revokeApiKey(id: number) {
    return this.deps.state.auth.revokeApiKey(id, this.now());
  }

  deleteExpiredSessions() {
    return this.deps.state.auth.deleteExpiredSessions(this.now());
  }

  /** Sets the admin password with the setup code; returns a session token. */
  async completeSetup(code: string, password: string, ip: string): Promise<string> {
    this.checkBlocked(this.setupLimiter, ip);
    if (!(await this.setupNeeded())) {
      throw new AccessError(
        409,
        'already_set_up',
        'The admin password is already set.',
        'Sign in with it, or reset it on the appliance with `backupd reset-password`.',
      );
    }
    const stored = await this.deps.state.settings.get(SETTING_SETUP_CODE);
    const given = sha256(normalizeCode(code));
    if (!stored || !timingSafeEqual(Buffer.from(stored), Buffer.from(given))) {
      this.setupLimiter.fail(ip);
      throw new AccessError(
        403,
        'wrong_setup_code',
        'That setup code is not right.',
        this.deps.setupCodeFile
          ? `Copy the code shown on the appliance's console, or from the file setup-code.txt on its boot partition (${this.deps.setupCodeFile} on the appliance).`
          : "Copy the code from the daemon's log or console (a new one is made at each start).",
      );
    }
    checkPasswordStrength(password);
    await this.deps.state.settings.set(
      SETTING_PASSWORD,
      await hashPassword(password, this.deps.passwordCost),
    );
    await this.deps.state.settings.delete(SETTING_SETUP_CODE);
    this.setupLimiter.reset(ip);
    return this.createSession(ip);
  }

  async login(password: string, ip: string): Promise<string> {
    this.checkBlocked(this.loginLimiter, ip);
    const stored = await this.deps.state.settings.get(SETTING_PASSWORD);
    if (!stored)
      throw new AccessError(
        409,
        'setup_needed',
        'No admin password is set yet.',
        'Finish the first-run setup with the setup code.',
      );
    if (!(await verifyPassword(password, stored))) {
      this.loginLimiter.fail(ip);
      throw new AccessError(401, 'wrong_password', 'Wrong password.');
    }
    this.loginLimiter.reset(ip);
    return this.createSession(ip);
  }

  async changePassword(current: string, next: string): Promise<void> {
    const stored = await this.deps.state.settings.get(SETTING_PASSWORD);
    if (!stored || !(await verifyPassword(current, stored)))
      throw new AccessError(403, 'wrong_password', 'The current password is wrong.');
    checkPasswordStrength(next);
    await this.deps.state.settings.set(
      SETTING_PASSWORD,
      await hashPassword(next, this.deps.passwordCost),
    );
    await this.deps.state.auth.deleteAllSessions();
  }

  /** Forgets the admin password and every session: the next start issues a setup code. */
  async resetPassword(): Promise<void> {
    await this.deps.state.settings.delete(SETTING_PASSWORD);
    await this.deps.state.auth.deleteAllSessions();
  }

  async logout(token: string): Promise<void> {
    await this.deps.state.auth.deleteSession(sha256(token));
  }

  /** Who is calling, from a session cookie or a bearer key; undefined when neither is valid. */
  async authenticate(
    sessionToken: string | undefined,
    bearer: string | undefined,
  ): Promise<Principal | undefined> {
    const now = this.now();
    if (bearer) {
      const configured = this.deps.configuredApiKey?.();
      if (
        configured &&
        timingSafeEqual(Buffer.from(sha256(configured)), Buffer.from(sha256(bearer)))
      ) {
        return { via: 'api_key', keyId: 'config' };
      }
      const key = await this.deps.state.auth.findApiKey(sha256(bearer));
      if (key && key.revoked_at === null) {
        if (!key.last_used_at || now - key.last_used_at > 60_000)
          await this.deps.state.auth.markApiKeyUsed(key.id, now);
        return { via: 'api_key', keyId: key.id };
      }
      return undefined;
    }
    if (sessionToken) {
      const hash = sha256(sessionToken);
      const s = await this.deps.state.auth.getSession(hash);
      if (!s || s.expires_at < now) return undefined;
      if (now - s.last_seen_at > 60_000)
        await this.deps.state.auth.touchSession(hash, now, now + SESSION_IDLE_MS);
      return { via: 'session', token: sessionToken };
    }
    return undefined;
  }

  async createApiKey(
    name: string,
  ): Promise<{ key: string; record: Awaited<ReturnType<State['auth']['createApiKey']>> }> {
    const key = `bkp_${randomBytes(32).toString('base64url')}`;
    const record = await this.deps.state.auth.createApiKey(
      name,
      sha256(key),
      key.slice(0, 10),
      this.now(),
    );
    return { key, record };
  }

  private async createSession(ip: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    const now = this.now();
    await this.deps.state.auth.deleteExpiredSessions(now);
    await this.deps.state.auth.createSession({
      token_hash: sha256(token),
      created_at: now,
      expires_at: now + SESSION_IDLE_MS,
      last_seen_at: now,
      ip,
    });
    return token;
  }

  private checkBlocked(limiter: FailureLimiter, ip: string): void {
    const wait = limiter.blockedFor(ip);
    if (wait > 0) {
      throw new AccessError(
        429,
        'too_many_attempts',
        `Too many attempts, try again in ${wait} seconds.`,
        undefined,
        wait,
      );
    }
  }
}

export function checkPasswordStrength(password: string): void {
  if (typeof password !== 'string' || password.length < MIN_PASSWORD_LENGTH) {
    throw new AccessError(
      400,
      'weak_password',
      `The password must have at least ${MIN_PASSWORD_LENGTH} characters.`,
      'A few unrelated words make a long password that is easy to remember.',
    );
  }
  if (password.length > 1024)
    throw new AccessError(
      400,
      'weak_password',
      'The password is too long (1024 characters at most).',
    );
}
