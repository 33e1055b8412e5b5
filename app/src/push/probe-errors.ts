/**
 * What an error met while testing a destination means for a person: the S3 SDK's error codes,
 * Node's network and TLS errors, rclone's and ssh's messages about SFTP, and file system
 * errors, each turned into what is wrong and what to do. Pure functions, so that every case
 * can be tested without a server that fails on purpose.
 */

/** A way to put a failed check right; `automatic` fixes are applied only on the owner's request. */
export interface ProbeFix {
  /** `<destination>.<what>`, e.g. `aws_s3.enable_versioning`. */
  id: string;
  /** Exactly what would change, in words. */
  description: string;
  automatic: boolean;
}

export interface Explained {
  /** `fail`: the push cannot work; `unsupported`: the server does not offer this at all. */
  status: 'fail' | 'unsupported' | 'warn';
  message: string;
  fix?: ProbeFix;
}

/** What the S3 explanation needs to name things precisely. */
export interface S3ErrorContext {
  destination: string;
  bucket: string;
  /** The endpoint as people know it: a URL, or `AWS (region eu-central-1)`. */
  server: string;
  region: string;
  /** What was being done, e.g. `list the bucket`, `read the versioning setting`. */
  doing: string;
  /** Config keys (and variables) of the credentials, for the fixes. */
  keys: { id: string; secret: string; idEnv: string; secretEnv: string };
  timeoutMs: number;
}

interface ErrorLike {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  Region?: string;
  Endpoint?: string;
  cause?: unknown;
  $metadata?: { httpStatusCode?: number };
}

const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`;

/** The SDK's `UnknownError` says nothing: fall back to the code. */
const sdkText = (e: ErrorLike) =>
  e.message && e.message !== 'UnknownError' ? e.message : (e.Code ?? e.name ?? 'unknown error');

/** Network and TLS failures, shared by S3 and anything else that speaks HTTPS. */
export function explainNetworkError(
  err: unknown,
  where: { destination: string; server: string; timeoutMs: number; endpointKey: string },
): Explained | undefined {
  const e = (err ?? {}) as ErrorLike;
  const code = e.code ?? (e.cause as ErrorLike | undefined)?.code ?? '';
  const text = `${e.message ?? ''} ${(e.cause as ErrorLike | undefined)?.message ?? ''}`;
  const fix = (id: string, description: string): ProbeFix => ({
    id: `${where.destination}.${id}`,
    description,
    automatic: false,
  });
  const endpointFix = fix(
    'endpoint',
    `Check ${where.endpointKey} (host name, port, http or https) and that this machine reaches it: \`curl -v ${where.server}\`.`,
  );
  if (
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    code === 'ETIMEDOUT' ||
    code === 'ESOCKETTIMEDOUT' ||
    /timed? ?out/i.test(text)
  ) {
    return {
      status: 'fail',
      message: `${where.server} did not answer within ${seconds(where.timeoutMs)}: the endpoint is unreachable from here (network down, a firewall, or a wrong address).`,
      fix: endpointFix,
    };
  }
  if (code === 'ECONNREFUSED')
    return {
      status: 'fail',
      message: `nothing answers at ${where.server} (connection refused): the endpoint or its port is wrong, or the server is down.`,
      fix: endpointFix,
    };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return {
      status: 'fail',
      message: `the host name of ${where.server} cannot be resolved (${code === 'EAI_AGAIN' ? 'DNS did not answer' : 'no such host'}): a typo in the endpoint or region, or this machine has no working DNS.`,
      fix: endpointFix,
    };
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH')
    return {
      status: 'fail',
      message: `${where.server} is unreachable from this machine (${code}): is the network up?`,
      fix: endpointFix,
    };
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/i.test(text))
    return {
      status: 'fail',
      message: `${where.server} closed the connection before answering: a proxy or firewall in between, or http and https mixed up.`,
      fix: endpointFix,
    };
  if (code === 'EPROTO' && /wrong version number|packet length too long/i.test(text))
    return {
      status: 'fail',
      message: `${where.server} does not speak HTTPS on that port (it answered in plain HTTP).`,
      fix: fix(
        'endpoint',
        `Use the server's HTTPS address in ${where.endpointKey}; write http://... only for a server on this machine.`,
      ),
    };
  const tls: Record<string, string> = {
    CERT_HAS_EXPIRED: 'its certificate has expired',
    CERT_NOT_YET_VALID: 'its certificate is not valid yet (is this machine’s clock right?)',
    DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed',
    SELF_SIGNED_CERT_IN_CHAIN:
      'its certificate chain ends in an authority this machine does not trust',
    UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      'its certificate is signed by an authority this machine does not know',
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
      'its certificate is signed by an authority this machine does not know',
    ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is for another host name',
  };
  if (tls[code])
    return {
      status: 'fail',
      message: `the TLS certificate of ${where.server} is not accepted: ${tls[code]}.`,
      fix: fix(
        'tls',
        `If the endpoint is right and the certificate is yours, add its authority to this machine (copy it to /usr/local/share/ca-certificates/ and run update-ca-certificates). Setting ssl_verify: false for this destination also works, but then anyone in between can read and change the backup traffic.`,
      ),
    };
  return undefined;
}

