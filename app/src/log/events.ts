/**
 * Log events stored in the state, for `GET /api/logs` and the live stream. Lines are batched
 * into one transaction every few hundred milliseconds, so a burst of logging costs one write.
 */
import { EventEmitter } from 'node:events';
import {
  LOG_LEVELS,
  type EventRecord,
  type EventRepository,
  type LogLevel,
  type NewEvent,
} from '../state/index.js';

export class EventRecorder {
  private buffer: NewEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private readonly emitter = new EventEmitter();
  private readonly minLevel: number;

  constructor(
    private readonly repo: EventRepository,
    opts: { minLevel?: LogLevel; flushMs?: number; maxBatch?: number } = {},
    private readonly onError: (err: Error) => void = () => {},
  ) {
    this.minLevel = LOG_LEVELS.indexOf(opts.minLevel ?? 'info');
    this.flushMs = opts.flushMs ?? 250;
    this.maxBatch = opts.maxBatch ?? 500;
    this.emitter.setMaxListeners(0);
  }
  private readonly flushMs: number;
  private readonly maxBatch: number;

  record(event: NewEvent): void {
    if (LOG_LEVELS.indexOf(event.level) < this.minLevel) return;
    this.buffer.push(event);
    if (this.buffer.length >= this.maxBatch) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.flushMs);
  }

  /** Called with each stored event (with its id), in order. */
  subscribe(listener: (e: EventRecord) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.buffer;
    this.buffer = [];
    this.flushing = this.flushing.then(async () => {
      if (batch.length === 0) return;
      try {
        for (const stored of await this.repo.append(batch)) this.emitter.emit('event', stored);
      } catch (err) {
        this.onError(err as Error);
      }
    });
    return this.flushing;
  }
}
