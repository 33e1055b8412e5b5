/**
 * One download into the mirror, atomically: streamed to `<name>.backupd-partial` beside the
 * target (the watcher and the push ignore that suffix), hashed on the way, checked against
 * Drive's size and checksums, fsynced, given Drive's modifiedTime, then renamed into place. A
 * connection that breaks mid-body resumes with `Range` from the bytes already on disk, and so
 * does a partial file left by a killed daemon.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { PARTIAL_SUFFIX } from '../../mirror/watcher.js';
import { backoffMs, DEFAULT_RETRY, abortableSleep, type RetryPolicy } from './retry.js';

export interface Expected {
  size?: number;
  md5?: string;
  sha256?: string;
}

export class VerificationFailed extends Error {
  override name = 'VerificationFailed';
}

export interface DownloadOptions {
  target: string;
  /** Opens the body from `offset` (a Range request when > 0). */
  open: (offset: number) => Promise<Readable>;
  expected: Expected;
  /** Drive's modifiedTime, given to the file. */
  mtime?: Date;
  /** Whether a Range request continues the body (false for small exports: start over). */
  resumable: boolean;
  signal?: AbortSignal;
  policy?: RetryPolicy;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface DownloadResult {
  bytes: number;
  md5: string;
  sha256: string;
  /** Times the body was resumed after a broken connection. */
  resumed: number;
}

const hashesOf = () => ({ md5: createHash('md5'), sha256: createHash('sha256') });

async function hashExisting(path: string, hashes: { md5: Hash; sha256: Hash }): Promise<number> {
  let n = 0;
  for await (const chunk of createReadStream(path)) {
    hashes.md5.update(chunk as Buffer);
    hashes.sha256.update(chunk as Buffer);
    n += (chunk as Buffer).length;
  }
  return n;
}

/** MD5 and SHA-256 of a file on disk. */
export async function hashFile(
  path: string,
): Promise<{ md5: string; sha256: string; size: number }> {
  const h = hashesOf();
  const size = await hashExisting(path, h);
  return { md5: h.md5.digest('hex'), sha256: h.sha256.digest('hex'), size };
}

export async function downloadTo(o: DownloadOptions): Promise<DownloadResult> {
  const partial = o.target + PARTIAL_SUFFIX;
  const policy = o.policy ?? DEFAULT_RETRY;
  const sleep = o.sleep ?? abortableSleep;
  await mkdir(dirname(o.target), { recursive: true });
  let hashes = hashesOf();
  let offset = 0;
  // A partial of an earlier run continues, when the body can be resumed and is not already too long.
  if (o.resumable) {
    const st = await stat(partial).catch(() => undefined);
    if (st && o.expected.size !== undefined && st.size > 0 && st.size <= o.expected.size)
      offset = await hashExisting(partial, hashes);
    else await rm(partial, { force: true });
  } else await rm(partial, { force: true });

  let resumed = 0;
  let broken = 0;
  const fh = await open(partial, offset > 0 ? 'a' : 'w');
  try {
    for (;;) {
      o.signal?.throwIfAborted();
      let body: Readable;
      try {
        body = await o.open(offset);
      } catch (err) {
        // Drive answered 416: the partial already holds every byte.
        if ((err as { response?: { status?: number } }).response?.status === 416 && offset > 0)
          break;
        throw err;
      }
      try {
        for await (const chunk of body) {
          const b = chunk as Buffer;
          await fh.write(b);
          hashes.md5.update(b);
          hashes.sha256.update(b);
          offset += b.length;
        }
        if (o.expected.size !== undefined && offset < o.expected.size)
          throw Object.assign(
            new Error(`the body ended after ${offset} of ${o.expected.size} bytes`),
            {
              code: 'ECONNRESET',
            },
          );
        break;
      } catch (err) {
        body.destroy();
        o.signal?.throwIfAborted();
        if (++broken >= policy.attempts) throw err;
        if (!o.resumable) {
          // Start over: truncate what was written.
          await fh.truncate(0);
          hashes = hashesOf();
          offset = 0;
        } else resumed++;
        await fh.sync();
        await sleep(backoffMs(broken, policy, Math.random), o.signal);
      }
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  const md5 = hashes.md5.digest('hex');
  const sha256 = hashes.sha256.digest('hex');
  const e = o.expected;
  const problem =
    e.size !== undefined && offset !== e.size
      ? `${offset} bytes instead of ${e.size}`
      : e.md5 && e.md5 !== md5
        ? `MD5 ${md5} instead of Drive's ${e.md5}`
        : e.sha256 && e.sha256 !== sha256
          ? `SHA-256 ${sha256} instead of Drive's ${e.sha256}`
          : undefined;
  if (problem) {
    await rm(partial, { force: true });
    throw new VerificationFailed(`the download did not match Drive: ${problem}`);
  }
  if (o.mtime && !Number.isNaN(o.mtime.getTime())) await utimes(partial, o.mtime, o.mtime);
  await rename(partial, o.target);
  // The rename is durable once the folder is synced.
  const dir = await open(dirname(o.target), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
  return { bytes: offset, md5, sha256, resumed };
}
