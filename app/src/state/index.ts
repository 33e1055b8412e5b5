import { openSqliteState } from './sqlite/index.js';
import type { State } from './types.js';

export * from './types.js';
export { StateError } from './sqlite/index.js';

/** Opens the state named by a resolved database location; migrations run here. */
export function openState(database: { kind: 'sqlite'; path: string }): State {
  return openSqliteState(database.path);
}
