// Turning the API's machine values into words for a person.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

function parse(iso: string | null | undefined): Date | null {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "12 Mar 2026, 14:03:12", or the fallback when there is no time. */
export function formatDateTime(iso: string | null | undefined, fallback = 'never'): string {
  const d = parse(iso);
  return d ? dateTime.format(d) : fallback;
}

/** Time of day when `iso` is today, the full date and time otherwise. */
export function formatLogTime(iso: string): string {
  const d = parse(iso);
  if (!d) return iso;
  const now = new Date();
  const sameDay =
    d.getFullYear() === now.getFullYear() &&
    d.getMonth() === now.getMonth() &&
    d.getDate() === now.getDate();
  return sameDay ? timeOnly.format(d) : dateTime.format(d);
}

/** "3 d 4 h", "5 min 2 s", "12 s". */
export function formatDuration(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${sec} s`;
  return `${sec} s`;
}

/** "just now", "5 minutes ago", "in 2 hours" (relative to `now`, in ms). */
export function formatRelative(
  iso: string | null | undefined,
  now: number = Date.now(),
  fallback = 'never',
): string {
  const d = parse(iso);
  if (!d) return fallback;
  const diff = (d.getTime() - now) / 1000;
  const abs = Math.abs(diff);
  if (abs < 10) return 'just now';
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  const units: [Intl.RelativeTimeFormatUnit, number][] = [
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
    ['second', 1],
  ];
  for (const [unit, size] of units) {
    if (abs >= size || unit === 'second') return rtf.format(Math.round(diff / size), unit);
  }
  return dateTime.format(d);
}

const KNOWN_NAMES: Record<string, string> = {
  google_drive: 'Google Drive',
  google_photos: 'Google Photos',
  aws_s3: 'AWS S3',
  eu_provider: 'European provider',
  local: 'Local disk',
  s3: 'S3',
  hetzner: 'Hetzner',
  scaleway: 'Scaleway',
  ovhcloud: 'OVHcloud',
  exoscale: 'Exoscale',
  sftp: 'SFTP',
  rsync: 'rsync',
};

/** "google_drive" → "Google Drive"; unknown names become "Some name". */
export function humanName(name: string): string {
  const known = KNOWN_NAMES[name];
  if (known) return known;
  const words = name.replace(/[_-]+/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** A number with thousands separators. */
export function formatCount(n: number): string {
  return new Intl.NumberFormat().format(n);
}

/** 1843229011 → "1.84 GB" (decimal units, as storage providers bill). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = Math.abs(bytes);
  let i = 0;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  const sign = bytes < 0 ? '-' : '';
  const digits = i === 0 ? 0 : value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${sign}${value.toFixed(digits)} ${units[i]}`;
}
