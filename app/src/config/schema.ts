/**
 * The one schema of the configuration file (section 10.1 of the specification, plus the
 * additions documented in docs/configuration.md). It validates `backupd config check` and
 * `PUT /api/config`, generates docs/configuration.md and the API's JSON Schema, and tells
 * which keys hold secrets (those never go back to a client and never reach a log).
 */
import { z } from 'zod';
import { DEFAULT_EXPORT_FORMATS, EXPORT_CHOICES } from '../google/drive/exports.js';
import { bandwidthConfig } from '../push/bandwidth.js';

/** Metadata the documentation generator and the secrets logic read from the schema. */
export interface KeyMeta {
  description: string;
  /** The value is a secret: write-only through the API, kept in the secrets store. */
  secret?: boolean;
  /** Environment variable that overrides this key (section 10.2 of the specification). */
  env?: string;
  /** Added by this project (not in section 10.1 of the specification). */
  addition?: boolean;
  example?: unknown;
}

const meta = <T extends z.ZodType>(schema: T, m: KeyMeta): T => schema.meta({ ...m });

const secret = (description: string, env?: string) =>
  meta(z.string().min(1).optional(), {
    description: `${description} Secret: prefer the secrets store (\`backupd secrets set\` or the API) or the environment over this file.`,
    secret: true,
    ...(env ? { env } : {}),
  });

const path = (description: string) =>
  z
    .string()
    .min(1, 'a path must not be empty')
    .refine((p) => !p.includes('\0'), 'a path must not contain NUL characters')
    .describe(description);

const optionalPath = (m: KeyMeta) => meta(path(m.description).optional(), m);

const globList = (description: string, dflt: string[]) =>
  z.array(z.string().min(1)).default(dflt).describe(description);

const rsyncOptions = meta(z.string().default('--archive --compress --checksum --delete'), {
  description:
    'Options of the specification for the rsync transport. Used only where the destination speaks rsync (a Hetzner Storage Box); deletions always go to the trash whatever this says.',
});

const endpoint = (description: string) =>
  z
    .string()
    .min(1)
    .refine((v) => {
      try {
        new URL(v.includes('://') ? v : `https://${v}`);
        return true;
      } catch {
        return false;
      }
    }, 'expected a host name or URL such as s3.fr-par.scw.cloud or https://s3.example.com')
    .optional()
    .describe(description);

const storageClass = z
  .enum([
    'STANDARD',
    'INTELLIGENT_TIERING',
    'STANDARD_IA',
    'ONEZONE_IA',
    'GLACIER_IR',
    'GLACIER',
    'DEEP_ARCHIVE',
  ])
  .optional()
  .describe(
    "S3 storage class of uploaded objects. Default: INTELLIGENT_TIERING on AWS; the provider's own default on another endpoint (many S3-compatible servers accept only STANDARD).",
  );

const googleDrive = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe('Mirror the Google Drive of every connected account.'),
    local_path: path(
      'Folder on the data disk holding the Drive mirror, one folder per account named by its email address.',
    ).default('/srv/backup/google-drive'),
    exclude_paths: globList(
      'Paths (relative to local_path, e.g. `someone@example.com/My Drive/Scratch`) not pushed to the destinations.',
      [],
    ),
    exclude_patterns: globList('File name patterns (globs) not pushed to the destinations.', [
      '*.tmp',
      '.DS_Store',
    ]),
    poll_interval_seconds: meta(z.number().int().min(10).max(86_400).default(60), {
      description:
        "How often the running daemon asks Drive what changed. A poll with no change is one API call, so a short interval costs little of Google's quota.",
      addition: true,
    }),
    download_concurrency: meta(z.number().int().min(1).max(16).default(4), {
      description: 'Downloads from Drive at the same time, per account.',
      addition: true,
    }),
    acknowledge_abuse: meta(z.boolean().default(false), {
      description:
        'Download files Google flagged as malware or spam too (Drive asks the owner to acknowledge the risk). Off: such files are recorded with a note and skipped.',
      addition: true,
    }),
    export_formats: meta(
      z
        .strictObject({
          document: z
            .enum(Object.keys(EXPORT_CHOICES.document) as [string, ...string[]])
            .default(DEFAULT_EXPORT_FORMATS.document)
            .describe('Format of Google Docs (the extension of the local file).'),
          spreadsheet: z
            .enum(Object.keys(EXPORT_CHOICES.spreadsheet) as [string, ...string[]])
            .default(DEFAULT_EXPORT_FORMATS.spreadsheet)
            .describe('Format of Google Sheets (csv keeps only the first sheet).'),
          presentation: z
            .enum(Object.keys(EXPORT_CHOICES.presentation) as [string, ...string[]])
            .default(DEFAULT_EXPORT_FORMATS.presentation)
            .describe('Format of Google Slides.'),
          drawing: z
            .enum(Object.keys(EXPORT_CHOICES.drawing) as [string, ...string[]])
            .default(DEFAULT_EXPORT_FORMATS.drawing)
            .describe('Format of Google Drawings.'),
          script: z
            .enum(Object.keys(EXPORT_CHOICES.script) as [string, ...string[]])
            .default(DEFAULT_EXPORT_FORMATS.script)
            .describe('Format of Apps Script projects.'),
        })
        .prefault({}),
      {
        description:
          'The format each kind of Google-native file is exported in; the extension of the local file says which.',
        addition: true,
      },
    ),
  })
  .describe('Google Drive, mirrored onto the data disk.');

