const OWNER_ONLY =
  /InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|NoSuchBucket|knownhosts|host key|unable to authenticate|permission denied \(publickey/i;

/** Errors only the owner can fix (credentials, bucket, host key): no use retrying soon. */
export const needsTheOwner = (message: string) => OWNER_ONLY.test(message);

/**
 * What a person can do about a push error, from rclone's words. One place, so the log, the API
 * and `backupd sync --once` give the same advice.
 */
export function fixFor(lines: string[]): string {
  const text = lines.join('\n');
  if (/InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|403/.test(text))
    return 'Check the access key and secret of this destination, and that they may write to the bucket.';
  if (/NoSuchBucket/.test(text))
    return 'Create the bucket, or correct the bucket name in the configuration.';
  if (/knownhosts|host key/i.test(text))
    return "The server's host key does not match known_hosts_file: check you are talking to the right server, then update the file.";
  if (/unable to authenticate|permission denied \(publickey/i.test(text))
    return 'The server refused the SSH key: install the public key on the Storage Box (ssh-copy-id -p 23 -s ...).';
  if (/connection refused|no such host|i\/o timeout|network is unreachable/i.test(text))
    return 'The destination cannot be reached: check the endpoint or host and the network.';
  if (/no space left|quota/i.test(text))
    return 'The destination is full: free space or raise its quota.';
  if (/verification failed/.test(text))
    return 'The copy at the destination differs from the mirror; it is sent again. If this repeats, check the destination for a proxy or a storage problem.';
  return 'See the log for the details; the push is retried.';
}
