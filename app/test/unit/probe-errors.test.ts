// What the configuration test tells a person when a destination fails: each kind of error the
// S3 SDK, Node's network and TLS layers, rclone's SFTP backend, ssh and the file system raise,
// turned into what is wrong and what to do. The servers' real wording is used where known.
import { describe, expect, it } from 'vitest';
import {
  explainLocalError,
  explainS3Error,
  explainSftpError,
} from '../../src/push/probe-errors.js';

const s3 = {
  destination: 'aws_s3',
  bucket: 'family-photos',
  server: 'https://s3.example.com',
  region: 'us-east-1',
  doing: 'list the bucket',
  keys: {
    id: 'destinations.aws_s3.access_key_id',
    secret: 'destinations.aws_s3.secret_access_key',
    idEnv: 'AWS_ACCESS_KEY_ID',
    secretEnv: 'AWS_SECRET_ACCESS_KEY',
  },
  timeoutMs: 15_000,
};
/** An error as the SDK throws it for an S3 error answer. */
const sdkError = (name: string, status: number, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error('UnknownError'), {
    name,
    Code: name,
    $metadata: { httpStatusCode: status },
    ...extra,
  });
const sysError = (code: string, message = code) => Object.assign(new Error(message), { code });

describe('S3 errors', () => {
  it('tells a wrong key id from a wrong secret, each with the secret to set', () => {
    const id = explainS3Error(sdkError('InvalidAccessKeyId', 403), s3);
    expect(id.message).toContain('does not know the access key id of aws_s3');
    expect(id.fix).toMatchObject({ id: 'aws_s3.credentials', automatic: false });
    expect(id.fix!.description).toContain('backupd secrets set destinations.aws_s3.access_key_id');

    const secret = explainS3Error(sdkError('SignatureDoesNotMatch', 403), s3);
    expect(secret.message).toContain('the secret key of aws_s3 is wrong');
    expect(secret.fix!.description).toContain('AWS_SECRET_ACCESS_KEY');
  });

  it('names a missing bucket, a wrong region with the right one, a skewed clock', () => {
    expect(explainS3Error(sdkError('NoSuchBucket', 404), s3).message).toBe(
      'there is no bucket "family-photos" at https://s3.example.com.',
    );
    const region = explainS3Error(
      sdkError('AuthorizationHeaderMalformed', 400, {
        message:
          "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'",
      }),
      s3,
    );
    expect(region.message).toBe(
      'bucket "family-photos" is not in region us-east-1: it is in eu-central-1.',
    );
    expect(region.fix!.description).toBe('Set destinations.aws_s3.region to eu-central-1.');
    expect(explainS3Error(sdkError('RequestTimeTooSkewed', 403), s3).fix!.description).toContain(
      'timedatectl set-ntp true',
    );
  });

  it('says what a key may not do, and what to allow', () => {
    const denied = explainS3Error(sdkError('AccessDenied', 403), {
      ...s3,
      doing: 'write an object',
    });
    expect(denied.message).toBe(
      'access denied: the key of aws_s3 is valid but may not write an object in bucket "family-photos".',
    );
    expect(denied.fix!.description).toContain('s3:PutObject');
    // A HEAD answer has no body: the status alone says it.
    expect(explainS3Error(sdkError('Forbidden', 403, { Code: undefined }), s3).message).toContain(
      'access denied',
    );
  });

  it('calls a missing feature unsupported rather than failed', () => {
    expect(explainS3Error(sdkError('NotImplemented', 501), s3).status).toBe('unsupported');
    expect(explainS3Error(sdkError('SlowDown', 503), s3).message).toContain("the provider's side");
  });

  it('explains network and TLS failures by what to check', () => {
    expect(explainS3Error(sysError('ECONNREFUSED'), s3).message).toBe(
      'nothing answers at https://s3.example.com (connection refused): the endpoint or its port is wrong, or the server is down.',
    );
    expect(explainS3Error(sysError('ENOTFOUND'), s3).message).toContain('cannot be resolved');
    const timeout = explainS3Error(
      Object.assign(new Error('aborted'), { name: 'TimeoutError' }),
      s3,
    );
    expect(timeout.message).toContain('did not answer within 15 s');
    expect(timeout.fix!.id).toBe('aws_s3.endpoint');
    const tls = explainS3Error(sysError('DEPTH_ZERO_SELF_SIGNED_CERT'), s3);
    expect(tls.message).toContain('its certificate is self-signed');
    expect(tls.fix).toMatchObject({ id: 'aws_s3.tls', automatic: false });
    expect(tls.fix!.description).toContain('update-ca-certificates');
    expect(explainS3Error(sysError('ERR_TLS_CERT_ALTNAME_INVALID'), s3).message).toContain(
      'for another host name',
    );
    const plain = explainS3Error(
      sysError(
        'EPROTO',
        'write EPROTO 801C:error:0A00010B:SSL routines:ssl3_get_record:wrong version number',
      ),
      s3,
    );
    expect(plain.message).toBe(
      'https://s3.example.com does not speak HTTPS on that port (it answered in plain HTTP).',
    );
  });
});

