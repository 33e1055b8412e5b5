#!/usr/bin/env node
/**
 * `backupd`: the command line of the appliance. Every command takes --config FILE; without it
 * BACKUPD_CONFIG, then /etc/backupd/config.yaml, then ./config.yaml.
 */
import { parseArgs } from 'node:util';
import {
  ConfigError,
  findConfigFile,
  formatProblems,
  loadConfigFile,
  resolveRuntime,
  RuntimeError,
  SecretStoreError,
} from '../config/index.js';
// The daemon (API, push half) and `sync --once` are loaded by their commands only: the other
// commands start faster and smaller without them.
import { openContext, VERSION, type AppContext } from '../daemon/context.js';
import { Access } from '../auth/index.js';
import { StateError } from '../state/index.js';
import { collectStatus, type StatusReport } from '../status/index.js';
import type { SyncSummary } from '../sync/once.js';
import { RcloneMissingError } from '../push/rclone.js';
import { lockState, StateLockedError } from '../daemon/lock.js';
import {
  PROBE_DESTINATIONS,
  ProbeRequestError,
  probeDestinations,
  type ProbeReport,
} from '../push/probe.js';

const USAGE = `backupd ${VERSION}: Google Drive and Photos, mirrored and pushed, verified, to S3 and a European provider.

Usage: backupd <command> [--config FILE]

  start                    run the daemon: watch the mirror and push every change to the
                           destinations, the API and admin panel, systemd readiness and watchdog
  sync --once [--json] [--dry-run] [--allow-empty-source] [--confirm-deletions]
                           one complete pass: pull, push everything pending, verify; exit 0
                           only if all succeeded. --dry-run: say what would be sent, moved and
                           trashed; --confirm-deletions: release deletions the mass-deletion
                           guard holds
  status [--json]          what the appliance is doing
  config check [--json]    validate the configuration; non-zero exit with the bad keys named
  config test [--json] [--destination NAME] [--apply FIX]...
                           test each destination for real (credentials, a probe file, bucket
                           versioning, encryption, lifecycle); exit 0 only if all passed.
                           --apply FIX (repeatable) applies a fix the test offered, then tests again
  secrets set NAME         store a secret (value read from standard input), e.g.
                           destinations.aws_s3.secret_access_key
  secrets list             the names of the stored secrets (never the values)
  secrets delete NAME      remove a stored secret
  reset-password           forget the admin password; the next start prints a new setup code
  disk scan                (appliance, as root) list the disks into <disk_spool>/disks.json,
                           mount the adopted data disk when it is there, unmount it when gone
  disk adopt FILE          (appliance, as root) carry out one adoption request file
  disk adopt-pending       (appliance, as root) carry out every request in <disk_spool>/requests/
  version                  print the version

Configuration: --config FILE, else $BACKUPD_CONFIG, else /etc/backupd/config.yaml, else ./config.yaml.
Documentation: docs/configuration.md, docs/api.md, docs/troubleshooting.md.`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean' },
      once: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      'allow-empty-source': { type: 'boolean' },
      'confirm-deletions': { type: 'boolean' },
      destination: { type: 'string' },
      apply: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
    },
  });
  const [command, sub, arg] = positionals;
  if (values.version || command === 'version') return print(VERSION);
  if (values.help || !command || command === 'help') return print(USAGE);

  switch (command) {
    case 'start':
      return start(values.config);
    case 'sync':
      if (!values.once)
        throw new UsageError(
          '`backupd sync` needs --once (the continuous sync is `backupd start`).',
        );
      return sync(values.config, {
        json: !!values.json,
        dryRun: !!values['dry-run'],
        allowEmptySource: !!values['allow-empty-source'],
        confirmDeletions: !!values['confirm-deletions'],
      });
    case 'status':
      return status(values.config, !!values.json);
    case 'config':
      if (sub === 'test')
        return configTest(values.config, {
          json: !!values.json,
          destination: values.destination,
          apply: values.apply,
        });
      if (sub !== 'check')
        throw new UsageError(
          'Usage: backupd config check [--config FILE] [--json], or backupd config test [--json] [--destination NAME] [--apply FIX]...',
        );
      return configCheck(values.config, !!values.json);
    case 'secrets':
      return secrets(values.config, sub, arg);
    case 'disk':
      return disk(values.config, sub, arg);
    case 'reset-password':
      return resetPassword(values.config);
    default:
      throw new UsageError(`unknown command "${command}".\n\n${USAGE}`);
  }
}

