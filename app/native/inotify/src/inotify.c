/*
 * Raw Linux inotify for Node, in plain C against node_api.h (N-API 8).
 *
 * One Inotify object owns one inotify instance: a non-blocking file descriptor from
 * inotify_init1(IN_NONBLOCK | IN_CLOEXEC), polled by a uv_poll_t on the Node event loop of the
 * environment that created it. No thread, no timer: when the kernel has events, libuv wakes the
 * loop, on_readable() reads the descriptor until EAGAIN and hands the whole batch to the
 * JavaScript callback in one call.
 *
 * Lifetime:
 *  - while open, the object holds a strong reference to itself (so the garbage collector cannot
 *    close a watcher that is still delivering events) and the poll handle is referenced on the
 *    loop (so the process stays alive while a watcher is open, like fs.watch);
 *  - close() stops polling, closes the descriptor (the kernel drops every watch), releases the
 *    references and closes the poll handle; the handle's memory is freed in its close callback;
 *  - the struct itself is freed once both the JavaScript object is finalized and the handle's
 *    close callback has run, whichever comes last;
 *  - an asynchronous environment cleanup hook closes a watcher still open when its environment
 *    goes away (a worker thread ending), so libuv's loop can close cleanly.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

/* Room for many events per read(2); the kernel never splits an event, and a read into a buffer
 * smaller than one event with a NAME_MAX name fails with EINVAL, so this must exceed that. */
#define READ_BUFFER_SIZE (64 * 1024)
/* Read at most this much per wake-up before handing the batch over; the poll is level-triggered,
 * so whatever is left is read on the next loop iteration (other callbacks get a turn). */
#define MAX_BYTES_PER_WAKEUP (1024 * 1024)

typedef struct watcher {
  napi_env env;
  int fd;              /* -1 once closed */
  uv_poll_t *poll;     /* NULL once closing started */
  int closing;         /* uv_close() issued, close callback pending */
  int finalized;       /* the JavaScript object is gone */
  char *buf;           /* READ_BUFFER_SIZE bytes, while open */
  napi_ref callback;   /* onEvents, while open */
  napi_ref self;       /* strong reference to the object, while open */
  napi_async_context async_context;
  napi_async_cleanup_hook_handle cleanup;
} watcher_t;

#define CHECK(env, call)                                                                        \
  do {                                                                                          \
    napi_status status_ = (call);                                                               \
    if (status_ != napi_ok) {                                                                   \
      throw_napi_failure((env), #call);                                                         \
      return NULL;                                                                              \
    }                                                                                           \
  } while (0)

static void throw_napi_failure(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "inotify addon: %s failed: %s", what,
           info && info->error_message ? info->error_message : "unknown N-API error");
  napi_throw_error(env, "ERR_INOTIFY_NAPI", msg);
}

/* An Error like Node's system errors: code 'ENOENT', errno -2, syscall, path. */
static napi_value errno_error(napi_env env, int err, const char *syscall, const char *path) {
  const char *name = uv_err_name(-err);
  const char *text = uv_strerror(-err);
  const char *hint = "";
  if (err == ENOSPC && strcmp(syscall, "inotify_add_watch") == 0)
    hint = " (the inotify watch limit fs.inotify.max_user_watches is reached)";
  else if (err == EMFILE && strcmp(syscall, "inotify_init1") == 0)
    hint = " (the inotify instance limit fs.inotify.max_user_instances is reached)";
  size_t len = strlen(name) + strlen(text) + strlen(hint) + strlen(syscall) +
               (path ? strlen(path) : 0) + 16;
  char *msg = malloc(len);
  if (msg == NULL) return NULL;
  if (path)
    snprintf(msg, len, "%s: %s%s, %s '%s'", name, text, hint, syscall, path);
  else
    snprintf(msg, len, "%s: %s%s, %s", name, text, hint, syscall);

  napi_value code, message, error, value;
  napi_status s = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  if (s == napi_ok) s = napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  free(msg);
  if (s == napi_ok) s = napi_create_error(env, code, message, &error);
  if (s != napi_ok) return NULL;
  if (napi_create_int32(env, -err, &value) == napi_ok)
    napi_set_named_property(env, error, "errno", value);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, error, "syscall", value);
  if (path && napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value) == napi_ok)
    napi_set_named_property(env, error, "path", value);
  return error;
}

