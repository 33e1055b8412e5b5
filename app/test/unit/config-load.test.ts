// The configuration file as a user writes it: defaults, and the messages a mistake gets.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  findConfigFile,
  loadConfigFile,
  parseConfigText,
  pinoLevel,
  type ConfigProblem,
} from '../../src/config/index.js';
import { tempDirs } from '../helpers/tmp.js';

const FILE = '/etc/backupd/config.yaml';

/** The problems of an invalid text; fails the test when the text is accepted. */
function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfigText(text, FILE);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error(`expected the configuration to be refused:\n${text}`);
}

const yaml = (...lines: string[]) => `${lines.join('\n')}\n`;

describe('defaults', () => {
  it('an empty file is a valid configuration with every default', () => {
    const { config, warnings, inlineSecrets } = parseConfigText('', FILE);
    expect(config.sync.batch_size).toBe(100);
    expect(config.sync.mode).toBe('realtime');
    expect(config.sync.watch_delay_seconds).toBe(5);
    expect(config.destinations.aws_s3.enabled).toBe(false);
    expect(config.destinations.eu_provider.enabled).toBe(false);
    expect(config.destinations.local.enabled).toBe(false);
    expect(config.notifications.email.enabled).toBe(false);
    expect(config.daemon.api_port).toBe(8080);
    expect(config.daemon.log_level).toBe('INFO');
    expect(config.security.api_authentication).toBe(true);
    expect(config.security.ssl_verify).toBe(true);
    expect(config.sources.google_drive.local_path).toBe('/srv/backup/google-drive');
    expect(warnings).toEqual([]);
    expect(inlineSecrets).toEqual({});
  });

  it('a file holding only comments is the same as an empty one', () => {
    const { config } = parseConfigText(yaml('# nothing set yet', '# sync:', '#   batch_size: 5'));
    expect(config).toEqual(parseConfigText('').config);
  });

  it('a section left empty (every key commented out) is valid and takes the defaults', () => {
    const { config } = parseConfigText(
      yaml('sync:', '  # batch_size: 5', 'destinations:', '  aws_s3:', 'daemon:'),
      FILE,
    );
    expect(config.sync.batch_size).toBe(100);
    expect(config.destinations.aws_s3.enabled).toBe(false);
    expect(config.daemon.api_port).toBe(8080);
  });

  it('keeps the values that are given', () => {
    const { config } = parseConfigText(
      yaml('sync:', '  batch_size: 250', '  mode: manual', 'daemon:', '  api_port: 9090'),
    );
    expect(config.sync.batch_size).toBe(250);
    expect(config.sync.mode).toBe('manual');
    expect(config.daemon.api_port).toBe(9090);
  });
});

describe('problems name the key, the line and the value', () => {
  it('a value of the wrong type', () => {
    const problems = problemsOf(
      yaml('# my settings', 'sync:', '  mode: realtime', '  batch_size: "many"'),
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]!.path).toBe('sync.batch_size');
    expect(problems[0]!.line).toBe(4);
    expect(problems[0]!.message).toContain('"many"');
    expect(problems[0]!.message).toMatch(/number/);
  });

  it('the error message a user reads names the file, the key and the line', () => {
    let message = '';
    try {
      parseConfigText(yaml('sync:', '  batch_size: "many"'), FILE);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain(FILE);
    expect(message).toContain('sync.batch_size (line 2)');
    expect(message).toContain('many');
  });

  it('a value out of range', () => {
    const problems = problemsOf(yaml('sync:', '  batch_size: 0'));
    expect(problems[0]!.path).toBe('sync.batch_size');
    expect(problems[0]!.message).toMatch(/at least 1/);
  });

  it('a value that is not one of the choices lists them', () => {
    const problems = problemsOf(yaml('sync:', '  mode: sometimes'));
    expect(problems[0]!.path).toBe('sync.mode');
    expect(problems[0]!.message).toContain('"realtime"');
    expect(problems[0]!.message).toContain('"manual"');
  });

  it('an unknown key, with the key it probably meant', () => {
    const problems = problemsOf(yaml('sync:', '  batch_size: 10', '  watch_dely_seconds: 3'));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.path).toBe('sync.watch_dely_seconds');
    expect(problems[0]!.line).toBe(3);
    expect(problems[0]!.message).toContain('Did you mean "watch_delay_seconds"');
  });

  it('an unknown top-level section', () => {
    const problems = problemsOf(yaml('sync:', '  batch_size: 10', 'backups:', '  every: 5'));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.path).toBe('backups');
    expect(problems[0]!.line).toBe(3);
    expect(problems[0]!.message).toMatch(/unknown key/);
    expect(problems[0]!.message).toContain('destinations');
  });

  it('a YAML syntax error gives its line', () => {
    const problems = problemsOf(yaml('sync:', '  batch_size: 10', '\tmode: manual'));
    expect(problems.length).toBeGreaterThan(0);
    expect(problems[0]!.line).toBe(3);
    expect(problems[0]!.message).toMatch(/YAML syntax/);
  });

  it('a file that is not a mapping of sections', () => {
    const problems = problemsOf(yaml('- sync', '- daemon'));
    expect(problems[0]!.message).toMatch(/mapping of sections/);
  });

  it('every problem of the file is reported at once', () => {
    const problems = problemsOf(yaml('sync:', '  batch_size: "many"', '  mode: sometimes'));
    expect(problems.map((p) => p.path).sort()).toEqual(['sync.batch_size', 'sync.mode']);
  });
});

