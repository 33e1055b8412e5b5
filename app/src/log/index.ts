export {
  createLogger,
  REDACT_PATHS,
  type LogHandle,
  type LogSetup,
  type Logger,
} from './logger.js';
export { EventRecorder } from './events.js';
export { Redactor, REDACTED, MIN_SECRET_LENGTH } from './redact.js';
export { RotatingFile, type RotationPolicy } from './rotating-file.js';
