export class StateError extends Error {
  override name = 'StateError';
}