static void throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  napi_value error = errno_error(env, err, syscall, path);
  if (error != NULL)
    napi_throw(env, error);
  else
    napi_throw_error(env, uv_err_name(-err), uv_strerror(-err));
}

/* ---- closing ------------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *handle) {
  watcher_t *w = handle->data;
  free(handle);
  w->closing = 0;
  if (w->cleanup != NULL) {
    napi_remove_async_cleanup_hook(w->cleanup);
    w->cleanup = NULL;
  }
  if (w->finalized) free(w);
}

/* Stops everything that belongs to an open watcher. Safe to call more than once. Only the poll
 * handle outlives this call, until libuv runs on_handle_closed. */
static void stop_watcher(watcher_t *w) {
  if (w->poll != NULL) {
    uv_poll_t *poll = w->poll;
    w->poll = NULL;
    w->closing = 1;
    /* uv_close stops the poll and removes the descriptor from epoll right away, so closing the
     * descriptor just after is safe. */
    uv_close((uv_handle_t *)poll, on_handle_closed);
  }
  if (w->fd >= 0) {
    close(w->fd);
    w->fd = -1;
  }
  free(w->buf);
  w->buf = NULL;
  if (w->callback != NULL) {
    napi_delete_reference(w->env, w->callback);
    w->callback = NULL;
  }
  if (w->self != NULL) {
    napi_delete_reference(w->env, w->self);
    w->self = NULL;
  }
  if (w->async_context != NULL) {
    napi_async_destroy(w->env, w->async_context);
    w->async_context = NULL;
  }
}

static void on_env_cleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  watcher_t *w = arg;
  if (w->poll != NULL || w->closing) {
    stop_watcher(w); /* on_handle_closed removes the hook */
  } else {
    w->cleanup = NULL;
    napi_remove_async_cleanup_hook(handle);
  }
}

static void finalize_watcher(napi_env env, void *data, void *hint) {
  watcher_t *w = data;
  w->finalized = 1;
  /* Normally already closed (an open watcher holds a reference to itself); this covers the
   * environment being torn down. */
  stop_watcher(w);
  if (!w->closing) {
    if (w->cleanup != NULL) {
      napi_remove_async_cleanup_hook(w->cleanup);
      w->cleanup = NULL;
    }
    free(w);
  }
}

/* ---- events --------------------------------------------------------------------------------- */

static napi_status push_event(napi_env env, napi_value array, uint32_t index,
                              const struct inotify_event *ev, const char *name) {
  napi_value obj, v;
  napi_status s = napi_create_object(env, &obj);
  if (s != napi_ok) return s;
  if ((s = napi_create_int32(env, ev->wd, &v)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, obj, "wd", v)) != napi_ok) return s;
  if ((s = napi_create_uint32(env, ev->mask, &v)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, obj, "mask", v)) != napi_ok) return s;
  if ((s = napi_create_uint32(env, ev->cookie, &v)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, obj, "cookie", v)) != napi_ok) return s;
  /* The name is NUL-padded to an alignment boundary (len counts the padding), and absent
   * (len 0) for events about the watched directory itself. */
  size_t name_len = ev->len > 0 ? strnlen(name, ev->len) : 0;
  if ((s = napi_create_string_utf8(env, name, name_len, &v)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, obj, "name", v)) != napi_ok) return s;
  return napi_set_element(env, array, index, obj);
}

static void raise_uncaught(napi_env env, napi_value error) {
  if (error != NULL) napi_fatal_exception(env, error);
}

