// The S3 SDK client of the configuration test trusts what rclone trusts: the system's CA bundle
// (SSL_CERT_FILE first), never AWS_CA_BUNDLE, which rclone runs without.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeS3Client, systemCaBundle } from '../../src/push/s3-client.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-s3-client-');

describe('the S3 client', () => {
  it('takes the CA bundle from SSL_CERT_FILE, whatever AWS_CA_BUNDLE says', () => {
    const file = path.join(tmp(), 'ca.pem');
    writeFileSync(file, '-----BEGIN CERTIFICATE-----\nours\n-----END CERTIFICATE-----\n');
    expect(systemCaBundle({ SSL_CERT_FILE: file, AWS_CA_BUNDLE: '/nonexistent/ca.pem' })).toContain(
      'ours',
    );
  });

  it('is made with the destination settings, without reading AWS_CA_BUNDLE', async () => {
    const before = process.env.AWS_CA_BUNDLE;
    process.env.AWS_CA_BUNDLE = '/nonexistent/ca.pem';
    try {
      const client = await makeS3Client(
        {
          provider: 'Other',
          bucket: 'b-1',
          prefix: '',
          endpoint: 'https://s3.example.com',
          region: undefined,
          pathStyle: true,
          sslVerify: true,
          accessKeyId: 'AKIAEXAMPLE',
          secretAccessKey: 'secret-example-123',
        },
        { timeoutMs: 1000 },
      );
      expect(await client.config.region()).toBe('us-east-1');
      expect(client.config.forcePathStyle).toBe(true);
      client.destroy();
    } finally {
      if (before === undefined) delete process.env.AWS_CA_BUNDLE;
      else process.env.AWS_CA_BUNDLE = before;
    }
  });
});
