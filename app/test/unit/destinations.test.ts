// How each destination becomes an rclone remote: AWS's own features only on AWS, the
// provider endpoints by region, and a clear problem when credentials are missing.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText, resolveRuntime } from '../../src/config/index.js';
import { describeDestination } from '../../src/push/destinations.js';
import { tempDirs } from '../helpers/tmp.js';

const tmp = tempDirs('backupd-destinations-');

function runtime(yamlText: string, env: Record<string, string> = {}) {
  const dir = tmp();
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, yamlText);
  return resolveRuntime({ ...parseConfigText(yamlText, file), file }, env);
}
const keys = { AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE', AWS_SECRET_ACCESS_KEY: 'secret-example-123' };

describe('describeDestination', () => {
  it('asks AWS for Intelligent-Tiering and AES256 by default', () => {
    const d = describeDestination(
      runtime('destinations:\n  aws_s3:\n    enabled: true\n    bucket: my-backup\n', keys),
      'aws_s3',
    );
    expect(d.remote?.env).toMatchObject({
      RCLONE_CONFIG_BKP_AWS_S3_PROVIDER: 'AWS',
      RCLONE_CONFIG_BKP_AWS_S3_STORAGE_CLASS: 'INTELLIGENT_TIERING',
      RCLONE_CONFIG_BKP_AWS_S3_SERVER_SIDE_ENCRYPTION: 'AES256',
    });
    expect(d.remote?.env.RCLONE_CONFIG_BKP_AWS_S3_ENDPOINT).toBeUndefined();
  });

  it('leaves the storage class and encryption to another S3 server unless configured', () => {
    const plain = describeDestination(
      runtime(
        'destinations:\n  aws_s3:\n    enabled: true\n    bucket: b-1\n    endpoint: https://s3.example.com\n',
        keys,
      ),
      'aws_s3',
    );
    expect(plain.remote?.env.RCLONE_CONFIG_BKP_AWS_S3_STORAGE_CLASS).toBeUndefined();
    expect(plain.remote?.env.RCLONE_CONFIG_BKP_AWS_S3_SERVER_SIDE_ENCRYPTION).toBeUndefined();
    expect(plain.remote?.env.RCLONE_CONFIG_BKP_AWS_S3_FORCE_PATH_STYLE).toBe('true');
    const asked = describeDestination(
      runtime(
        'destinations:\n  aws_s3:\n    enabled: true\n    bucket: b-1\n    endpoint: https://s3.example.com\n    storage_class: STANDARD_IA\n    server_side_encryption: AES256\n',
        keys,
      ),
      'aws_s3',
    );
    expect(asked.remote?.env).toMatchObject({
      RCLONE_CONFIG_BKP_AWS_S3_STORAGE_CLASS: 'STANDARD_IA',
      RCLONE_CONFIG_BKP_AWS_S3_SERVER_SIDE_ENCRYPTION: 'AES256',
    });
  });

  it('derives the European endpoints from type and region', () => {
    const eu = (type: string, region: string) =>
      describeDestination(
        runtime(
          `destinations:\n  eu_provider:\n    enabled: true\n    type: ${type}\n    bucket: eu-backup\n    region: ${region}\n`,
          {
            EU_PROVIDER_ACCESS_KEY: 'eu-key-123',
            EU_PROVIDER_SECRET_KEY: 'eu-secret-123',
          },
        ),
        'eu_provider',
      ).remote?.env.RCLONE_CONFIG_BKP_EU_PROVIDER_ENDPOINT;
    expect(eu('hetzner', 'fsn1')).toBe('https://fsn1.your-objectstorage.com');
    expect(eu('scaleway', 'fr-par')).toBe('https://s3.fr-par.scw.cloud');
    expect(eu('ovh', 'gra')).toBe('https://s3.gra.io.cloud.ovh.net');
    expect(eu('exoscale', 'ch-gva-2')).toBe('https://sos-ch-gva-2.exo.io');
  });

  it('says what is missing and how to fix it when there are no credentials', () => {
    const d = describeDestination(
      runtime('destinations:\n  aws_s3:\n    enabled: true\n    bucket: my-backup\n'),
      'aws_s3',
    );
    expect(d.remote).toBeUndefined();
    expect(d.problem?.message).toContain('no access key');
    expect(d.problem?.fix).toContain('AWS_ACCESS_KEY_ID');
  });

  it('makes a Storage Box an SFTP remote with a pinned host key', () => {
    const d = describeDestination(
      runtime(
        'destinations:\n  eu_provider:\n    enabled: true\n    type: hetzner_storage_box\n    host: u1.your-storagebox.de\n    user: u1\n    ssh_key_file: /etc/backupd/box_key\n    known_hosts_file: /etc/backupd/known_hosts\n    path: backup\n',
      ),
      'eu_provider',
    );
    expect(d.remote?.env).toMatchObject({
      RCLONE_CONFIG_BKP_EU_PROVIDER_TYPE: 'sftp',
      RCLONE_CONFIG_BKP_EU_PROVIDER_PORT: '23',
      RCLONE_CONFIG_BKP_EU_PROVIDER_KNOWN_HOSTS_FILE: '/etc/backupd/known_hosts',
    });
    expect(d.remote?.root).toBe('backup');
    expect(d.target).toBe('u1@u1.your-storagebox.de:23/backup');
  });

  it('gives the S3 settings the remote is made of, so an SDK client reaches the same place', () => {
    const eu = (type: string) =>
      describeDestination(
        runtime(
          `destinations:\n  eu_provider:\n    enabled: true\n    type: ${type}\n    bucket: eu-backup\n    prefix: /home/\n    region: fr-par\n    ssl_verify: false\n`,
          { EU_PROVIDER_ACCESS_KEY: 'eu-key-123', EU_PROVIDER_SECRET_KEY: 'eu-secret-123' },
        ),
        'eu_provider',
      );
    const scw = eu('scaleway');
    expect(scw.s3).toMatchObject({
      provider: 'Scaleway',
      bucket: 'eu-backup',
      prefix: 'home',
      region: 'fr-par',
      endpoint: 'https://s3.fr-par.scw.cloud',
      // rclone reaches AWS and Scaleway by virtual host, whatever force_path_style says.
      pathStyle: false,
      sslVerify: false,
      accessKeyId: 'eu-key-123',
    });
    expect(scw.remote?.env).toMatchObject({
      RCLONE_CONFIG_BKP_EU_PROVIDER_FORCE_PATH_STYLE: 'false',
      RCLONE_CONFIG_BKP_EU_PROVIDER_NO_CHECK_CERTIFICATE: 'true',
    });
    expect(eu('hetzner').s3).toMatchObject({ provider: 'Other', pathStyle: true });
    expect(eu('hetzner').remote?.env.RCLONE_CONFIG_BKP_EU_PROVIDER_FORCE_PATH_STYLE).toBe('true');
    const aws = describeDestination(
      runtime('destinations:\n  aws_s3:\n    enabled: true\n    bucket: my-backup\n', keys),
      'aws_s3',
    );
    expect(aws.s3).toMatchObject({ provider: 'AWS', pathStyle: false, sslVerify: true });
    expect(aws.s3?.endpoint).toBeUndefined();
  });

  it('says a bucket is missing before anything else', () => {
    const d = describeDestination(
      runtime('destinations:\n  aws_s3:\n    enabled: false\n', keys),
      'aws_s3',
    );
    expect(d.problem).toEqual({
      message: 'no bucket for aws_s3',
      fix: 'Set destinations.aws_s3.bucket.',
    });
  });
});