static void deliver(watcher_t *w, napi_value events) {
  napi_env env = w->env;
  napi_value callback, recv, result;
  if (napi_get_reference_value(env, w->callback, &callback) != napi_ok || callback == NULL) return;
  if (napi_get_reference_value(env, w->self, &recv) != napi_ok || recv == NULL)
    napi_get_undefined(env, &recv);
  /* make_callback: runs as an async callback (async hooks, then the microtask and nextTick
   * queues are drained afterwards), like the callbacks of Node's own handles. */
  napi_status s = napi_make_callback(env, w->async_context, recv, callback, 1, &events, &result);
  if (s != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      raise_uncaught(env, error); /* an exception in onEvents is an uncaught exception, as elsewhere */
    }
  }
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  watcher_t *w = handle->data;
  if (w->fd < 0 || w->buf == NULL || w->callback == NULL) return;
  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;

  napi_value array = NULL;
  uint32_t count = 0;
  size_t total = 0;
  int err = status < 0 ? -status : 0;
  while (err == 0) {
    ssize_t n = read(w->fd, w->buf, READ_BUFFER_SIZE);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (n == 0) break;
    if (array == NULL && napi_create_array(env, &array) != napi_ok) break;
    size_t off = 0;
    while (off + sizeof(struct inotify_event) <= (size_t)n) {
      struct inotify_event ev;
      memcpy(&ev, w->buf + off, sizeof ev);
      size_t size = sizeof(struct inotify_event) + ev.len;
      if (off + size > (size_t)n) break; /* never happens: the kernel returns whole events */
      if (push_event(env, array, count, &ev, w->buf + off + sizeof(struct inotify_event)) ==
          napi_ok)
        count++;
      off += size;
    }
    total += (size_t)n;
    if (total >= MAX_BYTES_PER_WAKEUP) break;
  }

  /* The callback may close the watcher; w stays valid (the object is alive during the call). */
  if (count > 0) deliver(w, array);

  if (err != 0 && w->fd >= 0) {
    /* Not expected (EINVAL, EBADF...). The descriptor is unusable: stop polling rather than spin,
     * and say so loudly; the owner must treat it like an overflow (rescan) and reopen. */
    uv_poll_stop(handle);
    raise_uncaught(env, errno_error(env, err, "read", NULL));
  }
  napi_close_handle_scope(env, scope);
}

/* ---- methods -------------------------------------------------------------------------------- */

static watcher_t *unwrap_this(napi_env env, napi_callback_info info, size_t *argc,
                              napi_value *argv, napi_value *self_out) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_THIS", "not an Inotify object");
    return NULL;
  }
  if (self_out != NULL) *self_out = self;
  return data;
}