const googlePhotos = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe('Mirror Google Photos (Takeout archives and Picker selections).'),
    local_path: path(
      'Folder on the data disk holding the Photos mirror, one folder per account.',
    ).default('/srv/backup/google-photos'),
    organize_by_date: z
      .boolean()
      .default(true)
      .describe('Store media under YYYY/MM/DD/ by the date the photo was taken.'),
    exclude_paths: meta(globList('Paths (relative to local_path) not pushed.', []), {
      description: 'Paths (relative to local_path) not pushed to the destinations.',
      addition: true,
    }),
    exclude_patterns: meta(globList('File name patterns not pushed.', ['*.tmp', '.DS_Store']), {
      description: 'File name patterns (globs) not pushed to the destinations.',
      addition: true,
    }),
  })
  .describe('Google Photos, mirrored onto the data disk.');

/** Loopback addresses Google accepts as the redirect of a Desktop-app client (RFC 8252). */
const isLoopbackRedirect = (v: string) => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' && ['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname);
  } catch {
    return false;
  }
};

const google = meta(
  z.strictObject({
    client_id: meta(z.string().min(1).optional(), {
      description:
        'Client ID of your own Google Cloud OAuth client, e.g. 1234-abc.apps.googleusercontent.com (docs/google-oauth-client.md).',
      env: 'GOOGLE_CLIENT_ID',
      addition: true,
    }),
    client_secret: meta(z.string().min(1).optional(), {
      description:
        'Client secret of that OAuth client. Secret: prefer the secrets store (`backupd secrets set` or the API) or the environment over this file.',
      secret: true,
      env: 'GOOGLE_CLIENT_SECRET',
      addition: true,
    }),
    loopback_redirect_uri: meta(
      z
        .string()
        .default('http://127.0.0.1/')
        .refine(
          isLoopbackRedirect,
          'expected an http:// loopback address such as http://127.0.0.1/ or http://localhost:8080/',
        ),
      {
        description:
          'Redirect of the paste-back sign-in (a Desktop-app client accepts any loopback address without registering it). The browser ends on it with the code; the owner copies that address back.',
        addition: true,
      },
    ),
    relay_redirect_uri: meta(
      z
        .string()
        .url()
        .refine(
          (v) => v.startsWith('https://'),
          'expected an https:// URL of a page you control, e.g. https://your-dashboard.example.com/google/callback',
        )
        .optional(),
      {
        description:
          'https page you control, registered as redirect URI of a Web-application client, that sends the browser on to `/api/google/callback` of this appliance with the code and state. Enables the relay sign-in.',
        addition: true,
      },
    ),
  }),
  {
    description:
      'Your Google OAuth client, shared by Drive and Photos, and the redirects of the sign-in.',
    addition: true,
  },
);

