/**
 * pino JSON logs: to the rotating log file, to the console in a readable form, and (info and
 * above) into the state as events. Every line passes the redactor before it goes anywhere.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel, NewEvent } from '../state/index.js';
import { REDACTED, type Redactor } from './redact.js';
import { RotatingFile, type RotationPolicy } from './rotating-file.js';

export type { Logger } from 'pino';

export interface LogSetup {
  level: 'debug' | 'info' | 'warn' | 'error';
  file?: { path: string } & RotationPolicy;
  /** Write readable lines to stderr (the journal, or the terminal). */
  console?: boolean;
  redactor: Redactor;
}

export interface LogHandle {
  logger: Logger;
  /** Where stored events go once the state is open. */
  setEventSink(sink: ((e: NewEvent) => void) | undefined): void;
  close(): void;
}

const LEVEL_NAMES: Record<number, LogLevel> = {
  10: 'debug',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};
const OWN_KEYS = new Set(['level', 'time', 'msg', 'source', 'pid', 'hostname']);

/** Field names whose values are never logged, wherever they appear. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'secret',
  '*.secret',
  '*.secret_key',
  '*.secret_access_key',
  '*.api_key',
  '*.refresh_token',
  '*.access_token',
  '*.smtp_password',
  'headers.authorization',
  'headers.cookie',
  '*.headers.authorization',
  '*.headers.cookie',
];

export function createLogger(setup: LogSetup): LogHandle {
  const file = setup.file ? new RotatingFile(setup.file.path, setup.file) : undefined;
  let sink: ((e: NewEvent) => void) | undefined;

  // A log line that cannot reach the file (the data disk pulled out, a full disk) must not fail
  // what was being logged: the line still goes to the console and the state, the failure is said
  // once on stderr (the journal), and each later line tries the file again (reopened).
  let fileFailing = false;
  const writeFile = (line: string) => {
    if (!file) return;
    try {
      file.write(line);
      if (fileFailing) process.stderr.write(`backupd: writing ${file.file} works again\n`);
      fileFailing = false;
    } catch (err) {
      file.close();
      if (!fileFailing)
        process.stderr.write(
          `backupd: cannot write the log file ${file.file} (${(err as Error).message}); log lines go to the journal and the state until it works again\n`,
        );
      fileFailing = true;
    }
  };

  const destination = {
    write(raw: string) {
      const line = setup.redactor.redact(raw);
      writeFile(line);
      if (!setup.console && !sink) return;
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const level = LEVEL_NAMES[entry.level as number] ?? 'info';
      if (setup.console) {
        const extra = entry.err ? ` ${(entry.err as { message?: string }).message ?? ''}` : '';
        process.stderr.write(
          `${entry.time as string} ${level.toUpperCase().padEnd(5)} [${(entry.source as string) ?? 'daemon'}] ${entry.msg as string}${extra}\n`,
        );
      }
      if (sink) {
        const data: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(entry)) if (!OWN_KEYS.has(k)) data[k] = v;
        sink({
          time: Date.parse(entry.time as string) || Date.now(),
          level,
          source: (entry.source as string) ?? 'daemon',
          message: String(entry.msg ?? ''),
          data: Object.keys(data).length ? data : null,
        });
      }
    },
  };

  const logger = pino(
    {
      level: setup.level,
      // `source` comes from child loggers; a line without one is the daemon's.
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      formatters: { level: (_label, number) => ({ level: number }) },
    },
    destination,
  );
  return {
    logger,
    setEventSink: (s) => {
      sink = s;
    },
    close: () => file?.close(),
  };
}