describe('rules that involve more than one key', () => {
  it('aws_s3 enabled without a bucket names destinations.aws_s3.bucket', () => {
    const problems = problemsOf(yaml('destinations:', '  aws_s3:', '    enabled: true'));
    expect(problems.map((p) => p.path)).toEqual(['destinations.aws_s3.bucket']);
    expect(problems[0]!.message).toMatch(/required/);
  });

  it('aws_s3 enabled with a bucket is valid', () => {
    const { config } = parseConfigText(
      yaml('destinations:', '  aws_s3:', '    enabled: true', '    bucket: my-backups'),
    );
    expect(config.destinations.aws_s3.bucket).toBe('my-backups');
  });

  const s3WithEndpoint = (endpoint: string, extra: string[] = []) =>
    yaml(
      'destinations:',
      '  aws_s3:',
      '    enabled: true',
      '    bucket: my-backups',
      `    endpoint: ${endpoint}`,
      ...extra,
    );

  it('a plain http:// endpoint on a non-loopback host is refused', () => {
    const problems = problemsOf(s3WithEndpoint('http://s3.example.com'));
    expect(problems.map((p) => p.path)).toEqual(['destinations.aws_s3.endpoint']);
    expect(problems[0]!.message).toMatch(/ssl_verify: false/);
    expect(problems[0]!.message).toContain('s3.example.com');
  });

  it('a plain http:// endpoint is accepted with ssl_verify: false, here or for all', () => {
    expect(() =>
      parseConfigText(s3WithEndpoint('http://s3.example.com', ['    ssl_verify: false'])),
    ).not.toThrow();
    expect(() =>
      parseConfigText(
        s3WithEndpoint('http://s3.example.com') + yaml('security:', '  ssl_verify: false'),
      ),
    ).not.toThrow();
  });

  it('a plain http:// endpoint on a loopback address is accepted', () => {
    expect(() => parseConfigText(s3WithEndpoint('http://127.0.0.1:7480'))).not.toThrow();
    expect(() => parseConfigText(s3WithEndpoint('http://localhost:7480'))).not.toThrow();
  });

  it('an https:// endpoint is accepted anywhere', () => {
    expect(() => parseConfigText(s3WithEndpoint('https://s3.example.com'))).not.toThrow();
  });

  it('the same rule holds for the European provider', () => {
    const problems = problemsOf(
      yaml(
        'destinations:',
        '  eu_provider:',
        '    enabled: true',
        '    type: s3',
        '    bucket: my-backups',
        '    endpoint: http://s3.example.eu',
      ),
    );
    expect(problems.map((p) => p.path)).toEqual(['destinations.eu_provider.endpoint']);
  });

  it('api_authentication: false is refused while the API listens on the network', () => {
    const problems = problemsOf(yaml('security:', '  api_authentication: false'));
    expect(problems.map((p) => p.path)).toEqual(['security.api_authentication']);
    expect(problems[0]!.message).toContain('0.0.0.0');
  });

  it('api_authentication: false is accepted when the API listens on a loopback address', () => {
    const { config } = parseConfigText(
      yaml('daemon:', '  api_host: 127.0.0.1', 'security:', '  api_authentication: false'),
    );
    expect(config.security.api_authentication).toBe(false);
  });

  it('a short daemon.api_key is refused, without echoing it', () => {
    const problems = problemsOf(yaml('daemon:', '  api_key: short-key-12345'));
    expect(problems.map((p) => p.path)).toEqual(['daemon.api_key']);
    expect(problems[0]!.message).toMatch(/at least 24/);
    expect(problems[0]!.message).not.toContain('short-key-12345');
  });

  it('email enabled requires the server, the sender and the recipient', () => {
    const problems = problemsOf(yaml('notifications:', '  email:', '    enabled: true'));
    expect(problems.map((p) => p.path).sort()).toEqual([
      'notifications.email.from',
      'notifications.email.smtp_server',
      'notifications.email.to',
    ]);
  });

  it('email enabled with server, sender and recipients is valid', () => {
    const { config } = parseConfigText(
      yaml(
        'notifications:',
        '  email:',
        '    enabled: true',
        '    smtp_server: mail.example.com',
        '    from: backup@example.com',
        '    to: [me@example.com, you@example.com]',
      ),
    );
    expect(config.notifications.email.to).toEqual(['me@example.com', 'you@example.com']);
  });
});