const awsS3 = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Push the mirror to Amazon S3.'),
    bucket: z.string().min(3).max(63).optional().describe('Bucket name (required when enabled).'),
    prefix: meta(z.string().default(''), {
      description: 'Folder inside the bucket under which everything is stored.',
      addition: true,
    }),
    region: z.string().min(1).default('us-east-1').describe('AWS region of the bucket.'),
    endpoint: meta(endpoint('S3 endpoint, for S3-compatible services and tests.'), {
      description:
        'S3 endpoint URL; defaults to AWS. `AWS_ENDPOINT_URL` sets it when this key is absent.',
      env: 'AWS_ENDPOINT_URL',
      addition: true,
    }),
    storage_class: storageClass,
    server_side_encryption: meta(z.enum(['AES256', 'aws:kms', 'none']).optional(), {
      description:
        'Server-side encryption requested for every object. Default: AES256 on AWS; none on another endpoint.',
      addition: true,
    }),
    ssl_verify: meta(z.boolean().optional(), {
      description: 'Override `security.ssl_verify` for this destination.',
      addition: true,
    }),
    access_key_id: secret('AWS access key id.', 'AWS_ACCESS_KEY_ID'),
    secret_access_key: secret('AWS secret access key.', 'AWS_SECRET_ACCESS_KEY'),
    rsync_options: rsyncOptions,
  })
  .describe('Amazon S3: the first off-site copy.');

export const euProviderTypes = [
  'hetzner',
  'hetzner_storage_box',
  'scaleway',
  'ovh',
  'exoscale',
  's3',
  'local',
] as const;

const euProvider = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Push the mirror to a European provider.'),
    type: z
      .enum(euProviderTypes)
      .default('hetzner')
      .describe(
        'hetzner (Object Storage), hetzner_storage_box (SFTP/rsync), scaleway, ovh, exoscale, s3 (any S3-compatible service) or local (a folder, e.g. a second disk).',
      ),
    bucket: z.string().min(3).max(63).optional().describe('Bucket name (S3-type providers).'),
    prefix: meta(z.string().default(''), {
      description: 'Folder inside the bucket (or below `path`) under which everything is stored.',
      addition: true,
    }),
    region: z
      .string()
      .min(1)
      .optional()
      .describe('Region or location, e.g. fr-par, fsn1, de, ch-gva-2.'),
    endpoint: endpoint(
      'Endpoint host or URL, e.g. s3.fr-par.scw.cloud; derived from type and region when absent.',
    ),
    host: meta(z.string().min(1).optional(), {
      description: 'Storage Box host, e.g. u123456.your-storagebox.de (hetzner_storage_box).',
      addition: true,
    }),
    port: meta(z.number().int().min(1).max(65535).default(23), {
      description: 'SSH port of the Storage Box (Hetzner uses 23).',
      addition: true,
    }),
    user: meta(z.string().min(1).optional(), {
      description: 'Storage Box user, e.g. u123456 (hetzner_storage_box).',
      addition: true,
    }),
    ssh_key_file: meta(z.string().min(1).optional(), {
      description: 'Private SSH key used for the Storage Box.',
      addition: true,
    }),
    known_hosts_file: meta(z.string().min(1).optional(), {
      description: 'known_hosts file pinning the Storage Box host key.',
      addition: true,
    }),
    path: meta(z.string().min(1).optional(), {
      description: 'Folder on the Storage Box, or the folder of a `local` destination.',
      addition: true,
    }),
    ssl_verify: meta(z.boolean().optional(), {
      description: 'Override `security.ssl_verify` for this destination.',
      addition: true,
    }),
    access_key: secret('Access key of the provider.', 'EU_PROVIDER_ACCESS_KEY'),
    secret_key: secret('Secret key of the provider.', 'EU_PROVIDER_SECRET_KEY'),
    rsync_options: rsyncOptions,
  })
  .describe('The European copy: Hetzner first; Scaleway, OVHcloud, Exoscale or any S3 service.');

const local = meta(
  z
    .strictObject({
      enabled: z
        .boolean()
        .default(false)
        .describe('Push the mirror to a folder (a second USB disk).'),
      path: path('Folder the copy is kept in, e.g. the mount point of a second disk.').optional(),
    })
    .prefault({}),
  { description: 'A local copy on a second disk: a destination like the others.', addition: true },
);