/** An error of the S3 SDK, explained. */
export function explainS3Error(err: unknown, c: S3ErrorContext): Explained {
  const e = (err ?? {}) as ErrorLike;
  const code = e.Code ?? e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const dest = `destinations.${c.destination}`;
  const fix = (id: string, description: string): ProbeFix => ({
    id: `${c.destination}.${id}`,
    description,
    automatic: false,
  });
  const network = explainNetworkError(err, {
    destination: c.destination,
    server: c.server,
    timeoutMs: c.timeoutMs,
    endpointKey: `${dest}.endpoint`,
  });
  if (network && !status) return network;

  switch (code) {
    case 'InvalidAccessKeyId':
      return {
        status: 'fail',
        message: `${c.server} does not know the access key id of ${c.destination}: it is mistyped, deleted, or belongs to another provider or region.`,
        fix: fix(
          'credentials',
          `Copy the access key id again from the provider's console and store it: \`backupd secrets set ${c.keys.id}\` (or set ${c.keys.idEnv}), with its secret: \`backupd secrets set ${c.keys.secret}\`.`,
        ),
      };
    case 'SignatureDoesNotMatch':
      return {
        status: 'fail',
        message: `the secret key of ${c.destination} is wrong: ${c.server} knows the access key id but rejects the signature made with the secret.`,
        fix: fix(
          'credentials',
          `Store the secret that belongs to this access key id: \`backupd secrets set ${c.keys.secret}\` (or set ${c.keys.secretEnv}); if it is lost, make a new key pair in the provider's console.`,
        ),
      };
    case 'NoSuchBucket':
      return {
        status: 'fail',
        message: `there is no bucket "${c.bucket}" at ${c.server}.`,
        fix: fix(
          'bucket',
          `Create the bucket "${c.bucket}" in the provider's console (in region ${c.region}), or correct ${dest}.bucket.`,
        ),
      };
    case 'InvalidBucketName':
      return {
        status: 'fail',
        message: `"${c.bucket}" is not a valid bucket name for ${c.server}.`,
        fix: fix(
          'bucket',
          `Set ${dest}.bucket to the bucket's exact name: 3 to 63 lower-case letters, digits, dots and dashes.`,
        ),
      };
    case 'AuthorizationHeaderMalformed':
    case 'PermanentRedirect':
    case 'IllegalLocationConstraintException': {
      const right = e.Region ?? /expecting '([^']+)'/.exec(e.message ?? '')?.[1];
      return {
        status: 'fail',
        message: `bucket "${c.bucket}" is not in region ${c.region}${right ? `: it is in ${right}` : ''}.`,
        fix: fix(
          'region',
          `Set ${dest}.region to ${right ?? "the bucket's region (the provider's console shows it)"}.`,
        ),
      };
    }
    case 'RequestTimeTooSkewed':
      return {
        status: 'fail',
        message: `this machine's clock is too far from ${c.server}'s (more than 15 minutes): every signed request is refused.`,
        fix: fix(
          'clock',
          'Set the clock and keep it synchronised: `timedatectl set-ntp true` (check with `timedatectl status`).',
        ),
      };
    case 'AccessDenied':
    case 'AllAccessDisabled':
    case 'Forbidden':
      return {
        status: 'fail',
        message: `access denied: the key of ${c.destination} is valid but may not ${c.doing} in bucket "${c.bucket}".`,
        fix: fix(
          'permissions',
          `Allow the key's user (its policy, or the bucket policy) s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on "${c.bucket}", and s3:GetBucketVersioning, s3:GetEncryptionConfiguration and s3:GetLifecycleConfiguration for this test.`,
        ),
      };
    case 'NotImplemented':
    case 'MethodNotAllowed':
      return {
        status: 'unsupported',
        message: `${c.server} does not support this (${code} when asked to ${c.doing}).`,
      };
  }
  if (network) return network;
  if (status === 301 || status === 307)
    return {
      status: 'fail',
      message: `${c.server} redirects requests for bucket "${c.bucket}" elsewhere: the region (${c.region}) or the endpoint is wrong.`,
      fix: fix(
        'region',
        `Set ${dest}.region to the bucket's region, shown in the provider's console.`,
      ),
    };
  if (status === 403)
    return explainS3Error({ ...e, name: 'AccessDenied', Code: 'AccessDenied' }, c);
  if (status === 404 && !e.Code && e.name === 'NotFound')
    return explainS3Error({ ...e, name: 'NoSuchBucket', Code: 'NoSuchBucket' }, c);
  if (status === 501)
    return explainS3Error({ ...e, name: 'NotImplemented', Code: 'NotImplemented' }, c);
  if (status && status >= 500)
    return {
      status: 'fail',
      message: `${c.server} failed while asked to ${c.doing} (HTTP ${status}, ${sdkText(e)}): a problem on the provider's side.`,
      fix: fix(
        'retry',
        "Try again in a few minutes; if it persists, check the provider's status page.",
      ),
    };
  return {
    status: 'fail',
    message: `${c.server} refused to ${c.doing}: ${sdkText(e)}${status ? ` (HTTP ${status})` : ''}.`,
  };
}

