/**
 * What every command opens: the configuration, the logs, the state. Apart from the daemon itself
 * (daemon/index.ts), so that a one-shot command (`backupd status`, `config check`, ...) does not
 * load the API, Koa and the push half it never uses (about 11 MiB and a third of its start-up).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigService,
  findConfigFile,
  loadConfigFile,
  pinoLevel,
  resolveRuntime,
  type Runtime,
  type RuntimeOverrides,
} from '../config/index.js';
import {
  createLogger,
  EventRecorder,
  Redactor,
  type LogHandle,
  type Logger,
} from '../log/index.js';
import { openState, type State } from '../state/index.js';

export const VERSION: string = (
  JSON.parse(
    readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../../package.json'), 'utf8'),
  ) as { version: string }
).version;

export interface AppContext {
  config: ConfigService;
  readonly runtime: Runtime;
  logger: Logger;
  redactor: Redactor;
  state: State;
  events: EventRecorder;
  close(): Promise<void>;
}

export interface OpenOptions {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  /** Readable log lines on stderr. */
  console?: boolean;
  /** Write the log file and store events (false for read-only commands such as `status`). */
  record?: boolean;
  /** Path overrides: the appliance's standby keeps its state in a volatile folder. */
  overrides?: RuntimeOverrides;
}

export async function openContext(opts: OpenOptions = {}): Promise<AppContext> {
  const env = opts.env ?? process.env;
  const { file } = findConfigFile(opts.configPath, env);
  const loaded = await loadConfigFile(file);
  const runtime = resolveRuntime(loaded, env, opts.overrides);
  const config = new ConfigService(loaded, runtime, env, opts.overrides);
  const redactor = new Redactor(() => config.runtime.secretValues());
  const record = opts.record ?? true;
  const cfg = runtime.config.daemon;
  const log: LogHandle = createLogger({
    level: pinoLevel(cfg.log_level),
    redactor,
    console: opts.console,
    ...(record
      ? {
          file: {
            path: runtime.logFile,
            maxBytes: cfg.log_max_size_mb * 1024 * 1024,
            maxFiles: cfg.log_max_files,
            retentionDays: cfg.log_retention_days,
          },
        }
      : {}),
  });
  for (const w of loaded.warnings)
    log.logger.warn({ source: 'config', key: w.path, line: w.line }, `${w.path}: ${w.message}`);

  let state: State;
  try {
    state = openState(runtime.database);
  } catch (err) {
    log.close();
    throw err;
  }
  const events = new EventRecorder(state.events, {}, (err) =>
    process.stderr.write(`cannot store log events: ${err.message}\n`),
  );
  if (record) log.setEventSink((e) => events.record(e));
  config.on('changed', (rt) => {
    redactor.refresh();
    log.logger.level = pinoLevel(rt.config.daemon.log_level);
  });

  return {
    config,
    get runtime() {
      return config.runtime;
    },
    logger: log.logger,
    redactor,
    state,
    events,
    async close() {
      log.setEventSink(undefined);
      await events.flush();
      await state.close();
      log.close();
    },
  };
}