const logLevel = z
  .enum(['DEBUG', 'INFO', 'WARNING', 'ERROR', 'debug', 'info', 'warning', 'warn', 'error'])
  .default('INFO')
  .describe('DEBUG, INFO, WARNING or ERROR.');

/** The pino level of a configured `daemon.log_level`. */
export const pinoLevel = (level: Config['daemon']['log_level']) =>
  ({ debug: 'debug', info: 'info', warning: 'warn', warn: 'warn', error: 'error' })[
    level.toLowerCase() as 'debug'
  ] as 'debug' | 'info' | 'warn' | 'error';

const daemon = z
  .strictObject({
    api_port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .default(8080)
      .describe('Port of the API and the admin panel.'),
    api_host: z.string().min(1).default('0.0.0.0').describe('Address the API listens on.'),
    api_key: secret(
      'An API key for scripts and the remote dashboard (as `Authorization: Bearer <key>`), at least 24 characters.',
      'API_SECRET_KEY',
    ),
    log_level: logLevel,
    log_file: path(
      'JSON log file; default `<state_dir>/logs/backupd.log` on the data disk.',
    ).optional(),
    log_max_size_mb: meta(z.number().min(1).max(1024).default(10), {
      description: 'Rotate the log file when it reaches this size.',
      addition: true,
    }),
    log_max_files: meta(z.number().int().min(1).max(1000).default(10), {
      description: 'Rotated log files kept.',
      addition: true,
    }),
    log_retention_days: meta(z.number().int().min(1).max(3650).default(30), {
      description:
        'Rotated log files, stored log events and finished queue items older than this are deleted; a log file is also rotated once a day.',
      addition: true,
    }),
    pid_file: path('File the running daemon writes its process id to.').optional(),
    state_dir: optionalPath({
      description:
        "The daemon's own folder on the data disk (database, secrets store, logs): default `.backupd` beside the Drive mirror's folder.",
      addition: true,
    }),
    web_root: optionalPath({
      description: 'Folder of the built admin panel; default the one installed with the daemon.',
      addition: true,
    }),
  })
  .describe('The daemon: API, logs, files.');

const security = z
  .strictObject({
    api_authentication: z
      .boolean()
      .default(true)
      .describe(
        'Require a session or API key on the API. May be false only when api_host is a loopback address.',
      ),
    cors_origins: z
      .array(z.string().url())
      .default([])
      .describe(
        'Origins (e.g. https://your-dashboard.vercel.app) allowed to call the API from a browser.',
      ),
    ssl_verify: z
      .boolean()
      .default(true)
      .describe(
        'Verify TLS certificates; an http:// endpoint is refused for non-loopback hosts unless this is false.',
      ),
    secrets_file: optionalPath({
      description: 'Encrypted secrets store; default `<state_dir>/secrets.enc`.',
      addition: true,
    }),
    secrets_key_file: optionalPath({
      description:
        'Key file (mode 0600) that encrypts the secrets store; default `secrets.key` beside the config file, so the data disk alone does not reveal the secrets.',
      addition: true,
    }),
  })
  .describe('Access to the API and transport security.');

const email = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Send alerts and summaries by email.'),
    smtp_server: z.string().min(1).optional().describe('SMTP server host.'),
    smtp_port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .default(587)
      .describe('SMTP port (587 STARTTLS, 465 TLS).'),
    smtp_security: meta(z.enum(['starttls', 'tls', 'none']).default('starttls'), {
      description:
        '`starttls` (port 587), `tls` (port 465) or `none` (only for a server on this machine).',
      addition: true,
    }),
    smtp_user: meta(z.string().min(1).optional(), {
      description: 'SMTP user name.',
      addition: true,
    }),
    smtp_password: meta(secret('SMTP password.'), {
      description: 'SMTP password. Secret: kept in the secrets store.',
      secret: true,
      addition: true,
    }),
    from: z.email().optional().describe('Sender address.'),
    to: z
      .union([z.email(), z.array(z.email()).min(1)])
      .optional()
      .describe('Recipient address, or a list of them.'),
    on_error: z.boolean().default(true).describe('Mail an alert when something fails.'),
    daily_summary: z.boolean().default(true).describe('Mail a summary every day.'),
  })
  .prefault({})
  .describe('Email alerts and the daily summary.');

