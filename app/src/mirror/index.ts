// The mirror folder on the data disk: watching it for changes (raw inotify).
export {
  BOOKKEEPING_DIR,
  globExcluder,
  globToRegExp,
  PARTIAL_SUFFIX,
  WATCH_MASK,
  watchTree,
  type Change,
  type InotifyFactory,
  type InotifyLike,
  type RescanReason,
  type WarningCode,
  type Watcher,
  type WatchOptions,
  type WatchWarning,
} from './watcher.js';
