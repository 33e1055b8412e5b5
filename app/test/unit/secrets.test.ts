// The encrypted secrets store: what goes in comes back out in the next process, nothing is
// readable from the file alone, and a damaged store or a wrong key is an error, never ignored.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SecretStore, SecretStoreError } from '../../src/config/index.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-secrets-');

function paths() {
  const dir = tmp();
  return {
    file: path.join(dir, 'disk', 'secrets.enc'),
    keyFile: path.join(dir, 'etc', 'secrets.key'),
  };
}

const VALUE = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const NAME = 'destinations.aws_s3.secret_access_key';

/** The error `fn` throws; fails the test when it does not throw. */
function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('SecretStore', () => {
  it('what is set is read back by another instance (another process)', () => {
    const { file, keyFile } = paths();
    const a = new SecretStore(file, keyFile).load();
    a.set(NAME, VALUE);
    a.set('google.refresh_token', '1//refresh-token-value');

    const b = new SecretStore(file, keyFile).load();
    expect(b.get(NAME)).toBe(VALUE);
    expect(b.get('google.refresh_token')).toBe('1//refresh-token-value');
    expect(b.has(NAME)).toBe(true);
    expect(b.get('not.set')).toBeUndefined();
    expect(b.list().map((e) => e.name)).toEqual([
      'destinations.aws_s3.secret_access_key',
      'google.refresh_token',
    ]);
    expect(JSON.stringify(b.list())).not.toContain(VALUE);
  });

  it('a deleted secret is gone for the next instance too', () => {
    const { file, keyFile } = paths();
    const a = new SecretStore(file, keyFile).load();
    a.set(NAME, VALUE);
    expect(a.delete(NAME)).toBe(true);
    expect(a.delete(NAME)).toBe(false);
    expect(new SecretStore(file, keyFile).load().has(NAME)).toBe(false);
  });

  it('an absent store is empty and creates no files until something is set', () => {
    const { file, keyFile } = paths();
    const store = new SecretStore(file, keyFile).load();
    expect(store.list()).toEqual([]);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(keyFile)).toBe(false);
  });

  it('the store and its key file are readable by the owner only (0600)', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('a key file opened up by someone is made 0600 again when read', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    chmodSync(keyFile, 0o644);
    new SecretStore(file, keyFile).load();
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('neither the value nor the name is readable in the file', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    const bytes = readFileSync(file);
    expect(bytes.includes(VALUE)).toBe(false);
    expect(bytes.includes(Buffer.from(VALUE).toString('base64'))).toBe(false);
    expect(bytes.includes(NAME)).toBe(false);
  });

  it('a wrong key file is an error that says so', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    writeFileSync(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    const err = errorOf(() => new SecretStore(file, keyFile).load());
    expect(err).toBeInstanceOf(SecretStoreError);
    expect(err.message).toMatch(/cannot be decrypted/);
    expect(err.message).toMatch(/wrong key file/);
    expect(err.message).toContain(keyFile);
  });

  it('a key file that does not hold a key is an error', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    writeFileSync(keyFile, 'not a key\n');
    const err = errorOf(() => new SecretStore(file, keyFile).load());
    expect(err).toBeInstanceOf(SecretStoreError);
    expect(err.message).toMatch(/32-byte key/);
  });

  it('a store without its key file is an error, and no new key is made', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    unlinkSync(keyFile);
    const err = errorOf(() => new SecretStore(file, keyFile).load());
    expect(err).toBeInstanceOf(SecretStoreError);
    expect(err.message).toMatch(/key file .* is missing/);
    expect(existsSync(keyFile)).toBe(false);
  });

  it('a file that is not a store is an error', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    writeFileSync(file, 'access_key: plain text\n');
    const err = errorOf(() => new SecretStore(file, keyFile).load());
    expect(err).toBeInstanceOf(SecretStoreError);
    expect(err.message).toMatch(/not a backupd secrets store/);
  });

  it('a store altered by one byte is an error', () => {
    const { file, keyFile } = paths();
    new SecretStore(file, keyFile).load().set(NAME, VALUE);
    const bytes = readFileSync(file);
    bytes[bytes.length - 1]! ^= 0x01;
    writeFileSync(file, bytes);
    const err = errorOf(() => new SecretStore(file, keyFile).load());
    expect(err).toBeInstanceOf(SecretStoreError);
    expect(err.message).toMatch(/cannot be decrypted/);
  });

  it('invalid names and empty values are refused', () => {
    const { file, keyFile } = paths();
    const store = new SecretStore(file, keyFile).load();
    for (const name of ['', 'has space', 'a/b', '../escape', 'semi;colon']) {
      const err = errorOf(() => store.set(name, VALUE));
      expect(err, JSON.stringify(name)).toBeInstanceOf(SecretStoreError);
      expect(err.message).toMatch(/not a valid secret name/);
    }
    expect(errorOf(() => store.set(NAME, ''))).toBeInstanceOf(SecretStoreError);
    expect(store.list()).toEqual([]);
    expect(existsSync(file)).toBe(false);
  });
});
