/**
 * The secrets store: Google refresh tokens, S3 keys, the SMTP password, API keys. One file,
 * mode 0600, encrypted with AES-256-GCM under a key kept in a separate key file (by default
 * beside the config, off the data disk), so the data disk alone reveals nothing.
 * Values go in through the CLI or the API and never come back out of the API.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { writeFileAtomicSync } from '../util/fs.js';

const MAGIC = Buffer.from('BKPDSEC1');
const AAD = Buffer.from('backupd secrets store v1');

export interface SecretEntry {
  value: string;
  updated_at: string;
}

export class SecretStoreError extends Error {
  override name = 'SecretStoreError';
}

export class SecretStore {
  private entries = new Map<string, SecretEntry>();
  private key: Buffer | undefined;

  constructor(
    readonly file: string,
    readonly keyFile: string,
  ) {}

  /** Reads the store, if there is one. A store that cannot be decrypted is an error, never ignored. */
  load(): this {
    if (!existsSync(this.file)) return this;
    const blob = readFileSync(this.file);
    if (blob.length < MAGIC.length + 28 || !blob.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new SecretStoreError(
        `${this.file} is not a backupd secrets store (it may be damaged). Restore it from a backup, or move it away and set the secrets again.`,
      );
    }
    const key = this.readKey(false);
    if (!key) {
      throw new SecretStoreError(
        `the secrets store ${this.file} exists but its key file ${this.keyFile} is missing. Restore the key file, or move the store away and set the secrets again.`,
      );
    }
    const iv = blob.subarray(MAGIC.length, MAGIC.length + 12);
    const tag = blob.subarray(MAGIC.length + 12, MAGIC.length + 28);
    const decipher = createDecipheriv('aes-256-gcm', key, iv);
    decipher.setAAD(AAD);
    decipher.setAuthTag(tag);
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(blob.subarray(MAGIC.length + 28)), decipher.final()]);
    } catch {
      throw new SecretStoreError(
        `the secrets store ${this.file} cannot be decrypted with the key in ${this.keyFile}: wrong key file, or the store was altered.`,
      );
    }
    const parsed = JSON.parse(plain.toString('utf8')) as { entries: Record<string, SecretEntry> };
    this.entries = new Map(Object.entries(parsed.entries));
    return this;
  }

  get(name: string): string | undefined {
    return this.entries.get(name)?.value;
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Names and times only, never values. */
  list(): { name: string; updated_at: string }[] {
    return [...this.entries]
      .map(([name, e]) => ({ name, updated_at: e.updated_at }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  values(): string[] {
    return [...this.entries.values()].map((e) => e.value);
  }

  set(name: string, value: string): void {
    if (!/^[a-z0-9_.@+-]+$/i.test(name))
      throw new SecretStoreError(
        `"${name}" is not a valid secret name (letters, digits, . _ - @ +)`,
      );
    if (value.length === 0)
      throw new SecretStoreError(`the value of ${name} is empty; use delete to remove a secret`);
    this.entries.set(name, { value, updated_at: new Date().toISOString() });
    this.save();
  }

  delete(name: string): boolean {
    const had = this.entries.delete(name);
    if (had) this.save();
    return had;
  }

  private save(): void {
    const key = this.readKey(true)!;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(AAD);
    const body = Buffer.concat([
      cipher.update(JSON.stringify({ entries: Object.fromEntries(this.entries) }), 'utf8'),
      cipher.final(),
    ]);
    writeFileAtomicSync(this.file, Buffer.concat([MAGIC, iv, cipher.getAuthTag(), body]), 0o600);
  }

  private readKey(create: boolean): Buffer | undefined {
    if (this.key) return this.key;
    if (existsSync(this.keyFile)) {
      const mode = statSync(this.keyFile).mode & 0o077;
      if (mode !== 0) chmodSync(this.keyFile, 0o600);
      const key = Buffer.from(readFileSync(this.keyFile, 'utf8').trim(), 'base64');
      if (key.length !== 32) {
        throw new SecretStoreError(
          `${this.keyFile} does not hold a 32-byte key (base64). Restore the right key file.`,
        );
      }
      this.key = key;
    } else if (create) {
      const key = randomBytes(32);
      writeFileAtomicSync(this.keyFile, `${key.toString('base64')}\n`, 0o600);
      this.key = key;
    }
    return this.key;
  }
}