static napi_value inotify_new(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self, target;
  CHECK(env, napi_get_new_target(env, info, &target));
  if (target == NULL) {
    napi_throw_type_error(env, "ERR_CONSTRUCT_CALL_REQUIRED", "Inotify must be called with new");
    return NULL;
  }
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  napi_valuetype type = napi_undefined;
  if (argc >= 1) CHECK(env, napi_typeof(env, argv[0], &type));
  if (type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "onEvents must be a function");
    return NULL;
  }

  uv_loop_t *loop;
  CHECK(env, napi_get_uv_event_loop(env, &loop));

  watcher_t *w = calloc(1, sizeof *w);
  char *buf = malloc(READ_BUFFER_SIZE);
  uv_poll_t *poll = malloc(sizeof *poll);
  if (w == NULL || buf == NULL || poll == NULL) {
    free(w), free(buf), free(poll);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  w->env = env;
  w->buf = buf;
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0) {
    int err = errno;
    free(w), free(buf), free(poll);
    throw_errno(env, err, "inotify_init1", NULL);
    return NULL;
  }
  int rc = uv_poll_init(loop, poll, w->fd);
  if (rc != 0) {
    close(w->fd);
    free(w), free(buf), free(poll);
    throw_errno(env, -rc, "uv_poll_init", NULL);
    return NULL;
  }
  poll->data = w;
  w->poll = poll;
  /* From here on, stop_watcher() undoes whatever was set up. */
  napi_value resource_name;
  napi_status s = napi_wrap(env, self, w, finalize_watcher, NULL, NULL);
  if (s != napi_ok) {
    w->finalized = 1; /* no finalizer will run: on_handle_closed frees w */
    stop_watcher(w);
    throw_napi_failure(env, "napi_wrap");
    return NULL;
  }
  if ((s = napi_create_reference(env, argv[0], 1, &w->callback)) == napi_ok &&
      (s = napi_create_reference(env, self, 1, &w->self)) == napi_ok &&
      (s = napi_create_string_utf8(env, "Inotify", NAPI_AUTO_LENGTH, &resource_name)) ==
          napi_ok &&
      (s = napi_async_init(env, self, resource_name, &w->async_context)) == napi_ok &&
      (s = napi_add_async_cleanup_hook(env, on_env_cleanup, w, &w->cleanup)) == napi_ok) {
    rc = uv_poll_start(poll, UV_READABLE, on_readable);
    if (rc == 0) return self;
    stop_watcher(w);
    throw_errno(env, -rc, "uv_poll_start", NULL);
    return NULL;
  }
  stop_watcher(w);
  throw_napi_failure(env, "creating the watcher");
  return NULL;
}

static napi_value inotify_add_watch_js(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  watcher_t *w = unwrap_this(env, info, &argc, argv, NULL);
  if (w == NULL) return NULL;
  napi_valuetype t0 = napi_undefined, t1 = napi_undefined;
  if (argc >= 1) CHECK(env, napi_typeof(env, argv[0], &t0));
  if (argc >= 2) CHECK(env, napi_typeof(env, argv[1], &t1));
  if (t0 != napi_string || t1 != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "addWatch(path: string, mask: number)");
    return NULL;
  }
  size_t len = 0;
  CHECK(env, napi_get_value_string_utf8(env, argv[0], NULL, 0, &len));
  char *path = malloc(len + 1);
  if (path == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, argv[0], path, len + 1, &len) != napi_ok) {
    free(path);
    throw_napi_failure(env, "napi_get_value_string_utf8");
    return NULL;
  }
  if (strlen(path) != len || len == 0) {
    free(path);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE",
                          "the path must be a non-empty string without NUL bytes");
    return NULL;
  }
  uint32_t mask;
  if (napi_get_value_uint32(env, argv[1], &mask) != napi_ok) {
    free(path);
    throw_napi_failure(env, "napi_get_value_uint32");
    return NULL;
  }
  if (w->fd < 0) {
    throw_errno(env, EBADF, "inotify_add_watch", path);
    free(path);
    return NULL;
  }
  int wd = inotify_add_watch(w->fd, path, mask);
  if (wd < 0) {
    throw_errno(env, errno, "inotify_add_watch", path);
    free(path);
    return NULL;
  }
  free(path);
  napi_value result;
  CHECK(env, napi_create_int32(env, wd, &result));
  return result;
}

static napi_value inotify_rm_watch_js(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  watcher_t *w = unwrap_this(env, info, &argc, argv, NULL);
  if (w == NULL) return NULL;
  int32_t wd;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) CHECK(env, napi_typeof(env, argv[0], &t));
  if (t != napi_number) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "rmWatch(wd: number)");
    return NULL;
  }
  CHECK(env, napi_get_value_int32(env, argv[0], &wd));
  if (w->fd < 0) {
    throw_errno(env, EBADF, "inotify_rm_watch", NULL);
    return NULL;
  }
  if (inotify_rm_watch(w->fd, wd) != 0) {
    throw_errno(env, errno, "inotify_rm_watch", NULL);
    return NULL;
  }
  return NULL;
}