const webhook = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Post alerts to a webhook (Slack, Discord, ...).'),
    url: z.url().optional().describe('Webhook URL.'),
  })
  .prefault({})
  .describe('Webhook alerts.');

const sync = z
  .strictObject({
    mode: z
      .enum(['realtime', 'manual'])
      .default('realtime')
      .describe('realtime: push every change as it happens; manual: only when asked.'),
    watch_delay_seconds: z
      .number()
      .min(0)
      .max(3600)
      .default(5)
      .describe('Wait this long after the last change to a file before pushing it (debounce).'),
    batch_size: z
      .number()
      .int()
      .min(1)
      .max(10000)
      .default(100)
      .describe('Files pushed in one batch (1 to 10000).'),
    retry_attempts: z
      .number()
      .int()
      .min(0)
      .max(100)
      .default(3)
      .describe('Retries of a failed transfer before it is reported as failed.'),
    retry_delay_seconds: z
      .number()
      .min(0)
      .max(86400)
      .default(60)
      .describe('First delay before a retry; it doubles on each attempt, with jitter.'),
    ...bandwidthConfig.shape,
    max_transfers: meta(z.number().int().min(1).max(64).default(8), {
      description: 'Files pushed at the same time to each destination.',
      addition: true,
    }),
    max_requests_per_second: meta(z.number().min(0).max(10000).default(200), {
      description:
        "Requests per second rclone may make to the destinations (0: no limit); keeps well under the providers' rate limits (AWS S3 allows 3,500 writes a second per prefix; smaller providers allow less, and answer 503 SlowDown above it). A small file costs 2 to 4 requests, so this also caps small-file pushes near 50 to 100 files a second.",
      addition: true,
    }),
    trash_retention_days: meta(z.number().int().min(1).max(3650).default(30), {
      description:
        "Deleted and replaced files are kept under .trash/YYYY-MM-DD/ at each destination for this many days, then purged (on top of the bucket's own versioning).",
      addition: true,
    }),
    mass_delete_share: meta(z.number().min(0).max(1).default(0.2), {
      description:
        'Deletions of more than this share of the files within ten minutes are held until the owner confirms them (the mass-deletion guard).',
      addition: true,
    }),
    mass_delete_count: meta(z.number().int().min(1).default(10000), {
      description:
        'Deletions of more than this many files within ten minutes are held too, whatever the share.',
      addition: true,
    }),
  })
  .describe('How changes on the mirror are pushed.');

const appliance = z
  .strictObject({
    data_disk: path(
      'Mount point of the adopted data disk. While nothing is mounted there the daemon runs in standby: the API and panel answer, nothing is pulled or pushed, and the state is kept in memory-backed /run, never on the bare folder or the SD card.',
    ).default('/srv/backup'),
    access_db: path(
      'Database of the admin password, sessions and API keys, kept on the system disk so that signing in works without the data disk.',
    ).default('/var/lib/backupd/access.db'),
    setup_code_file: path(
      'File holding the one-time setup code made at first boot (by root, shown on the console and the boot partition). While no admin password exists the daemon accepts this code instead of printing a new random one at each start.',
    ).optional(),
    disk_spool: path(
      'Folder shared with the root disk helper (`backupd disk scan` / `adopt-pending`): it writes disks.json and adoption.json there; the daemon writes adoption requests to its requests/ folder.',
    ).default('/run/backupd-disk'),
  })
  .meta({
    description:
      'The appliance image only: the data disk, and what lives on the system disk. Absent on an ordinary install, where the daemon always runs in full.',
    addition: true,
  });

export const configSchema = z
  .strictObject({
    sources: z
      .strictObject({
        google_drive: googleDrive.prefault({}),
        google_photos: googlePhotos.prefault({}),
      })
      .prefault({})
      .describe('What is mirrored onto the data disk.'),
    destinations: z
      .strictObject({ aws_s3: awsS3.prefault({}), eu_provider: euProvider.prefault({}), local })
      .prefault({})
      .describe('Where the mirror is pushed.'),
    sync: sync.prefault({}),
    daemon: daemon.prefault({}),
    security: security.prefault({}),
    google: google.prefault({}),
    notifications: z
      .strictObject({ email, webhook })
      .prefault({})
      .describe('Alerts and summaries.'),
    appliance: appliance.optional(),
  })
  .superRefine(checkCrossFieldRules);

