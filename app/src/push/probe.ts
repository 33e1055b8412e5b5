/**
 * The configuration test (`POST /api/config/test`, `backupd config test`): each destination is
 * checked for real, the way the push will use it. S3: the credentials and the bucket, a probe
 * object written, read back and deleted with the push's own upload options, and whether the
 * bucket keeps old versions, encrypts by default and moves old versions to Glacier. A Storage
 * Box: the SSH connection with the pinned host key, a probe file through rclone, rsync on the
 * server. A folder: there, writable, a probe file, free space, and not on the mirror's disk.
 *
 * Nothing is changed on a bucket unless the owner names the fix in `apply`. Every network call
 * is bounded by a timeout, and one destination failing never stops the others.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import {
  mkdtemp,
  mkdir,
  readFile,
  rm,
  rmdir,
  stat,
  statfs,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type {
  LifecycleRule,
  S3Client,
  ServerSideEncryption,
  StorageClass,
} from '@aws-sdk/client-s3';
import type { DestinationName, Runtime } from '../config/index.js';
import {
  describeDestination,
  type DestinationDescription,
  type S3Settings,
} from './destinations.js';
import {
  explainLocalError,
  explainS3Error,
  explainSftpError,
  type Explained,
  type ProbeFix,
} from './probe-errors.js';
import { loadS3Sdk, makeS3Client } from './s3-client.js';
import { runRclone, type RcloneLogLine } from './rclone.js';
import { sshCommand } from './rsync.js';

export type { ProbeFix } from './probe-errors.js';

export const PROBE_DESTINATIONS: DestinationName[] = ['aws_s3', 'eu_provider', 'local'];

/**
 * pass: as it should be. warn: works, but something recommended is missing (with its fix).
 * fail: the push cannot work. unsupported: the server does not offer it. skipped: not checked
 * because an earlier check failed.
 */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'unsupported' | 'skipped';

export interface ProbeCheck {
  id: string;
  ok: boolean;
  status: CheckStatus;
  message: string;
  fix?: ProbeFix;
  duration_ms: number;
  details?: Record<string, string | number | boolean | null>;
}

export interface DestinationProbe {
  name: DestinationName;
  type: string;
  target: string;
  enabled: boolean;
  /** Every check passed (or is one the server does not support). */
  ok: boolean;
  /** No check failed: the push can work, even if something recommended is missing. */
  usable: boolean;
  checks: ProbeCheck[];
  duration_ms: number;
}

export interface AppliedFix {
  id: string;
  /** The fix is in place now. */
  ok: boolean;
  /** Something was changed by this request. */
  changed: boolean;
  message: string;
}

export interface ProbeReport {
  ok: boolean;
  usable: boolean;
  message: string;
  destinations: DestinationProbe[];
  applied: AppliedFix[];
  duration_ms: number;
}

export interface ProbeOptions {
  /** Only this destination (enabled or not); default every enabled one. */
  destination?: DestinationName;
  /** Fix ids to apply (the owner's explicit request); the checks then run again. */
  apply?: string[];
  /** Bound of each network call; default 15 s. */
  timeoutMs?: number;
}