static napi_value inotify_close_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  watcher_t *w = unwrap_this(env, info, &argc, NULL, NULL);
  if (w == NULL) return NULL;
  stop_watcher(w);
  return NULL;
}

static napi_value set_ref(napi_env env, napi_callback_info info, int unref) {
  size_t argc = 0;
  napi_value self;
  watcher_t *w = unwrap_this(env, info, &argc, NULL, &self);
  if (w == NULL) return NULL;
  if (w->poll != NULL) {
    if (unref)
      uv_unref((uv_handle_t *)w->poll);
    else
      uv_ref((uv_handle_t *)w->poll);
  }
  return self;
}

static napi_value inotify_ref_js(napi_env env, napi_callback_info info) {
  return set_ref(env, info, 0);
}

static napi_value inotify_unref_js(napi_env env, napi_callback_info info) {
  return set_ref(env, info, 1);
}

static napi_value inotify_closed_js(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  watcher_t *w = unwrap_this(env, info, &argc, NULL, NULL);
  if (w == NULL) return NULL;
  napi_value result;
  CHECK(env, napi_get_boolean(env, w->fd < 0, &result));
  return result;
}

/* ---- module --------------------------------------------------------------------------------- */

#define CONSTANT(name) {#name, (uint32_t)(name)}

static const struct {
  const char *name;
  uint32_t value;
} constants[] = {
    CONSTANT(IN_ACCESS),       CONSTANT(IN_MODIFY),      CONSTANT(IN_ATTRIB),
    CONSTANT(IN_CLOSE_WRITE),  CONSTANT(IN_CLOSE_NOWRITE), CONSTANT(IN_CLOSE),
    CONSTANT(IN_OPEN),         CONSTANT(IN_MOVED_FROM),  CONSTANT(IN_MOVED_TO),
    CONSTANT(IN_MOVE),         CONSTANT(IN_CREATE),      CONSTANT(IN_DELETE),
    CONSTANT(IN_DELETE_SELF),  CONSTANT(IN_MOVE_SELF),   CONSTANT(IN_ALL_EVENTS),
    CONSTANT(IN_UNMOUNT),      CONSTANT(IN_Q_OVERFLOW),  CONSTANT(IN_IGNORED),
    CONSTANT(IN_ONLYDIR),      CONSTANT(IN_DONT_FOLLOW), CONSTANT(IN_EXCL_UNLINK),
    CONSTANT(IN_MASK_ADD),     CONSTANT(IN_ISDIR),       CONSTANT(IN_ONESHOT),
#ifdef IN_MASK_CREATE
    CONSTANT(IN_MASK_CREATE),
#endif
};

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_property_descriptor methods[] = {
      {"addWatch", NULL, inotify_add_watch_js, NULL, NULL, NULL, napi_default_method, NULL},
      {"rmWatch", NULL, inotify_rm_watch_js, NULL, NULL, NULL, napi_default_method, NULL},
      {"close", NULL, inotify_close_js, NULL, NULL, NULL, napi_default_method, NULL},
      {"ref", NULL, inotify_ref_js, NULL, NULL, NULL, napi_default_method, NULL},
      {"unref", NULL, inotify_unref_js, NULL, NULL, NULL, napi_default_method, NULL},
      {"closed", NULL, NULL, inotify_closed_js, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  CHECK(env, napi_define_class(env, "Inotify", NAPI_AUTO_LENGTH, inotify_new, NULL,
                               sizeof methods / sizeof methods[0], methods, &cls));
  CHECK(env, napi_set_named_property(env, exports, "Inotify", cls));
  for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
    napi_value v;
    CHECK(env, napi_create_uint32(env, constants[i].value, &v));
    CHECK(env, napi_set_named_property(env, exports, constants[i].name, v));
  }
  napi_value v;
  CHECK(env, napi_create_uint32(env, READ_BUFFER_SIZE, &v));
  CHECK(env, napi_set_named_property(env, exports, "READ_BUFFER_SIZE", v));
  return exports;
}
