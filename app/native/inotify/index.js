// ES module face of the addon: the compiled N-API module (build/Release/inotify.node, built by
// `node-gyp rebuild` on install) and the inotify(7) constants.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const native = require('./build/Release/inotify.node');

/** One inotify instance; see index.d.ts. */
export const Inotify = native.Inotify;

export const IN_ACCESS = native.IN_ACCESS;
export const IN_MODIFY = native.IN_MODIFY;
export const IN_ATTRIB = native.IN_ATTRIB;
export const IN_CLOSE_WRITE = native.IN_CLOSE_WRITE;
export const IN_CLOSE_NOWRITE = native.IN_CLOSE_NOWRITE;
export const IN_CLOSE = native.IN_CLOSE;
export const IN_OPEN = native.IN_OPEN;
export const IN_MOVED_FROM = native.IN_MOVED_FROM;
export const IN_MOVED_TO = native.IN_MOVED_TO;
export const IN_MOVE = native.IN_MOVE;
export const IN_CREATE = native.IN_CREATE;
export const IN_DELETE = native.IN_DELETE;
export const IN_DELETE_SELF = native.IN_DELETE_SELF;
export const IN_MOVE_SELF = native.IN_MOVE_SELF;
export const IN_ALL_EVENTS = native.IN_ALL_EVENTS;
export const IN_UNMOUNT = native.IN_UNMOUNT;
export const IN_Q_OVERFLOW = native.IN_Q_OVERFLOW;
export const IN_IGNORED = native.IN_IGNORED;
export const IN_ONLYDIR = native.IN_ONLYDIR;
export const IN_DONT_FOLLOW = native.IN_DONT_FOLLOW;
export const IN_EXCL_UNLINK = native.IN_EXCL_UNLINK;
export const IN_MASK_ADD = native.IN_MASK_ADD;
export const IN_ISDIR = native.IN_ISDIR;
export const IN_ONESHOT = native.IN_ONESHOT;
/** Undefined on kernels headers older than Linux 4.18. */
export const IN_MASK_CREATE = native.IN_MASK_CREATE;
/** Bytes read from the inotify descriptor per read(2). */
export const READ_BUFFER_SIZE = native.READ_BUFFER_SIZE;