export type Config = z.output<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type DestinationName = keyof Config['destinations'];
export type SourceName = keyof Config['sources'];

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[?::1\]?)$/i;
export const isLoopbackHost = (host: string) => LOOPBACK.test(host);

/** Rules that involve more than one key. Each names the key to fix. */
function checkCrossFieldRules(c: z.output<z.ZodObject>, ctx: z.RefinementCtx) {
  const cfg = c as unknown as Config;
  const need = (cond: boolean, pathParts: (string | number)[], message: string) => {
    if (cond) ctx.addIssue({ code: 'custom', path: pathParts, message, input: undefined });
  };
  const checkEndpoint = (
    value: string | undefined,
    sslVerify: boolean | undefined,
    at: string[],
  ) => {
    if (!value || !/^http:\/\//i.test(value)) return;
    const host = new URL(value).hostname;
    const verify = sslVerify ?? cfg.security.ssl_verify;
    need(
      !isLoopbackHost(host) && verify,
      at,
      `plain http:// is allowed only for a loopback address; use https://, or set ssl_verify: false explicitly to accept an unencrypted connection to ${host}`,
    );
  };

  const s3 = cfg.destinations.aws_s3;
  need(
    s3.enabled && !s3.bucket,
    ['destinations', 'aws_s3', 'bucket'],
    'required when aws_s3 is enabled',
  );
  checkEndpoint(s3.endpoint, s3.ssl_verify, ['destinations', 'aws_s3', 'endpoint']);

  const eu = cfg.destinations.eu_provider;
  if (eu.enabled) {
    const at = (k: string) => ['destinations', 'eu_provider', k];
    if (eu.type === 'hetzner_storage_box') {
      need(
        !eu.host,
        at('host'),
        'required for a hetzner_storage_box, e.g. u123456.your-storagebox.de',
      );
      need(!eu.user, at('user'), 'required for a hetzner_storage_box, e.g. u123456');
      need(
        !eu.ssh_key_file,
        at('ssh_key_file'),
        'required for a hetzner_storage_box: the private key allowed on the box',
      );
    } else if (eu.type === 'local') {
      need(!eu.path, at('path'), 'required for a local destination: the folder to copy to');
    } else {
      need(!eu.bucket, at('bucket'), `required for type ${eu.type}`);
      need(
        eu.type === 's3' && !eu.endpoint,
        at('endpoint'),
        'required for type s3: the URL of the S3 service',
      );
      need(
        ['hetzner', 'scaleway', 'ovh', 'exoscale'].includes(eu.type) && !eu.endpoint && !eu.region,
        at('region'),
        `required for type ${eu.type} unless endpoint is given (e.g. fsn1 for Hetzner, fr-par for Scaleway)`,
      );
    }
    checkEndpoint(eu.endpoint, eu.ssl_verify, ['destinations', 'eu_provider', 'endpoint']);
  }

  const loc = cfg.destinations.local;
  need(
    loc.enabled && !loc.path,
    ['destinations', 'local', 'path'],
    'required when the local destination is enabled',
  );

  need(
    !cfg.security.api_authentication && !isLoopbackHost(cfg.daemon.api_host),
    ['security', 'api_authentication'],
    `may be false only when daemon.api_host is a loopback address (it is ${cfg.daemon.api_host}); anyone on the network could control the backups`,
  );

  const mail = cfg.notifications.email;
  if (mail.enabled) {
    const at = (k: string) => ['notifications', 'email', k];
    need(!mail.smtp_server, at('smtp_server'), 'required when email is enabled');
    need(!mail.from, at('from'), 'required when email is enabled');
    need(!mail.to, at('to'), 'required when email is enabled');
  }
  need(
    cfg.notifications.webhook.enabled && !cfg.notifications.webhook.url,
    ['notifications', 'webhook', 'url'],
    'required when the webhook is enabled',
  );
  need(
    !!cfg.daemon.api_key && cfg.daemon.api_key.length < 24,
    ['daemon', 'api_key'],
    'too short: use at least 24 random characters, e.g. from `openssl rand -base64 32`',
  );
}