describe('SFTP errors', () => {
  const box = {
    destination: 'eu_provider',
    host: 'u1.your-storagebox.de',
    port: 23,
    user: 'u1',
    keyFile: '/etc/backupd/box_key',
    knownHostsFile: '/etc/backupd/known_hosts',
    path: 'backup',
    timeoutMs: 15_000,
  };
  const fatal = (what: string) =>
    `Failed to create file system for "BKP_EU_PROVIDER:": NewFs: couldn't connect SSH: ssh: handshake failed: ${what}`;

  it('tells a changed host key from an unknown one, never suggesting to trust blindly', () => {
    const changed = explainSftpError(fatal('knownhosts: key mismatch'), box);
    expect(changed.message).toContain('is not the one pinned in /etc/backupd/known_hosts');
    expect(changed.fix!.description).toContain('Only if they match');
    const unknown = explainSftpError(fatal('knownhosts: key is unknown'), box);
    expect(unknown.message).toContain('is not in /etc/backupd/known_hosts');
    expect(unknown.fix!.description).toContain(
      'ssh-keyscan -p 23 u1.your-storagebox.de >> /etc/backupd/known_hosts',
    );
    // ssh's own wording, from the rsync check.
    expect(
      explainSftpError(
        'No ED25519 host key is known for [u1.your-storagebox.de]:23 and you have requested strict checking.\nHost key verification failed.',
        box,
      ).fix!.id,
    ).toBe('eu_provider.host_key');
  });

  it('names a refused key, an unreadable one, one with a passphrase or open to others', () => {
    const refused = explainSftpError(
      fatal(
        'ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain',
      ),
      box,
    );
    expect(refused.message).toBe(
      'u1.your-storagebox.de:23 refuses the key /etc/backupd/box_key for user u1: the box does not know this key, or the user name is wrong.',
    );
    expect(refused.fix!.description).toContain(
      'ssh-copy-id -p 23 -s -i /etc/backupd/box_key u1@u1.your-storagebox.de',
    );
    expect(explainSftpError('u1@host: Permission denied (publickey).', box).fix!.id).toBe(
      'eu_provider.ssh_key',
    );
    expect(
      explainSftpError(
        'failed to read private key file: open /etc/backupd/box_key: no such file or directory',
        box,
      ).message,
    ).toContain('cannot be read');
    expect(
      explainSftpError('ssh: this private key is passphrase protected', box).message,
    ).toContain('passphrase');
    expect(explainSftpError('WARNING: UNPROTECTED PRIVATE KEY FILE!', box).fix!.description).toBe(
      '`chmod 600 /etc/backupd/box_key`',
    );
  });

  it('says where a refused connection, a timeout or a denied folder come from', () => {
    expect(
      explainSftpError('dial tcp 1.2.3.4:23: connect: connection refused', box).fix!.description,
    ).toContain('port 23');
    expect(explainSftpError('dial tcp 1.2.3.4:23: i/o timeout', box).message).toContain(
      'did not answer within 15 s',
    );
    expect(
      explainSftpError(
        'mkdir "backup/.backupd" failed: sftp: "permission denied" (SSH_FX_PERMISSION_DENIED)',
        box,
      ).message,
    ).toBe('user u1 may not write to "backup" on u1.your-storagebox.de.');
  });
});

describe('local folder errors', () => {
  const at = {
    destination: 'local',
    path: '/mnt/second-disk',
    doing: 'write a file',
    pathKey: 'destinations.local.path',
  };
  it('names permissions, a read-only or full disk, a file in the way', () => {
    expect(explainLocalError(sysError('EACCES'), at).fix!.description).toContain(
      'chown -R backupd: /mnt/second-disk',
    );
    expect(explainLocalError(sysError('EROFS'), at).message).toContain('read-only file system');
    expect(explainLocalError(sysError('ENOSPC'), at).message).toBe(
      'the disk of /mnt/second-disk is full.',
    );
    expect(explainLocalError(sysError('ENOTDIR'), at).fix!.description).toBe(
      'Set destinations.local.path to a folder.',
    );
  });
});
