/**
 * What the running daemon throws away so that its state stays the size of what it does, not of
 * how long it has run: events and finished queue items older than the log retention. A Pi
 * pushing a busy Drive for a year would otherwise carry every queue item ever.
 */
import type { State } from '../state/index.js';

export interface Pruned {
  events: number;
  queueItems: number;
}

export async function housekeep(state: State, retentionMs: number, now: number): Promise<Pruned> {
  const before = now - retentionMs;
  const events = await state.events.prune(before);
  // Finished items only: pending, running and failed ones are work still to do or to show.
  const queueItems = await state.queue.pruneDone(before);
  return { events, queueItems };
}
