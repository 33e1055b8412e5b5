/**
 * An S3 client of the AWS SDK for one destination, built from the same settings as its rclone
 * remote (`S3Settings` from destinations.ts): same endpoint, region, addressing, TLS checks,
 * credentials. rclone cannot read or set a bucket's versioning, default encryption or
 * lifecycle rules, which is what the configuration test needs the SDK for.
 */
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import type { S3Settings } from './destinations.js';

export type S3Sdk = typeof import('@aws-sdk/client-s3');

let sdk: Promise<S3Sdk> | undefined;

/**
 * The SDK, loaded on first use only: it is large, and a daemon on a small board that never
 * runs a configuration test should not carry it in memory.
 */
export function loadS3Sdk(): Promise<S3Sdk> {
  // The SDK warns on Node 20 about its future releases (which will need Node 22). The lock file
  // pins a release that supports Node 20 (the oldest Node this project supports), so the
  // warning would only alarm the owner on the daemon's console.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  sdk ??= import('@aws-sdk/client-s3');
  return sdk;
}

/** CA bundles where Go (and so rclone) looks on Linux when SSL_CERT_FILE is not set. */
const SYSTEM_CA_FILES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
];

/**
 * The certificate authorities rclone trusts: the system's bundle (SSL_CERT_FILE, else the
 * distribution's file). Node would otherwise trust only its own built-in list, and a test
 * that passes where the push then fails on TLS (or the other way round) helps nobody.
 * AWS_CA_BUNDLE is deliberately not read: the JavaScript SDK ignores it anyway, and rclone
 * runs without it (see rcloneEnvironment), so both trust the same authorities.
 */
export function systemCaBundle(env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const file of [env.SSL_CERT_FILE, ...SYSTEM_CA_FILES]) {
    if (!file) continue;
    try {
      return readFileSync(file, 'utf8');
    } catch {
      // not there or not readable: the next candidate
    }
  }
  return undefined;
}

export async function makeS3Client(
  s: S3Settings,
  opts: { timeoutMs: number; maxAttempts?: number },
): Promise<S3Client> {
  const { S3Client } = await loadS3Sdk();
  const ca = systemCaBundle();
  return new S3Client({
    // rclone signs with us-east-1 when no region is given; so does this client.
    region: s.region || 'us-east-1',
    endpoint: s.endpoint,
    forcePathStyle: s.pathStyle,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    // Only what the configuration says: no AWS_ENDPOINT_URL_S3 or ~/.aws/config endpoint the
    // rclone remote would not use either.
    ignoreConfiguredEndpointUrls: true,
    // A wrong region is a finding to report (the push would fail), not something to follow.
    followRegionRedirects: false,
    maxAttempts: opts.maxAttempts ?? 2,
    // Recent SDKs add CRC32 checksums to every upload, which several S3-compatible servers
    // refuse; rclone sends none, so this client sends them only where S3 requires one.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: opts.timeoutMs,
      requestTimeout: opts.timeoutMs,
      httpsAgent: new Agent({
        rejectUnauthorized: s.sslVerify,
        ...(ca ? { ca } : {}),
      }),
    },
  });
}
