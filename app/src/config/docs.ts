/**
 * docs/configuration.md, generated from the schema (`npm run docs`); a unit test fails
 * when the committed file and the schema disagree.
 */
import { configKeys } from './keys.js';
import { ENV_SECRETS } from './runtime.js';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function configReference(): string {
  const keys = configKeys();
  const out: string[] = [];
  out.push(
    '<!-- Generated from app/src/config/schema.ts by `npm run docs`. Do not edit by hand. -->',
    '# Configuration reference',
    '',
    'backupd reads one YAML file: the file given with `--config FILE`, else `$BACKUPD_CONFIG`, else',
    '`/etc/backupd/config.yaml`, else `./config.yaml`. Every key is optional and has the default shown;',
    'keys the daemon does not know are an error (a typo never silently turns a setting off).',
    '`backupd config check` validates a file and names each bad key, its line, the value and what is expected.',
    'Relative paths are relative to the folder of the configuration file.',
    '',
    "The keys are those of section 10.1 of the specification; keys marked **added** are this project's additions.",
    '',
    '## Secrets',
    '',
    'Keys marked **secret** are best kept out of this file. Each is looked up, in this order:',
    '1. its environment variable (section 10.2 of the specification), when set;',
    '2. the encrypted secrets store (`security.secrets_file`, AES-256-GCM, mode 0600, under the key in',
    '   `security.secrets_key_file`), written with `backupd secrets set NAME` (value read from standard input)',
    '   or through `PUT /api/config`;',
    '3. the value in this file (works, but `backupd config check` warns about it).',
    '',
    'The API never returns a secret value: `GET /api/config` shows only whether each is set and where from.',
    'Log lines and API responses are scrubbed of every known secret value.',
    '',
    '## Environment variables',
    '',
    '| variable | meaning |',
    '| --- | --- |',
    '| `BACKUPD_CONFIG` | the configuration file, when `--config` is not given |',
  );
  for (const k of keys.filter((k) => k.env)) out.push(`| \`${k.env}\` | \`${k.path}\` |`);
  for (const [name, env] of Object.entries(ENV_SECRETS)) {
    out.push(
      `| \`${env}\` | secret \`${name}\`: a Drive refresh token for a scripted set-up, with \`GOOGLE_CLIENT_ID\` and \`GOOGLE_CLIENT_SECRET\` (docs/google-oauth-client.md) |`,
    );
  }
  out.push(
    '| `DATABASE_URL` | the state database: `sqlite:///state.db` (relative to `daemon.state_dir`) or `sqlite:////absolute/path.db`; default `<state_dir>/state.db`. PostgreSQL is not supported yet. |',
    '| `GOOGLE_API_ROOT` | Google API root, default `https://www.googleapis.com` (Drive v3 under `/drive/v3`) |',
    '| `GOOGLE_OAUTH_TOKEN_URL` | OAuth token endpoint, default `https://oauth2.googleapis.com/token` |',
    '| `GOOGLE_PHOTOS_PICKER_ROOT` | Photos Picker API root, default `https://photospicker.googleapis.com` |',
    '',
  );

  for (const section of keys.filter((k) => k.section)) {
    const depth = section.path.split('.').length;
    const leaves = keys.filter(
      (k) =>
        !k.section &&
        k.path.startsWith(`${section.path}.`) &&
        k.path.split('.').length === depth + 1,
    );
    out.push(`${'#'.repeat(Math.min(depth + 1, 4))} \`${section.path}\``, '');
    if (section.description)
      out.push(section.description + (section.addition ? ' (**added**)' : ''), '');
    if (leaves.length === 0) continue;
    out.push('| key | type | default | meaning |', '| --- | --- | --- | --- |');
    for (const k of leaves) {
      const tags = [
        k.secret ? '**secret**' : '',
        k.addition ? '**added**' : '',
        k.env ? `env \`${k.env}\`` : '',
      ]
        .filter(Boolean)
        .join(', ');
      const dflt = k.default === undefined ? '' : `\`${JSON.stringify(k.default)}\``;
      out.push(
        `| \`${k.path.split('.').pop()}\` | ${cell(k.type)} | ${cell(dflt)} | ${cell(k.description)}${tags ? ` (${tags})` : ''} |`,
      );
    }
    out.push('');
  }
  return out.join('\n');
}
