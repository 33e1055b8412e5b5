/**
 * Scrubs every known secret value out of text before it is written anywhere (log file,
 * console, stored events, API responses). Key-based redaction catches the usual fields;
 * this catches a secret wherever it ends up, e.g. inside an error message from a server.
 */
export const REDACTED = '[REDACTED]';
/** Shorter values would scrub ordinary words; secrets that short are refused at input. */
export const MIN_SECRET_LENGTH = 6;

export class Redactor {
  private secrets: string[] = [];

  constructor(private readonly source: () => Iterable<string> = () => []) {
    this.refresh();
  }

  /** Re-reads the secret values (after a secret was set or removed). */
  refresh(): void {
    const set = new Set<string>();
    for (const v of this.source()) {
      if (v.length < MIN_SECRET_LENGTH) continue;
      set.add(v);
      // Also the forms a value takes inside JSON or a URL.
      set.add(JSON.stringify(v).slice(1, -1));
      set.add(encodeURIComponent(v));
    }
    // Longest first, so a secret containing another is scrubbed whole.
    this.secrets = [...set].sort((a, b) => b.length - a.length);
  }

  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) if (out.includes(s)) out = out.split(s).join(REDACTED);
    return out;
  }

  contains(text: string): boolean {
    return this.secrets.some((s) => text.includes(s));
  }
}