describe('log level and secrets', () => {
  it('log_level WARNING is accepted and maps to pino warn', () => {
    const { config } = parseConfigText(yaml('daemon:', '  log_level: WARNING'));
    expect(config.daemon.log_level).toBe('WARNING');
    expect(pinoLevel(config.daemon.log_level)).toBe('warn');
    expect(pinoLevel('DEBUG')).toBe('debug');
    expect(pinoLevel('error')).toBe('error');
    expect(pinoLevel(parseConfigText('').config.daemon.log_level)).toBe('info');
  });

  it('a secret written in the file works but is warned about by its key', () => {
    const value = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    const loaded = parseConfigText(
      yaml('destinations:', '  aws_s3:', `    secret_access_key: ${value}`),
      FILE,
    );
    expect(loaded.inlineSecrets).toEqual({ 'destinations.aws_s3.secret_access_key': value });
    expect(loaded.warnings).toHaveLength(1);
    const warning = loaded.warnings[0]!;
    expect(warning.path).toBe('destinations.aws_s3.secret_access_key');
    expect(warning.line).toBe(3);
    expect(warning.message).toContain('backupd secrets set destinations.aws_s3.secret_access_key');
    expect(warning.message).toContain('AWS_SECRET_ACCESS_KEY');
    expect(warning.message).not.toContain(value);
  });
});

describe('loadConfigFile', () => {
  const tmp = tempDirs('backupd-config-');

  it('reads and validates a file', async () => {
    const file = path.join(tmp(), 'config.yaml');
    writeFileSync(file, yaml('sync:', '  batch_size: 7'));
    const loaded = await loadConfigFile(file);
    expect(loaded.file).toBe(file);
    expect(loaded.config.sync.batch_size).toBe(7);
  });

  it('a missing file says what to do', async () => {
    const file = path.join(tmp(), 'nope.yaml');
    const err = await loadConfigFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/no configuration file/);
    expect((err as Error).message).toContain('--config');
  });
});

describe('findConfigFile', () => {
  const none = () => false;
  const etcOnly = (p: string) => p === '/etc/backupd/config.yaml';

  it('--config comes first, relative to the working folder', () => {
    expect(findConfigFile('my.yaml', { BACKUPD_CONFIG: '/env.yaml' }, '/home/me', etcOnly)).toEqual(
      { file: '/home/me/my.yaml', how: 'flag' },
    );
  });

  it('then BACKUPD_CONFIG', () => {
    expect(
      findConfigFile(undefined, { BACKUPD_CONFIG: '/srv/env.yaml' }, '/home/me', etcOnly),
    ).toEqual({
      file: '/srv/env.yaml',
      how: 'env',
    });
  });

  it('then /etc/backupd/config.yaml when it exists', () => {
    expect(findConfigFile(undefined, {}, '/home/me', etcOnly)).toEqual({
      file: '/etc/backupd/config.yaml',
      how: 'system',
    });
  });

  it('then ./config.yaml', () => {
    expect(findConfigFile(undefined, {}, '/home/me', none)).toEqual({
      file: '/home/me/config.yaml',
      how: 'cwd',
    });
  });
});
