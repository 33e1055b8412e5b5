// File contents of the emulated Drive: given bytes, or a size and a seed for large files. A
// seeded file is never held in memory: its bytes are AES-128-CTR keystream (the seed is the
// key), so any range can be produced on the fly, and the same seed always gives the same bytes.
// Checksums are computed once, by streaming, the first time metadata asks for them.
import { createCipheriv, createHash } from 'node:crypto';
import { Readable } from 'node:stream';

/** How a fixture gives content: text, bytes, or `{ size, seed }` generated on the fly. */
export type ContentSpec = string | Uint8Array | { size: number; seed?: string | number };

const CHUNK = 64 * 1024;

export interface Checksums {
  md5: string;
  sha1: string;
  sha256: string;
}

export class Content {
  readonly size: number;
  private readonly bytes: Buffer | undefined;
  private readonly key: Buffer | undefined;
  private sums: Checksums | undefined;

  constructor(spec: ContentSpec) {
    if (typeof spec === 'string') this.bytes = Buffer.from(spec, 'utf8');
    else if (spec instanceof Uint8Array) this.bytes = Buffer.from(spec);
    else {
      if (!Number.isSafeInteger(spec.size) || spec.size < 0)
        throw new Error(`content size must be a whole number of bytes >= 0, got ${spec.size}`);
      this.key = createHash('sha256')
        .update(String(spec.seed ?? 'seed'))
        .digest()
        .subarray(0, 16);
    }
    this.size = this.bytes ? this.bytes.length : (spec as { size: number }).size;
  }

  /** Bytes [start, end) as a Buffer; only for small reads (tests, exports). */
  slice(start = 0, end = this.size): Buffer {
    if (this.bytes) return this.bytes.subarray(start, end);
    return this.generate(start, end - start);
  }

  /** Bytes [start, end) as a stream of chunks of at most 64 KiB, made as they are read. */
  stream(start = 0, end = this.size): Readable {
    const chunks = function* (this: Content) {
      for (let pos = start; pos < end; pos += CHUNK)
        yield this.slice(pos, Math.min(end, pos + CHUNK));
    }.call(this);
    return Readable.from(chunks, { objectMode: false });
  }

  checksums(): Checksums {
    if (!this.sums) {
      const md5 = createHash('md5');
      const sha1 = createHash('sha1');
      const sha256 = createHash('sha256');
      for (let pos = 0; pos < this.size; pos += CHUNK) {
        const chunk = this.slice(pos, Math.min(this.size, pos + CHUNK));
        md5.update(chunk);
        sha1.update(chunk);
        sha256.update(chunk);
      }
      this.sums = {
        md5: md5.digest('hex'),
        sha1: sha1.digest('hex'),
        sha256: sha256.digest('hex'),
      };
    }
    return this.sums;
  }

  /** The AES-CTR keystream at [offset, offset + length): block n is AES(key, n). */
  private generate(offset: number, length: number): Buffer {
    const block = Math.floor(offset / 16);
    const skip = offset % 16;
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64BE(BigInt(block), 8);
    const cipher = createCipheriv('aes-128-ctr', this.key!, iv);
    return cipher.update(Buffer.alloc(skip + length)).subarray(skip);
  }
}
