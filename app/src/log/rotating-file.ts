/**
 * A log file that rotates by size and by day and keeps a bounded number of rotated files for
 * a bounded time. Writes are synchronous appends, so a crash loses at most the line being written.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';

export interface RotationPolicy {
  maxBytes: number;
  maxFiles: number;
  retentionDays: number;
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export class RotatingFile {
  private fd: number | undefined;
  private size = 0;
  private day = '';
  private readonly dir: string;
  private readonly stem: string;
  private readonly ext: string;

  constructor(
    readonly file: string,
    private readonly policy: RotationPolicy,
    private readonly now: () => number = Date.now,
  ) {
    this.dir = dirname(file);
    this.ext = extname(file);
    this.stem = basename(file, this.ext);
    this.open();
    this.prune();
  }

  write(line: string): void {
    const bytes = Buffer.byteLength(line);
    const today = day(this.now());
    if (this.size > 0 && (this.size + bytes > this.policy.maxBytes || today !== this.day))
      this.rotate();
    if (this.fd === undefined) this.open();
    writeSync(this.fd!, line);
    this.size += bytes;
    this.day = today;
  }

  /** Rotated files, oldest first. */
  rotated(): string[] {
    const prefix = `${this.stem}-`;
    return readdirSync(this.dir)
      .filter((f) => f.startsWith(prefix) && f.endsWith(this.ext) && f !== basename(this.file))
      .sort()
      .map((f) => join(this.dir, f));
  }

  /** Closes the file; the next write opens it again. Never throws (its disk may be gone). */
  close(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) return;
    try {
      closeSync(fd);
    } catch {
      /* the descriptor is released even when close reports an error */
    }
  }

  private open(): void {
    mkdirSync(this.dir, { recursive: true });
    this.fd = openSync(this.file, 'a', 0o640);
    const st = statSync(this.file);
    this.size = st.size;
    this.day = st.size > 0 ? day(st.mtimeMs) : day(this.now());
  }

  private rotate(): void {
    this.close();
    const stamp = new Date(this.now()).toISOString().replace(/[:.]/g, '-');
    let target = join(this.dir, `${this.stem}-${stamp}${this.ext}`);
    for (let i = 1; existsSync(target); i++)
      target = join(this.dir, `${this.stem}-${stamp}-${i}${this.ext}`);
    renameSync(this.file, target);
    this.open();
    this.prune();
  }

  private prune(): void {
    const files = this.rotated();
    const cutoff = this.now() - this.policy.retentionDays * 86_400_000;
    files.forEach((f, i) => {
      const tooMany = i < files.length - this.policy.maxFiles;
      if (tooMany || statSync(f).mtimeMs < cutoff) {
        try {
          unlinkSync(f);
        } catch {
          /* gone already */
        }
      }
    });
  }
}
