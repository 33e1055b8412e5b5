/**
 * The rclone child process. Its environment never carries AWS_CA_BUNDLE (set on some hosts,
 * it makes every rclone S3 call fail with LoadCustomCABundleError) and defines the remotes.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface RcloneResult {
  code: number;
  /** Standard output, when asked for with `stdout: true`. */
  stdout: string;
  /** The last lines of rclone's own log, for error messages. */
  tail: string[];
}

export interface RcloneLogLine {
  level: string;
  msg: string;
  object?: string;
  stats?: Record<string, unknown>;
}

export class RcloneMissingError extends Error {
  override name = 'RcloneMissingError';
}

/** The environment rclone runs with: ours, less what breaks it, plus the remotes. */
export function rcloneEnvironment(
  remotes: Record<string, string>,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    if (k === 'AWS_CA_BUNDLE' || k.startsWith('RCLONE_')) continue;
    env[k] = v;
  }
  return { ...env, ...remotes };
}

export function runRclone(
  args: string[],
  opts: {
    remotes?: Record<string, string>;
    onLine?: (l: RcloneLogLine) => void;
    signal?: AbortSignal;
    binary?: string;
    stdout?: boolean;
  } = {},
): Promise<RcloneResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      opts.binary ?? 'rclone',
      ['--config', '/dev/null', '--use-json-log', ...args],
      {
        env: rcloneEnvironment(opts.remotes ?? {}),
        stdio: ['ignore', 'pipe', 'pipe'],
        signal: opts.signal,
      },
    );
    const tail: string[] = [];
    const lines = createInterface({ input: child.stderr });
    lines.on('line', (raw) => {
      let line: RcloneLogLine;
      try {
        line = JSON.parse(raw) as RcloneLogLine;
      } catch {
        line = { level: 'info', msg: raw };
      }
      if (line.level === 'error' || line.level === 'critical' || line.level === 'warning') {
        tail.push(`${line.object ? `${line.object}: ` : ''}${line.msg}`.trim());
        if (tail.length > 20) tail.shift();
      }
      opts.onLine?.(line);
    });
    let stdout = '';
    if (opts.stdout) child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    else child.stdout.resume();
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') {
        reject(
          new RcloneMissingError(
            'rclone is not installed. Install it with `apt-get install rclone` (the appliance image has it).',
          ),
        );
      } else reject(err);
    });
    child.on('close', (code) => {
      lines.close();
      resolve({ code: code ?? 1, tail, stdout });
    });
  });
}