/** What the SFTP explanation needs to name things precisely. */
export interface SftpErrorContext {
  destination: string;
  host: string;
  port: number;
  user: string;
  keyFile: string;
  knownHostsFile: string | undefined;
  /** Folder on the box being used. */
  path: string;
  timeoutMs: number;
}

/** An error of rclone's SFTP backend or of ssh (their last lines of output), explained. */
export function explainSftpError(text: string, c: SftpErrorContext): Explained {
  const dest = `destinations.${c.destination}`;
  const at = `${c.host}:${c.port}`;
  const fix = (id: string, description: string): ProbeFix => ({
    id: `${c.destination}.${id}`,
    description,
    automatic: false,
  });
  const keyscan = `ssh-keyscan -p ${c.port} ${c.host}`;
  if (/key mismatch|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(text))
    return {
      status: 'fail',
      message: `the host key of ${at} is not the one pinned in ${c.knownHostsFile ?? 'known_hosts'}: the box was replaced, or someone is between this machine and the box. Nothing was sent.`,
      fix: fix(
        'host_key',
        `Compare the key's fingerprint (\`${keyscan} | ssh-keygen -lf -\`) with the one your provider shows (Hetzner: the Storage Box page of the console). Only if they match, replace the line for ${c.host} in ${c.knownHostsFile ?? dest + '.known_hosts_file'} with the output of \`${keyscan}\`.`,
      ),
    };
  if (/key is unknown|No \S+ host key is known|Host key verification failed/i.test(text))
    return {
      status: 'fail',
      message: `the host key of ${at} is not in ${c.knownHostsFile ?? 'the known_hosts file'}, so the box cannot be told from an impostor.`,
      fix: fix(
        'host_key',
        `Run \`${keyscan} >> ${c.knownHostsFile ?? '/etc/backupd/known_hosts'}\`, after checking the fingerprint (\`${keyscan} | ssh-keygen -lf -\`) against the one your provider shows.`,
      ),
    };
  if (/couldn't parse known_hosts_file|known_hosts.*no such file/i.test(text))
    return {
      status: 'fail',
      message: `the known_hosts file ${c.knownHostsFile ?? ''} cannot be read.`,
      fix: fix(
        'host_key',
        `Create it: \`${keyscan} > ${c.knownHostsFile ?? '/etc/backupd/known_hosts'}\` (check the fingerprint), or correct ${dest}.known_hosts_file.`,
      ),
    };
  if (
    /failed to read private key|Warning: Identity file .* not accessible|no such identity/i.test(
      text,
    )
  )
    return {
      status: 'fail',
      message: `the private key ${c.keyFile} cannot be read (missing, or not readable by this user).`,
      fix: fix(
        'ssh_key',
        `Put the key there (mode 0600, owned by the user backupd runs as), or correct ${dest}.ssh_key_file.`,
      ),
    };
  if (/passphrase/i.test(text))
    return {
      status: 'fail',
      message: `the private key ${c.keyFile} is protected by a passphrase, which an unattended backup cannot type.`,
      fix: fix(
        'ssh_key',
        `Make a key without a passphrase for backupd (\`ssh-keygen -t ed25519 -N '' -f ${c.keyFile}\`) and add its public half to the box.`,
      ),
    };
  if (/UNPROTECTED PRIVATE KEY FILE|bad permissions/i.test(text))
    return {
      status: 'fail',
      message: `ssh refuses the private key ${c.keyFile}: other users can read it.`,
      fix: fix('ssh_key', `\`chmod 600 ${c.keyFile}\``),
    };
  if (
    /unable to authenticate|Permission denied \(publickey|no supported methods remain/i.test(text)
  )
    return {
      status: 'fail',
      message: `${at} refuses the key ${c.keyFile} for user ${c.user}: the box does not know this key, or the user name is wrong.`,
      fix: fix(
        'ssh_key',
        `Add the public key to the box: \`ssh-copy-id -p ${c.port} -s -i ${c.keyFile} ${c.user}@${c.host}\` (Hetzner Storage Box: enable SSH support first), or correct ${dest}.user / ${dest}.ssh_key_file.`,
      ),
    };
  if (/connection refused/i.test(text))
    return {
      status: 'fail',
      message: `nothing answers at ${at} (connection refused): wrong host or port, or SSH is not enabled on the box.`,
      fix: fix(
        'endpoint',
        `Check ${dest}.host and ${dest}.port (a Hetzner Storage Box serves SFTP and rsync on port 23) and that SSH support is enabled for the box.`,
      ),
    };
  if (/no such host|Name or service not known|Could not resolve hostname/i.test(text))
    return {
      status: 'fail',
      message: `the host name ${c.host} cannot be resolved: a typo, or this machine has no working DNS.`,
      fix: fix('endpoint', `Correct ${dest}.host, e.g. u123456.your-storagebox.de.`),
    };
  if (/i\/o timeout|timed out|deadline exceeded|operation was aborted|AbortError/i.test(text))
    return {
      status: 'fail',
      message: `${at} did not answer within ${seconds(c.timeoutMs)}: unreachable from here (network down, a firewall, or a wrong address).`,
      fix: fix(
        'endpoint',
        `Check ${dest}.host and ${dest}.port, and that this machine reaches the box.`,
      ),
    };
  if (/permission denied|SSH_FX_PERMISSION_DENIED/i.test(text))
    return {
      status: 'fail',
      message: `user ${c.user} may not write to "${c.path || '.'}" on ${c.host}.`,
      fix: fix(
        'path',
        `Choose a folder inside the box's home for ${dest}.path (e.g. backup), or give ${c.user} write permission on it.`,
      ),
    };
  if (/no space left|quota/i.test(text))
    return {
      status: 'fail',
      message: `the box ${c.host} is full (or over its quota).`,
      fix: fix('space', "Free space on the box, or book a larger one in the provider's console."),
    };
  const last = text.trim().split('\n').filter(Boolean).pop() ?? 'no output';
  return { status: 'fail', message: `the SFTP test failed: ${last}` };
}

/** A file system error on a local destination, explained. */
export function explainLocalError(
  err: unknown,
  c: { destination: string; path: string; doing: string; pathKey: string },
): Explained {
  const code = (err as ErrorLike | undefined)?.code ?? '';
  const fix = (id: string, description: string): ProbeFix => ({
    id: `${c.destination}.${id}`,
    description,
    automatic: false,
  });
  const user = process.getuid ? `uid ${process.getuid()}` : 'this user';
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return {
        status: 'fail',
        message: `backupd (${user}) may not ${c.doing} in ${c.path}.`,
        fix: fix(
          'permissions',
          `Give the user backupd runs as write access to ${c.path} (e.g. \`chown -R backupd: ${c.path}\`), or choose another folder in ${c.pathKey}.`,
        ),
      };
    case 'EROFS':
      return {
        status: 'fail',
        message: `${c.path} is on a read-only file system (a disk is often remounted read-only after errors).`,
        fix: fix(
          'disk',
          'Check the kernel log (`dmesg | tail`), repair the file system (`fsck`) and mount it read-write again.',
        ),
      };
    case 'ENOSPC':
    case 'EDQUOT':
      return {
        status: 'fail',
        message: `the disk of ${c.path} is full.`,
        fix: fix('space', 'Free space on that disk, or use a larger one.'),
      };
    case 'ENOTDIR':
    case 'EEXIST':
      return {
        status: 'fail',
        message: `${c.path} (or a folder above it) is a file, not a folder.`,
        fix: fix('path', `Set ${c.pathKey} to a folder.`),
      };
    case 'EIO':
      return {
        status: 'fail',
        message: `input/output error on ${c.path}: the disk is failing or was unplugged.`,
        fix: fix(
          'disk',
          'Check the cable and the kernel log (`dmesg | tail`); replace the disk if errors persist.',
        ),
      };
  }
  return {
    status: 'fail',
    message: `could not ${c.doing} in ${c.path}: ${(err as Error | undefined)?.message ?? String(err)}`,
  };
}