/** A request that cannot be carried out as asked: the API answers 400 with this. */
export class ProbeRequestError extends Error {
  override name = 'ProbeRequestError';
  constructor(
    readonly code: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** Storage classes a lifecycle rule may move old versions to, for the check to count it. */
const ARCHIVE_CLASSES = ['GLACIER', 'DEEP_ARCHIVE', 'GLACIER_IR'];
/** Objects in these classes cannot be read without a restore: the probe compares checksums. */
const COLD_CLASSES = ['GLACIER', 'DEEP_ARCHIVE'];
const LIFECYCLE_RULE_ID = 'backupd-noncurrent-to-glacier';
const NONCURRENT_DAYS = 30;

type S3FixKey = 'enable_versioning' | 'default_encryption' | 'lifecycle_glacier';

/** The fixes this module can apply, by the kind of destination. */
const AUTOMATIC_FIXES: Record<'s3' | 'sftp' | 'local', S3FixKey[]> = {
  s3: ['enable_versioning', 'default_encryption', 'lifecycle_glacier'],
  sftp: [],
  local: [],
};

const kindOf = (d: DestinationDescription): 's3' | 'sftp' | 'local' =>
  d.type === 'local' ? 'local' : d.type === 'hetzner_storage_box' ? 'sftp' : 's3';

/** The destinations a request tests. */
export function probedDestinations(runtime: Runtime, destination?: DestinationName) {
  if (destination) return [destination];
  return PROBE_DESTINATIONS.filter((d) => runtime.config.destinations[d].enabled);
}

/**
 * Checks the fix ids of a request before anything runs: each must name a destination being
 * tested and a fix that can be applied automatically to that kind of destination.
 */
export function checkFixIds(runtime: Runtime, opts: ProbeOptions): void {
  const tested = probedDestinations(runtime, opts.destination);
  for (const id of opts.apply ?? []) {
    const [dest, key, ...rest] = id.split('.');
    if (!dest || !key || rest.length) {
      throw new ProbeRequestError(
        'unknown_fix',
        `"${id}" is not a fix id: fix ids look like aws_s3.enable_versioning.`,
        'Run the test without `apply` first: each check that can be put right names its fix id.',
      );
    }
    if (!PROBE_DESTINATIONS.includes(dest as DestinationName)) {
      throw new ProbeRequestError(
        'unknown_fix',
        `"${id}" names no destination: the destinations are ${PROBE_DESTINATIONS.join(', ')}.`,
        'Use a fix id from the answer of a test without `apply`.',
      );
    }
    if (!tested.includes(dest as DestinationName)) {
      throw new ProbeRequestError(
        'unknown_fix',
        `"${id}" is for ${dest}, which this request does not test (${opts.destination ? `only ${opts.destination} is named` : `${dest} is not enabled`}).`,
        `Name it: {"destination": "${dest}", "apply": ["${id}"]}.`,
      );
    }
    const kind = kindOf(describeDestination(runtime, dest as DestinationName));
    const allowed = AUTOMATIC_FIXES[kind] as string[];
    if (!allowed.includes(key)) {
      throw new ProbeRequestError(
        'unknown_fix',
        `"${id}" is not a fix backupd can apply to ${dest}: ${allowed.length ? `those are ${allowed.map((k) => `${dest}.${k}`).join(', ')}` : 'none can be applied automatically there'}.`,
        'Other fixes say what to do by hand (their `automatic` is false).',
      );
    }
  }
}

/** Runs the checks, applies the fixes asked for, and checks again where something was applied. */
export async function probeDestinations(
  runtime: Runtime,
  opts: ProbeOptions = {},
): Promise<ProbeReport> {
  checkFixIds(runtime, opts);
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const names = probedDestinations(runtime, opts.destination);
  const applied: AppliedFix[] = [];
  const destinations = await Promise.all(
    names.map(async (name) => {
      const wanted = [...new Set(opts.apply ?? [])].filter((id) => id.startsWith(`${name}.`));
      let report = await probeOne(runtime, name, timeoutMs);
      if (wanted.length) {
        const results = await applyFixes(runtime, name, report, wanted, timeoutMs);
        applied.push(...results);
        if (results.some((r) => r.changed)) report = await probeOne(runtime, name, timeoutMs);
      }
      return report;
    }),
  );
  // In the order asked for, whichever destination answered first.
  const order = opts.apply ?? [];
  applied.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const ok = destinations.length > 0 && destinations.every((d) => d.ok);
  const usable = destinations.length > 0 && destinations.every((d) => d.usable);
  const message =
    destinations.length === 0
      ? 'No destination is enabled: nothing was tested. Enable one in the configuration, or name one with `destination`.'
      : ok
        ? `All ${destinations.length} destination(s) passed every check.`
        : destinations
            .filter((d) => !d.ok)
            .map(
              (d) =>
                `${d.name}: ${d.checks
                  .filter((c) => c.status === 'fail' || c.status === 'warn')
                  .map((c) => c.message)
                  .join(' ')}`,
            )
            .join(' ');
  return { ok, usable, message, destinations, applied, duration_ms: Date.now() - started };
}

/** The checks of one destination; whatever goes wrong ends up in a check, never thrown. */
async function probeOne(
  runtime: Runtime,
  name: DestinationName,
  timeoutMs: number,
): Promise<DestinationProbe> {
  const started = Date.now();
  const d = describeDestination(runtime, name);
  const checks = new CheckList();
  try {
    if (d.problem) {
      checks.add('config', { status: 'fail', message: d.problem.message }, 0, {
        id: `${name}.config`,
        description: d.problem.fix,
        automatic: false,
      });
    } else if (kindOf(d) === 'local') await probeLocal(runtime, d, checks);
    else if (kindOf(d) === 'sftp') await probeSftp(d, checks, timeoutMs);
    else await probeS3(name, d.s3!, checks, timeoutMs);
  } catch (err) {
    // A bug here must not hide the other destinations' results.
    checks.add('internal', {
      status: 'fail',
      message: `the test itself failed: ${(err as Error).message ?? String(err)}`,
    });
  }
  const list = checks.list;
  return {
    name,
    type: d.type,
    target: d.target,
    enabled: runtime.config.destinations[name].enabled,
    ok: list.every((c) => c.status === 'pass' || c.status === 'unsupported'),
    usable: list.every((c) => c.status !== 'fail' && c.status !== 'skipped'),
    checks: list,
    duration_ms: Date.now() - started,
  };
}

class CheckList {
  readonly list: ProbeCheck[] = [];
  /** Why the remaining checks cannot run, once one that they depend on failed. */
  blocked: string | undefined;

  add(
    id: string,
    r: { status: CheckStatus; message: string; fix?: ProbeFix },
    durationMs = 0,
    fix?: ProbeFix,
    details?: ProbeCheck['details'],
  ): ProbeCheck {
    const check: ProbeCheck = {
      id,
      ok: r.status === 'pass',
      status: r.status,
      message: r.message,
      ...(r.fix || fix ? { fix: r.fix ?? fix } : {}),
      duration_ms: durationMs,
      ...(details ? { details } : {}),
    };
    this.list.push(check);
    return check;
  }

  /** Runs a check unless an earlier one blocks it; its time is measured. */
  async run(
    id: string,
    fn: () => Promise<{
      status: CheckStatus;
      message: string;
      fix?: ProbeFix;
      details?: ProbeCheck['details'];
    }>,
    opts: { blocksOthers?: boolean } = {},
  ): Promise<ProbeCheck> {
    if (this.blocked)
      return this.add(id, { status: 'skipped', message: `not checked: ${this.blocked}` });
    const started = Date.now();
    const r = await fn();
    const check = this.add(id, r, Date.now() - started, undefined, r.details);
    if (opts.blocksOthers && r.status === 'fail') this.blocked = `${id} failed`;
    return check;
  }
}

const probeName = () => `probe-${randomBytes(6).toString('hex')}`;
const probeBody = () =>
  Buffer.from(
    `backupd configuration test ${new Date().toISOString()} ${randomBytes(16).toString('hex')}\n`,
  );

// ---------------------------------------------------------------------------------------------
// S3

interface S3Context {
  name: DestinationName;
  s: S3Settings;
  client: S3Client;
  sdk: Awaited<ReturnType<typeof loadS3Sdk>>;
  timeoutMs: number;
  explain(err: unknown, doing: string): Explained;
}

const serverOf = (s: S3Settings) => s.endpoint ?? `AWS S3 (region ${s.region ?? 'us-east-1'})`;

const credentialKeys = (name: DestinationName) =>
  name === 'aws_s3'
    ? {
        id: 'destinations.aws_s3.access_key_id',
        secret: 'destinations.aws_s3.secret_access_key',
        idEnv: 'AWS_ACCESS_KEY_ID',
        secretEnv: 'AWS_SECRET_ACCESS_KEY',
      }
    : {
        id: 'destinations.eu_provider.access_key',
        secret: 'destinations.eu_provider.secret_key',
        idEnv: 'EU_PROVIDER_ACCESS_KEY',
        secretEnv: 'EU_PROVIDER_SECRET_KEY',
      };

async function s3Context(
  name: DestinationName,
  s: S3Settings,
  timeoutMs: number,
): Promise<S3Context> {
  const sdk = await loadS3Sdk();
  const client = await makeS3Client(s, { timeoutMs });
  const explain = (err: unknown, doing: string) =>
    explainS3Error(err, {
      destination: name,
      bucket: s.bucket,
      server: serverOf(s),
      region: s.region ?? 'us-east-1',
      doing,
      keys: credentialKeys(name),
      timeoutMs,
    });
  return {
    name,
    s,
    client,
    sdk,
    timeoutMs,
    explain,
  };
}

/** Whether an SDK error is the server saying "this setting was never made". */
const isCode = (err: unknown, ...codes: string[]) => {
  const e = err as { name?: string; Code?: string };
  return codes.includes(e?.Code ?? '') || codes.includes(e?.name ?? '');
};

async function probeS3(
  name: DestinationName,
  s: S3Settings,
  checks: CheckList,
  timeoutMs: number,
): Promise<void> {
  const ctx = await s3Context(name, s, timeoutMs);
  try {
    await checks.run('connect', () => checkS3Connect(ctx), { blocksOthers: true });
    await checks.run('probe', () => checkS3Probe(ctx));
    const versioning = await checks.run('versioning', () => checkS3Versioning(ctx));
    await checks.run('encryption', () => checkS3Encryption(ctx));
    await checks.run('lifecycle', () => checkS3Lifecycle(ctx, versioning.status === 'pass'));
  } finally {
    ctx.client.destroy();
  }
}

const where = (s: S3Settings) =>
  `bucket "${s.bucket}"${s.prefix ? ` under ${s.prefix}/` : ''} at ${serverOf(s)}`;

async function checkS3Connect(ctx: S3Context) {
  const { sdk, s } = ctx;
  try {
    await ctx.client.send(
      new sdk.ListObjectsCommand({
        Bucket: s.bucket,
        Prefix: s.prefix ? `${s.prefix}/` : undefined,
        MaxKeys: 1,
      }),
      { abortSignal: AbortSignal.timeout(ctx.timeoutMs) },
    );
    return {
      status: 'pass' as const,
      message: `the credentials work and ${where(s)} can be listed.`,
    };
  } catch (err) {
    return ctx.explain(err, 'list the bucket');
  }
}

async function checkS3Probe(ctx: S3Context) {
  const { sdk, s, client } = ctx;
  const key = `${s.prefix ? `${s.prefix}/` : ''}.backupd/${probeName()}`;
  const body = probeBody();
  const signal = () => ({ abortSignal: AbortSignal.timeout(ctx.timeoutMs) });
  const cold = COLD_CLASSES.includes(s.storageClass ?? '');
  const options = [
    s.storageClass ? `storage class ${s.storageClass}` : '',
    s.serverSideEncryption ? `encryption ${s.serverSideEncryption}` : '',
  ].filter(Boolean);
  let versionId: string | undefined;
  try {
    const put = await client.send(
      new sdk.PutObjectCommand({
        Bucket: s.bucket,
        Key: key,
        Body: body,
        ContentLength: body.length,
        // The push's own upload options: a server that refuses them fails here, not mid-backup.
        StorageClass: s.storageClass as StorageClass | undefined,
        ServerSideEncryption: s.serverSideEncryption as ServerSideEncryption | undefined,
      }),
      signal(),
    );
    versionId = put.VersionId;
  } catch (err) {
    const e = ctx.explain(err, 'write an object');
    if (
      options.length &&
      isCode(err, 'InvalidArgument', 'InvalidRequest', 'InvalidStorageClass', 'NotImplemented')
    )
      return {
        status: 'fail' as const,
        message: `${serverOf(s)} refuses uploads with the options backupd uses (${options.join(', ')}): ${e.message}`,
        fix: {
          id: `${ctx.name}.upload_options`,
          description: `Set destinations.${ctx.name}.storage_class and server_side_encryption to what this server offers (STANDARD and none are accepted everywhere; many S3-compatible servers refuse encryption over plain http).`,
          automatic: false,
        },
      };
    return e;
  }

  let readBack: string;
  try {
    if (cold) {
      // A Glacier object cannot be read without a restore: compare its checksum instead.
      const head = await client.send(
        new sdk.HeadObjectCommand({ Bucket: s.bucket, Key: key }),
        signal(),
      );
      const md5 = createHash('md5').update(body).digest('hex');
      if (head.ContentLength !== body.length || head.ETag?.replace(/"/g, '') !== md5)
        throw new Error('what the server holds differs from what was written');
      readBack = 'its checksum read back';
    } else {
      const got = await client.send(
        new sdk.GetObjectCommand({ Bucket: s.bucket, Key: key }),
        signal(),
      );
      const bytes = Buffer.from((await got.Body?.transformToByteArray()) ?? []);
      if (!bytes.equals(body)) throw new Error('what was read back differs from what was written');
      readBack = 'read back identical';
    }
  } catch (err) {
    await deleteProbe(ctx, key, versionId);
    if (err instanceof Error && /differs/.test(err.message))
      return {
        status: 'fail' as const,
        message: `${where(s)}: ${err.message}: the server, or something between, changes data.`,
      };
    return ctx.explain(err, 'read an object back');
  }

  const deleted = await deleteProbe(ctx, key, versionId);
  if (deleted.error) return deleted.error;
  return {
    status: 'pass' as const,
    message: `wrote ${key} (${body.length} bytes${options.length ? `, ${options.join(', ')}` : ''}), ${readBack}, and deleted it${deleted.note}.`,
    details: { key, bytes: body.length },
  };
}

/**
 * Removes the probe object. With versioning on, the version written is deleted itself, so no
 * old version or delete marker is left behind; a key without that right deletes the plain way.
 */
async function deleteProbe(
  ctx: S3Context,
  key: string,
  versionId: string | undefined,
): Promise<{ note: string; error?: Explained }> {
  const { sdk, s, client } = ctx;
  const signal = () => ({ abortSignal: AbortSignal.timeout(ctx.timeoutMs) });
  if (versionId) {
    try {
      await client.send(
        new sdk.DeleteObjectCommand({ Bucket: s.bucket, Key: key, VersionId: versionId }),
        signal(),
      );
      return { note: ' (with its version)' };
    } catch (err) {
      if (!isCode(err, 'AccessDenied'))
        return { note: '', error: ctx.explain(err, 'delete an object version') };
    }
  }
  try {
    await client.send(new sdk.DeleteObjectCommand({ Bucket: s.bucket, Key: key }), signal());
    return {
      note: versionId
        ? ' (the bucket keeps it as an old version: the key may not delete versions)'
        : '',
    };
  } catch (err) {
    return { note: '', error: ctx.explain(err, 'delete an object') };
  }
}

function versioningFix(ctx: S3Context): ProbeFix {
  return {
    id: `${ctx.name}.enable_versioning`,
    description: `Turns on versioning for the whole bucket "${ctx.s.bucket}": from then on, S3 keeps every overwritten or deleted object as an older version, so a mistake, a bug or ransomware on this machine cannot destroy the copy. Those versions are billed like any stored data until a lifecycle rule moves or expires them. Versioning cannot be turned off again, only suspended.`,
    automatic: true,
  };
}

async function checkS3Versioning(ctx: S3Context) {
  const { sdk, s } = ctx;
  try {
    const v = await ctx.client.send(new sdk.GetBucketVersioningCommand({ Bucket: s.bucket }), {
      abortSignal: AbortSignal.timeout(ctx.timeoutMs),
    });
    if (v.Status === 'Enabled')
      return {
        status: 'pass' as const,
        message: `versioning is on: overwritten and deleted objects are kept as old versions.`,
      };
    return {
      status: 'warn' as const,
      message: `versioning is ${v.Status === 'Suspended' ? 'suspended' : 'off'} on bucket "${s.bucket}": an object overwritten or deleted by mistake (or by ransomware on this machine) is gone for good, apart from backupd's own .trash/.`,
      fix: versioningFix(ctx),
    };
  } catch (err) {
    return settingUnreadable(ctx, err, 'the versioning setting');
  }
}

function encryptionFix(ctx: S3Context): ProbeFix {
  return {
    id: `${ctx.name}.default_encryption`,
    description: `Sets the default encryption of bucket "${ctx.s.bucket}" to SSE-S3 (AES-256, keys held by the provider): every object written from then on is encrypted at rest, whoever writes it. Objects already there are not re-encrypted. No extra cost on AWS.`,
    automatic: true,
  };
}

async function checkS3Encryption(ctx: S3Context) {
  const { sdk, s } = ctx;
  let algorithm: string | undefined;
  try {
    const e = await ctx.client.send(new sdk.GetBucketEncryptionCommand({ Bucket: s.bucket }), {
      abortSignal: AbortSignal.timeout(ctx.timeoutMs),
    });
    algorithm = e.ServerSideEncryptionConfiguration?.Rules?.find(
      (r) => r.ApplyServerSideEncryptionByDefault?.SSEAlgorithm,
    )?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm;
  } catch (err) {
    if (!isCode(err, 'ServerSideEncryptionConfigurationNotFoundError'))
      return settingUnreadable(ctx, err, 'the default encryption');
  }
  if (algorithm)
    return {
      status: 'pass' as const,
      message: `objects are encrypted at rest by default (${algorithm === 'AES256' ? 'SSE-S3, AES256' : algorithm}).`,
    };
  if (s.serverSideEncryption)
    return {
      status: 'pass' as const,
      message: `bucket "${s.bucket}" has no default encryption, but backupd asks for ${s.serverSideEncryption} on every upload.`,
    };
  return {
    status: 'warn' as const,
    message: `bucket "${s.bucket}" has no default encryption and backupd asks for none: objects are stored unencrypted at rest.`,
    fix: encryptionFix(ctx),
  };
}

/** The prefix a rule applies to, or undefined when it filters on something else (tags, sizes). */
function rulePrefix(r: LifecycleRule): string | undefined {
  const f = r.Filter;
  if (f?.Tag || f?.And?.Tags?.length) return undefined;
  return f?.Prefix ?? f?.And?.Prefix ?? r.Prefix ?? '';
}

const coversPrefix = (r: LifecycleRule, prefix: string) => {
  const p = rulePrefix(r);
  return p !== undefined && (p === '' || `${prefix}/`.startsWith(p));
};

function lifecycleFix(ctx: S3Context): ProbeFix {
  const scope = ctx.s.prefix ? `objects under ${ctx.s.prefix}/` : 'the whole bucket';
  const prices =
    ctx.s.provider === 'AWS'
      ? ' On AWS (us-east-1 list prices) Glacier Flexible Retrieval storage costs about $0.0036 per GB-month against $0.023 for Standard, each object moved costs about $0.00003, each stays billed for at least 90 days, and reading one back takes minutes to hours plus a retrieval fee.'
      : " Whether this server offers a Glacier class, and at what price, is the provider's: check its documentation.";
  return {
    id: `${ctx.name}.lifecycle_glacier`,
    description: `Adds the lifecycle rule "${LIFECYCLE_RULE_ID}" to bucket "${ctx.s.bucket}" (for ${scope}; rules already there are kept): ${NONCURRENT_DAYS} days after an object version stops being current (it was overwritten or deleted), it moves to the GLACIER storage class. Current objects are not touched.${prices}`,
    automatic: true,
  };
}

async function checkS3Lifecycle(ctx: S3Context, versioningOn: boolean) {
  const { sdk, s } = ctx;
  let rules: LifecycleRule[] = [];
  try {
    const l = await ctx.client.send(
      new sdk.GetBucketLifecycleConfigurationCommand({ Bucket: s.bucket }),
      {
        abortSignal: AbortSignal.timeout(ctx.timeoutMs),
      },
    );
    rules = l.Rules ?? [];
  } catch (err) {
    if (!isCode(err, 'NoSuchLifecycleConfiguration'))
      return settingUnreadable(ctx, err, 'the lifecycle rules');
  }
  const rule = rules.find(
    (r) =>
      r.Status === 'Enabled' &&
      coversPrefix(r, s.prefix) &&
      r.NoncurrentVersionTransitions?.some((t) => ARCHIVE_CLASSES.includes(t.StorageClass ?? '')),
  );
  if (rule) {
    const t = rule.NoncurrentVersionTransitions!.find((x) =>
      ARCHIVE_CLASSES.includes(x.StorageClass ?? ''),
    )!;
    return {
      status: 'pass' as const,
      message: `lifecycle rule "${rule.ID ?? '(no id)'}" moves old versions to ${t.StorageClass} after ${t.NoncurrentDays ?? 0} days${versioningOn ? '' : ' (it takes effect once versioning is on)'}.`,
    };
  }
  return {
    status: 'warn' as const,
    message: `no lifecycle rule moves old versions in bucket "${s.bucket}" to Glacier${versioningOn ? ": they stay in the bucket's storage class and cost as much as current data" : ' (with versioning on, old versions would stay at the full storage price)'}.`,
    fix: lifecycleFix(ctx),
  };
}

/** A bucket setting that could not be read: unsupported, or what the error says. */
function settingUnreadable(ctx: S3Context, err: unknown, what: string) {
  const e = ctx.explain(err, `read ${what}`);
  if (e.status === 'unsupported')
    return {
      status: 'unsupported' as const,
      message: `${serverOf(ctx.s)} does not support ${what} (it answers NotImplemented).`,
    };
  // The push can work without reading it: a warning, not a failure.
  return {
    status: 'warn' as const,
    message: `${what} could not be read: ${e.message}`,
    ...(e.fix ? { fix: e.fix } : {}),
  };
}

async function applyFixes(
  runtime: Runtime,
  name: DestinationName,
  report: DestinationProbe,
  ids: string[],
  timeoutMs: number,
): Promise<AppliedFix[]> {
  const d = describeDestination(runtime, name);
  const out: AppliedFix[] = [];
  const offered = new Map(report.checks.filter((c) => c.fix).map((c) => [c.fix!.id, c]));
  let ctx: S3Context | undefined;
  try {
    for (const id of ids) {
      const check = offered.get(id);
      const key = id.slice(name.length + 1) as S3FixKey;
      const checkId = {
        enable_versioning: 'versioning',
        default_encryption: 'encryption',
        lifecycle_glacier: 'lifecycle',
      }[key];
      const current = report.checks.find((c) => c.id === checkId);
      if (!check) {
        out.push(
          current?.status === 'pass'
            ? {
                id,
                ok: true,
                changed: false,
                message: `already in place: ${current.message} Nothing was changed.`,
              }
            : {
                id,
                ok: false,
                changed: false,
                message: `not applied: ${current ? current.message : 'the destination could not be tested'}`,
              },
        );
        continue;
      }
      ctx ??= await s3Context(name, d.s3!, timeoutMs);
      out.push(await applyS3Fix(ctx, id, key));
    }
  } finally {
    ctx?.client.destroy();
  }
  return out;
}

async function applyS3Fix(ctx: S3Context, id: string, key: S3FixKey): Promise<AppliedFix> {
  const { sdk, s, client } = ctx;
  const signal = () => ({ abortSignal: AbortSignal.timeout(ctx.timeoutMs) });
  try {
    if (key === 'enable_versioning') {
      await client.send(
        new sdk.PutBucketVersioningCommand({
          Bucket: s.bucket,
          VersioningConfiguration: { Status: 'Enabled' },
        }),
        signal(),
      );
      return {
        id,
        ok: true,
        changed: true,
        message: `versioning turned on for bucket "${s.bucket}".`,
      };
    }
    if (key === 'default_encryption') {
      await client.send(
        new sdk.PutBucketEncryptionCommand({
          Bucket: s.bucket,
          ServerSideEncryptionConfiguration: {
            Rules: [{ ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
          },
        }),
        signal(),
      );
      return {
        id,
        ok: true,
        changed: true,
        message: `default encryption of bucket "${s.bucket}" set to SSE-S3 (AES256).`,
      };
    }
    // The lifecycle configuration is replaced whole: keep every rule already there.
    let rules: LifecycleRule[] = [];
    try {
      const l = await client.send(
        new sdk.GetBucketLifecycleConfigurationCommand({ Bucket: s.bucket }),
        signal(),
      );
      rules = l.Rules ?? [];
    } catch (err) {
      if (!isCode(err, 'NoSuchLifecycleConfiguration')) throw err;
    }
    const kept = rules
      .filter((r) => r.ID !== LIFECYCLE_RULE_ID)
      // A rule read back in the old form (Prefix beside, not inside, Filter) is written in the
      // new one: S3 refuses a configuration that mixes both.
      .map((r) =>
        r.Filter || r.Prefix === undefined
          ? r
          : { ...r, Prefix: undefined, Filter: { Prefix: r.Prefix } },
      );
    await client.send(
      new sdk.PutBucketLifecycleConfigurationCommand({
        Bucket: s.bucket,
        LifecycleConfiguration: {
          Rules: [
            ...kept,
            {
              ID: LIFECYCLE_RULE_ID,
              Status: 'Enabled',
              Filter: { Prefix: s.prefix ? `${s.prefix}/` : '' },
              NoncurrentVersionTransitions: [
                { NoncurrentDays: NONCURRENT_DAYS, StorageClass: 'GLACIER' },
              ],
            },
          ],
        },
      }),
      signal(),
    );
    return {
      id,
      ok: true,
      changed: true,
      message: `lifecycle rule "${LIFECYCLE_RULE_ID}" added to bucket "${s.bucket}"${kept.length ? ` beside ${kept.length} rule(s) already there` : ''}: old versions move to GLACIER after ${NONCURRENT_DAYS} days.`,
    };
  } catch (err) {
    const e = ctx.explain(err, 'change the bucket settings');
    return {
      id,
      ok: false,
      changed: false,
      message:
        e.status === 'unsupported'
          ? `not applied: ${serverOf(s)} does not support this setting.`
          : isCode(err, 'InvalidArgument', 'InvalidRequest', 'MalformedXML')
            ? `not applied: ${serverOf(s)} refused the setting (${(err as { name?: string }).name}); it may not offer it.`
            : `not applied: ${e.message}`,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// SFTP (a Storage Box)

/** A command run to completion, bounded; its exit code and output. */
function runCommand(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{
  code: number;
  stdout: string;
  stderr: string;
  missing?: boolean;
  timedOut?: boolean;
}> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ code: -1, stdout, stderr: err.message, missing: err.code === 'ENOENT' }),
    );
    child.on('close', (code, signal) =>
      resolve({
        code: code ?? -1,
        stdout,
        stderr,
        timedOut: signal === 'SIGTERM' && code === null,
      }),
    );
  });
}

async function probeSftp(
  d: DestinationDescription,
  checks: CheckList,
  timeoutMs: number,
): Promise<void> {
  const s = d.sftp!;
  const remote = d.remote!;
  const name = d.name;
  const dest = `destinations.${name}`;
  const missing = [
    !s.host && `${dest}.host`,
    !s.user && `${dest}.user`,
    !s.keyFile && `${dest}.ssh_key_file`,
  ].filter(Boolean);
  if (missing.length) {
    checks.add('config', { status: 'fail', message: `${missing.join(', ')} not set.` }, 0, {
      id: `${name}.config`,
      description: `Set ${missing.join(' and ')} (docs/configuration.md).`,
      automatic: false,
    });
    return;
  }
  const explainCtx = {
    destination: name,
    host: s.host!,
    port: s.port,
    user: s.user!,
    keyFile: s.keyFile!,
    knownHostsFile: s.knownHostsFile,
    path: remote.root,
    timeoutMs,
  };
  const explain = (text: string) => explainSftpError(text, explainCtx);
  // Bounded rclone: one attempt, short network timeouts, and killed if it overstays anyway.
  const rclone = async (args: string[], stdout = false) => {
    const lines: string[] = [];
    const onLine = (l: RcloneLogLine) => {
      if (l.level !== 'debug') lines.push(l.msg);
    };
    const secs = `${Math.max(1, Math.round(timeoutMs / 1000))}s`;
    try {
      const r = await runRclone(
        [
          '--contimeout',
          secs,
          '--timeout',
          secs,
          '--low-level-retries',
          '1',
          '--retries',
          '1',
          ...args,
        ],
        { remotes: remote.env, onLine, signal: AbortSignal.timeout(timeoutMs * 2), stdout },
      );
      return { ...r, text: lines.join('\n') };
    } catch (err) {
      return {
        code: -1,
        stdout: '',
        tail: [],
        text: `${lines.join('\n')}\n${(err as Error).name}: ${(err as Error).message}`,
      };
    }
  };
  const base = `${remote.remote}:${remote.root}`;

  await checks.run('host_key', async () =>
    s.knownHostsFile
      ? {
          status: 'pass' as const,
          message: `the host key of ${s.host} is checked against ${s.knownHostsFile}.`,
        }
      : {
          status: 'warn' as const,
          message: `no known_hosts file is set: any server answering at ${s.host}:${s.port} is trusted, so a machine in between could receive the backup.`,
          fix: {
            id: `${name}.host_key`,
            description: `Run \`ssh-keyscan -p ${s.port} ${s.host} > /etc/backupd/known_hosts\`, compare the fingerprint (\`ssh-keygen -lf /etc/backupd/known_hosts\`) with the one your provider shows, and set ${dest}.known_hosts_file: /etc/backupd/known_hosts.`,
            automatic: false,
          },
        },
  );

  await checks.run(
    'connect',
    async () => {
      const r = await rclone(['lsf', '--max-depth', '1', `${remote.remote}:`]);
      if (r.code === 0)
        return {
          status: 'pass' as const,
          message: `logged in to ${s.host}:${s.port} as ${s.user} with ${s.keyFile}.`,
        };
      return explain(r.text);
    },
    { blocksOthers: true },
  );

  await checks.run('probe', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'backupd-probe-'));
    const file = probeName();
    const at = `${remote.root ? `${remote.root}/` : ''}.backupd/${file}`;
    try {
      const body = probeBody();
      await writeFile(join(dir, file), body);
      const put = await rclone(['copyto', join(dir, file), `${base}/.backupd/${file}`]);
      if (put.code !== 0) return explain(put.text);
      const got = await rclone(['cat', `${base}/.backupd/${file}`], true);
      const del = await rclone(['deletefile', `${base}/.backupd/${file}`]);
      if (got.code !== 0) return explain(got.text);
      if (got.stdout !== body.toString('utf8'))
        return {
          status: 'fail' as const,
          message: `${at} read back differs from what was written: the box, or something between, changes data.`,
        };
      if (del.code !== 0) return explain(del.text);
      return {
        status: 'pass' as const,
        message: `wrote ${at} (${body.length} bytes) on ${s.host}, read it back identical, and deleted it.`,
        details: { path: at, bytes: body.length },
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  await checks.run('rsync', async () => {
    const fixLocal = {
      id: `${name}.rsync`,
      description:
        'Install rsync on this machine: `apt-get install rsync` (the appliance image has it).',
      automatic: false,
    };
    const here = await runCommand('rsync', ['--version'], timeoutMs);
    if (here.missing || here.code !== 0)
      return {
        status: 'fail' as const,
        message:
          'rsync is not installed on this machine: files changed in part cannot be sent as differences.',
        fix: fixLocal,
      };
    // Exactly the ssh command the push's rsync uses (rsync.ts), so this tests what it will do.
    const [ssh, ...args] = sshCommand(
      {
        host: s.host!,
        port: s.port,
        user: s.user!,
        keyFile: s.keyFile,
        knownHostsFile: s.knownHostsFile,
      },
      Math.max(1, Math.round(timeoutMs / 1000)),
    );
    const there = await runCommand(
      ssh!,
      [...args, `${s.user}@${s.host}`, 'rsync', '--version'],
      timeoutMs * 2,
    );
    if (there.missing)
      return {
        status: 'fail' as const,
        message: 'ssh is not installed on this machine, and rsync needs it to reach the box.',
        fix: { ...fixLocal, description: 'Install it: `apt-get install openssh-client`.' },
      };
    const version = /rsync\s+version\s+(\S+)/.exec(there.stdout)?.[1];
    if (there.code === 0 && version)
      return {
        status: 'pass' as const,
        message: `rsync ${version} answers on ${s.host}: files changed in part are sent as differences.`,
        details: { version },
      };
    if (
      there.code === 127 ||
      /not found|unknown command|not allowed|command not/i.test(there.stderr)
    )
      return {
        status: 'fail' as const,
        message: `rsync is not available on ${s.host} over ssh: files changed in part would be sent whole.`,
        fix: {
          id: `${name}.rsync`,
          description: `Enable SSH support on the box (for a Hetzner Storage Box: "SSH support" in its settings; rsync is then on port 23), or install rsync on the server.`,
          automatic: false,
        },
      };
    return explain(there.timedOut ? 'timed out' : there.stderr || there.stdout);
  });
}

// ---------------------------------------------------------------------------------------------
// A local folder (a second disk)

async function nearestExisting(path: string): Promise<string> {
  let p = path;
  for (;;) {
    try {
      await stat(p);
      return p;
    } catch {
      const up = dirname(p);
      if (up === p) return p;
      p = up;
    }
  }
}

const gb = (n: number) => `${(n / 1e9).toFixed(n < 1e10 ? 2 : 0)} GB`;

async function probeLocal(
  runtime: Runtime,
  d: DestinationDescription,
  checks: CheckList,
): Promise<void> {
  const name = d.name;
  const pathKey = name === 'local' ? 'destinations.local.path' : 'destinations.eu_provider.path';
  const folder = d.remote?.root ?? d.target;
  if (!folder) {
    checks.add('config', { status: 'fail', message: `${pathKey} is not set.` }, 0, {
      id: `${name}.config`,
      description: `Set ${pathKey} to the folder of the copy, e.g. the mount point of a second disk.`,
      automatic: false,
    });
    return;
  }
  const explain = (err: unknown, doing: string) =>
    explainLocalError(err, { destination: name, path: folder, doing, pathKey });

  await checks.run(
    'folder',
    async () => {
      try {
        const st = await stat(folder);
        if (!st.isDirectory()) return explain({ code: 'ENOTDIR' }, 'use the folder');
        return { status: 'pass' as const, message: `${folder} is there.` };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          return explain(err, 'look at the folder');
      }
      try {
        // The first push would create it too; made now, the next checks can write in it.
        await mkdir(folder, { recursive: true });
        return { status: 'pass' as const, message: `${folder} did not exist and was created.` };
      } catch (err) {
        return explain(err, 'create the folder');
      }
    },
    { blocksOthers: true },
  );

  await checks.run('probe', async () => {
    const meta = join(folder, '.backupd');
    const file = join(meta, probeName());
    let made = false;
    try {
      try {
        await stat(meta);
      } catch {
        await mkdir(meta);
        made = true;
      }
      const body = probeBody();
      await writeFile(file, body);
      const back = await readFile(file);
      await unlink(file);
      if (made) await rmdir(meta).catch(() => {});
      if (!back.equals(body))
        return {
          status: 'fail' as const,
          message: `${file} read back differs from what was written: the disk is failing.`,
        };
      return {
        status: 'pass' as const,
        message: `wrote ${file} (${body.length} bytes), read it back identical, and deleted it.`,
        details: { path: file, bytes: body.length },
      };
    } catch (err) {
      await unlink(file).catch(() => {});
      if (made) await rmdir(meta).catch(() => {});
      return explain(err, 'write a file');
    }
  });

  await checks.run('space', async () => {
    try {
      const fs = await statfs(folder);
      const free = fs.bavail * fs.bsize;
      const total = fs.blocks * fs.bsize;
      return {
        status: 'pass' as const,
        message: `${gb(free)} free of ${gb(total)} on the disk of ${folder}.`,
        details: { free_bytes: free, total_bytes: total },
      };
    } catch (err) {
      return explain(err, 'read the free space');
    }
  });

  await checks.run('disk', async () => {
    const mirror = runtime.sourcePath('google_drive');
    const fix = {
      id: `${name}.disk`,
      description: `Mount the second disk (check with \`findmnt ${folder}\`) or point ${pathKey} at a folder on another disk.`,
      automatic: false,
    };
    try {
      const [here, theMirror, system] = await Promise.all([
        stat(folder),
        stat(await nearestExisting(mirror)),
        stat('/'),
      ]);
      if (here.dev === theMirror.dev)
        return {
          status: 'warn' as const,
          message: `${folder} is on the same disk as the mirror (${dirname(mirror)}): if that disk fails, the copy is lost with it. Is the second disk mounted?`,
          fix,
        };
      // An unmounted disk leaves its empty mount point on the system disk: the copy would then
      // fill the SD card or system disk, unnoticed.
      if (here.dev === system.dev)
        return {
          status: 'warn' as const,
          message: `${folder} is on the system disk, not on a disk of its own: is the second disk mounted?`,
          fix,
        };
      return { status: 'pass' as const, message: `${folder} is on a disk of its own.` };
    } catch (err) {
      return explain(err, 'compare the disks');
    }
  });
}