function print(text: string): number {
  process.stdout.write(`${text}\n`);
  return 0;
}

async function withContext(
  configPath: string | undefined,
  fn: (ctx: AppContext) => Promise<number>,
  record = true,
): Promise<number> {
  // On the appliance the state is on the data disk: without it, opening the state would create
  // an empty one in the bare mount point (on the SD card).
  const appliance = await applianceConfig(configPath);
  if (appliance) {
    const { mountProbe } = await import('../disk/probe.js');
    if (!mountProbe()(appliance.data_disk))
      throw new UsageError(
        `the data disk is not mounted at ${appliance.data_disk}, and this command needs the state on it. Plug the disk in (docs/troubleshooting.md, "The data disk (appliance)"); the panel and GET /api/status work meanwhile.`,
      );
  }
  const ctx = await openContext({ configPath, console: false, record });
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/** The appliance section of the configuration, if any (without opening the state). */
async function applianceConfig(configPath: string | undefined) {
  const { file } = findConfigFile(configPath);
  return (await loadConfigFile(file)).config.appliance;
}

async function resetPassword(configPath: string | undefined): Promise<number> {
  const done = () =>
    print(
      'The admin password is forgotten and every session ended. Restart the daemon: it prints a new setup code.',
    );
  // On the appliance the password lives in the access db on the system disk, not in the state.
  const appliance = await applianceConfig(configPath);
  if (appliance) {
    const { openState } = await import('../state/index.js');
    const state = openState({ kind: 'sqlite', path: appliance.access_db });
    try {
      await new Access({ state }).resetPassword();
    } finally {
      await state.close();
    }
    return done();
  }
  return withContext(configPath, async (ctx) => {
    await new Access({ state: ctx.state }).resetPassword();
    return done();
  });
}

const printSetupCode = (port: number, code: string) =>
  process.stdout.write(
    `\n  backupd is running. Open http://127.0.0.1:${port}/ (or http://backup.local/ on the appliance)\n  and enter this one-time setup code to set the admin password:\n\n      ${code}\n\n`,
  );

async function waitForSignal(stop: (reason: string) => Promise<void>): Promise<void> {
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      void stop(signal).then(resolve);
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
}

async function start(configPath: string | undefined): Promise<number> {
  const appliance = await applianceConfig(configPath);
  if (appliance) {
    const { startAppliance } = await import('../daemon/appliance.js');
    let printed: string | undefined;
    const { file } = findConfigFile(configPath);
    const port = (await loadConfigFile(file)).config.daemon.api_port;
    const daemon = await startAppliance(appliance, {
      configPath,
      onSetupCode: (code) => {
        if (code !== printed) printSetupCode(port, code);
        printed = code;
      },
      onFatal: () => process.exit(1),
    });
    await waitForSignal((reason) => daemon.stop(reason));
    return 0;
  }
  const { startDaemon } = await import('../daemon/index.js');
  const ctx = await openContext({ configPath, console: true });
  const daemon = await startDaemon(ctx);
  if (daemon.setupCode) printSetupCode(ctx.runtime.config.daemon.api_port, daemon.setupCode);
  await waitForSignal((reason) => daemon.stop(reason));
  return 0;
}

/** `backupd disk ...`: the root side of the data disk (run by the disk units, as root). */
async function disk(
  configPath: string | undefined,
  action: string | undefined,
  file: string | undefined,
): Promise<number> {
  const usage = 'Usage: backupd disk scan | adopt REQUEST.json | adopt-pending [--config FILE]';
  if (action !== 'scan' && action !== 'adopt' && action !== 'adopt-pending')
    throw new UsageError(usage);
  if (action === 'adopt' && !file) throw new UsageError(usage);
  const appliance = await applianceConfig(configPath);
  if (!appliance)
    throw new UsageError(
      'the configuration has no appliance section: the data disk is managed on the appliance image only (docs/appliance.md).',
    );
  const d = await import('../disk/index.js');
  const { realDiskSystem } = await import('../disk/system.js');
  const { readFileSync } = await import('node:fs');
  // journald reads the <N> prefix as the priority of the line.
  const prio = { error: 3, warn: 4, info: 6 } as const;
  const o: import('../disk/index.js').HelperOptions = {
    dataDisk: appliance.data_disk,
    spool: appliance.disk_spool,
    uuidFile: d.DEFAULT_UUID_FILE,
    user: 'backupd',
    log: (level, message) => process.stderr.write(`<${prio[level]}>backupd disk: ${message}\n`),
  };
  if (action === 'scan') {
    const r = await d.scan(realDiskSystem, o);
    return print(
      `${r.disks.length} disk(s) listed in ${d.spoolPaths(o.spool).disks}; data disk ${r.data_disk.mounted ? `mounted at ${r.data_disk.mount_point}` : 'not mounted'}`,
    );
  }
  const results =
    action === 'adopt'
      ? [
          await d.adopt(
            realDiskSystem,
            o,
            d.adoptRequest.parse(JSON.parse(readFileSync(file!, 'utf8'))),
          ),
        ]
      : await d.adoptPending(realDiskSystem, o);
  for (const r of results)
    print(`${r.disk}: ${r.state}${r.error ? `: ${r.error}\n  fix: ${r.fix}` : ''}`);
  return results.every((r) => r.state === 'done') ? 0 : 1;
}

async function sync(
  configPath: string | undefined,
  opts: { json: boolean; dryRun: boolean; allowEmptySource: boolean; confirmDeletions: boolean },
): Promise<number> {
  const { syncOnce } = await import('../sync/once.js');
  const { DrivePuller } = await import('../google/drive/puller.js');
  const { createGoogle } = await import('../google/index.js');
  return withContext(configPath, async (ctx) => {
    const lock = lockState(
      ctx.runtime.stateDir,
      opts.dryRun ? 'sync --once --dry-run' : 'sync --once',
    );
    const controller = new AbortController();
    const abort = () => controller.abort();
    process.once('SIGINT', abort);
    process.once('SIGTERM', abort);
    const summary = await syncOnce(
      {
        runtime: ctx.runtime,
        state: ctx.state,
        logger: ctx.logger,
        configView: () => ctx.config.view(),
      },
      {
        ...opts,
        signal: controller.signal,
        // Dry runs change nothing, the mirror included: no pull.
        ...(opts.dryRun
          ? {}
          : {
              pullers: [
                new DrivePuller({
                  runtime: () => ctx.runtime,
                  state: ctx.state,
                  logger: ctx.logger,
                  accounts: createGoogle({
                    config: ctx.config,
                    state: ctx.state,
                    logger: ctx.logger,
                    env: process.env,
                  }).accounts,
                }),
              ],
            }),
      },
    ).finally(() => lock.release());
    process.off('SIGINT', abort);
    process.off('SIGTERM', abort);
    print(opts.json ? JSON.stringify(summary, null, 2) : formatSummary(summary));
    return summary.ok ? 0 : 1;
  });
}

export function formatSummary(s: SyncSummary): string {
  const lines = [
    `Sync pass ${s.run_id}${s.dry_run ? ' (dry run: nothing was changed)' : ''}: ${s.ok ? 'everything succeeded' : 'FAILED'}`,
  ];
  for (const [name, src] of Object.entries(s.sources))
    lines.push(
      `  source ${name}: ${src.pull}${src.note ? ` (${src.note})` : ''}${src.error ? `: ${src.error.message}` : ''}`,
    );
  const dests = Object.entries(s.destinations);
  if (dests.length === 0)
    lines.push(
      '  no destination is enabled: nothing was pushed. Enable one in the configuration (docs/configuration.md).',
    );
  for (const [name, d] of dests) {
    const did = s.dry_run
      ? `would send ${d.transferred} file(s), move ${d.moved}, trash ${d.trashed}`
      : `sent ${d.transferred} file(s) (${d.bytes} bytes uploaded, ${d.copied} copied at the destination), ${d.moved} moved, ${d.trashed} to the trash, ${d.verified} verified`;
    lines.push(
      d.ok
        ? `  ${name} (${d.target}): ok, ${did}`
        : `  ${name} (${d.target}): FAILED: ${d.error?.message ?? 'unknown error'}${d.error?.fix ? `\n      fix: ${d.error.fix}` : ''}${d.left ? `\n      ${d.left} change(s) left for the next pass` : ''}`,
    );
    for (const f of d.would_send ?? []) lines.push(`      send   ${f}`);
    for (const m of d.would_move ?? []) lines.push(`      move   ${m.from} -> ${m.to}`);
    for (const f of d.would_trash ?? []) lines.push(`      trash  ${f}`);
  }
  return lines.join('\n');
}

async function status(configPath: string | undefined, json: boolean): Promise<number> {
  return withContext(
    configPath,
    async (ctx) => {
      const report = await collectStatus({
        runtime: ctx.runtime,
        state: ctx.state,
        version: VERSION,
        startedAt: Date.now(),
      });
      return print(json ? JSON.stringify(report, null, 2) : formatStatus(report));
    },
    false,
  );
}

const mib = (bytes: number) => Number((bytes / (1024 * 1024)).toFixed(1));

function formatStatus(r: StatusReport): string {
  const lines = [`backupd ${r.version}: ${r.state}${r.mode === 'standby' ? ' (standby)' : ''}`];
  for (const a of r.alerts) lines.push(`  alert ${a.code}: ${a.message}\n    fix: ${a.fix}`);
  for (const s of r.sources) {
    lines.push(
      `  source ${s.name}: ${s.enabled ? 'enabled' : 'disabled'}, ${s.local_path}, ${s.accounts.length} account(s)`,
    );
    for (const a of s.accounts)
      lines.push(`    ${a.email}: ${a.status}${a.error ? `: ${a.error.message}` : ''}`);
  }
  if (r.destinations.length === 0) lines.push('  no destination is enabled');
  for (const d of r.destinations) {
    lines.push(
      `  destination ${d.name} (${d.type}, ${d.target}): ${d.health}, last success ${d.last_success_at ?? 'never'}, ${mib(d.bytes_sent)} MiB sent${d.last_activity_at ? ` (last ${d.last_activity_at})` : ''}${d.error ? `\n    error: ${d.error.message}${d.error.fix ? `\n    fix: ${d.error.fix}` : ''}` : ''}`,
    );
  }
  lines.push(`  queue: ${r.queue.pending} pending, ${r.queue.failed} failed, ${r.queue.held} held`);
  if (r.last_run)
    lines.push(
      `  last run: #${r.last_run.id} ${r.last_run.kind} ${r.last_run.status}, started ${r.last_run.started_at}`,
    );
  return lines.join('\n');
}

async function configCheck(configPath: string | undefined, json: boolean): Promise<number> {
  const { file } = findConfigFile(configPath);
  try {
    const loaded = await loadConfigFile(file);
    resolveRuntime(loaded);
    if (json) return print(JSON.stringify({ ok: true, file, warnings: loaded.warnings }, null, 2));
    print(`${file} is valid.`);
    for (const w of loaded.warnings)
      print(`  warning: ${w.path}${w.line ? ` (line ${w.line})` : ''}: ${w.message}`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError && json) {
      print(JSON.stringify({ ok: false, file, problems: err.problems }, null, 2));
      return 2;
    }
    throw err;
  }
}

async function configTest(
  configPath: string | undefined,
  opts: { json: boolean; destination?: string; apply?: string[] },
): Promise<number> {
  const destination = opts.destination as (typeof PROBE_DESTINATIONS)[number] | undefined;
  if (destination && !PROBE_DESTINATIONS.includes(destination))
    throw new UsageError(
      `unknown destination "${opts.destination}": the destinations are ${PROBE_DESTINATIONS.join(', ')}.`,
    );
  const { file } = findConfigFile(configPath);
  const runtime = resolveRuntime(await loadConfigFile(file));
  let report: ProbeReport;
  try {
    report = await probeDestinations(runtime, { destination, apply: opts.apply });
  } catch (err) {
    if (err instanceof ProbeRequestError) throw new UsageError(`${err.message} ${err.fix}`);
    throw err;
  }
  print(opts.json ? JSON.stringify(report, null, 2) : formatProbe(report));
  return report.ok ? 0 : 1;
}

export function formatProbe(r: ProbeReport): string {
  const lines = [
    `Configuration test (${(r.duration_ms / 1000).toFixed(1)} s): ${r.ok ? 'every check passed' : r.usable ? 'works, with warnings' : 'FAILED'}`,
  ];
  if (r.destinations.length === 0) lines.push(`  ${r.message}`);
  for (const a of r.applied) lines.push(`  applied ${a.id}: ${a.message}`);
  for (const d of r.destinations) {
    lines.push(
      `  ${d.name} (${d.type}, ${d.target}${d.enabled ? '' : ', not enabled'}): ${d.ok ? 'ok' : d.usable ? 'usable, with warnings' : 'FAILED'}`,
    );
    for (const c of d.checks) {
      lines.push(`    ${c.status.padEnd(11)} ${c.id.padEnd(10)} ${c.message}`);
      if (c.fix)
        lines.push(
          `${' '.repeat(16)}fix ${c.fix.automatic ? `(backupd config test --apply ${c.fix.id})` : c.fix.id}: ${c.fix.description}`,
        );
    }
  }
  return lines.join('\n');
}

async function secrets(
  configPath: string | undefined,
  action: string | undefined,
  name: string | undefined,
): Promise<number> {
  const { file } = findConfigFile(configPath);
  const runtime = resolveRuntime(await loadConfigFile(file));
  if (action === 'list') {
    const list = runtime.secrets.list();
    if (list.length === 0) return print(`No secrets stored in ${runtime.secrets.file}.`);
    return print(list.map((s) => `${s.name}\t(set ${s.updated_at})`).join('\n'));
  }
  if (!name) throw new UsageError('Usage: backupd secrets set|delete NAME [--config FILE]');
  if (action === 'delete') {
    return print(runtime.secrets.delete(name) ? `${name} removed.` : `${name} was not stored.`);
  }
  if (action !== 'set') throw new UsageError('Usage: backupd secrets set|list|delete [NAME]');
  if (process.stdin.isTTY)
    process.stderr.write(`Value of ${name} (input is not shown; end with Enter): `);
  const value = (await readStdin(!!process.stdin.isTTY)).replace(/\r?\n$/, '');
  if (value.length < 6)
    throw new UsageError(
      `the value of ${name} is too short (6 characters at least); nothing was stored`,
    );
  runtime.secrets.set(name, value);
  return print(
    `${name} stored in ${runtime.secrets.file} (encrypted). Restart the daemon, or change the config through the API, for it to take effect.`,
  );
}

async function readStdin(tty: boolean): Promise<string> {
  if (tty) process.stdin.setRawMode?.(false);
  const chunks: Buffer[] = [];
  if (tty) {
    return new Promise((resolve) => {
      process.stdin.once('data', (d: Buffer) => {
        process.stdin.pause();
        process.stderr.write('\n');
        resolve(d.toString('utf8'));
      });
    });
  }
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`backupd: ${formatProblems(err.file, err.problems)}\n`);
    } else if (
      err instanceof UsageError ||
      err instanceof RuntimeError ||
      err instanceof SecretStoreError ||
      err instanceof StateError ||
      err instanceof RcloneMissingError
    ) {
      process.stderr.write(`backupd: ${err.message}\n`);
    } else if (err instanceof StateLockedError) {
      process.stderr.write(`backupd: ${err.message}\n  fix: ${err.fix}\n`);
    } else if (
      (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
      (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
    ) {
      process.stderr.write(
        `backupd: ${(err as Error).message}\nRun \`backupd help\` for the commands.\n`,
      );
    } else {
      process.stderr.write(`backupd: ${(err as Error).message ?? String(err)}\n`);
      if (process.env.BACKUPD_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
      process.exitCode = 1;
      return;
    }
    process.exitCode = 2;
  },
);
