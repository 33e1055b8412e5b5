/** One event as read from the inotify descriptor (see inotify(7)). */
export interface InotifyEvent {
  /** Watch descriptor the event is about; -1 for IN_Q_OVERFLOW. */
  wd: number;
  /** IN_* bits (an unsigned 32-bit number). */
  mask: number;
  /** Ties an IN_MOVED_FROM to its IN_MOVED_TO; 0 otherwise. */
  cookie: number;
  /** Entry name inside the watched directory; '' for events about the directory itself. */
  name: string;
}

/** A system error from the kernel, shaped like Node's own: code 'ENOENT', errno -2, syscall. */
export interface InotifyError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/**
 * One inotify instance: a non-blocking descriptor polled on the Node event loop (no thread).
 * `onEvents` receives every event read in one wake-up, in kernel order. The process is kept
 * alive while the instance is open (unless `unref()` is called); `close()` releases the
 * descriptor and with it every watch. An exception thrown by `onEvents` is an uncaught
 * exception, as with Node's own callbacks.
 */
export declare class Inotify {
  constructor(onEvents: (events: InotifyEvent[]) => void);
  /**
   * inotify_add_watch(2): returns the watch descriptor (the same one again for an inode already
   * watched). Throws an {@link InotifyError}: ENOENT, EACCES, ENOTDIR (with IN_ONLYDIR), ENOSPC
   * (fs.inotify.max_user_watches reached), EBADF once closed.
   */
  addWatch(path: string, mask: number): number;
  /** inotify_rm_watch(2). Throws EINVAL for a descriptor no longer watched. */
  rmWatch(wd: number): void;
  /** Closes the descriptor; idempotent. No event is delivered after it returns. */
  close(): void;
  /** Keep the process alive while open (the default). */
  ref(): this;
  /** Do not keep the process alive for this instance. */
  unref(): this;
  readonly closed: boolean;
}

export declare const IN_ACCESS: number;
export declare const IN_MODIFY: number;
export declare const IN_ATTRIB: number;
export declare const IN_CLOSE_WRITE: number;
export declare const IN_CLOSE_NOWRITE: number;
export declare const IN_CLOSE: number;
export declare const IN_OPEN: number;
export declare const IN_MOVED_FROM: number;
export declare const IN_MOVED_TO: number;
export declare const IN_MOVE: number;
export declare const IN_CREATE: number;
export declare const IN_DELETE: number;
export declare const IN_DELETE_SELF: number;
export declare const IN_MOVE_SELF: number;
export declare const IN_ALL_EVENTS: number;
export declare const IN_UNMOUNT: number;
export declare const IN_Q_OVERFLOW: number;
export declare const IN_IGNORED: number;
export declare const IN_ONLYDIR: number;
export declare const IN_DONT_FOLLOW: number;
export declare const IN_EXCL_UNLINK: number;
export declare const IN_MASK_ADD: number;
export declare const IN_ISDIR: number;
export declare const IN_ONESHOT: number;
/** Undefined when built against kernel headers older than Linux 4.18. */
export declare const IN_MASK_CREATE: number | undefined;
/** Bytes read from the inotify descriptor per read(2). */
export declare const READ_BUFFER_SIZE: number;
