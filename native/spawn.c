/*
 * spawn.node: start a child with posix_spawn(3) instead of fork(2) (src/orchesjob/spawn.ts).
 *
 * Node 20's child_process.spawn (libuv 1.46) forks: the kernel copies the page tables of the whole
 * dispatcher (some 75 MB) and write-protects its memory, and every page the dispatcher writes before
 * the next fork then faults once. glibc's posix_spawn starts the child with
 * clone(CLONE_VM | CLONE_VFORK): it runs in the parent's memory until it execs, and nothing is copied.
 * With an instant orchesjob that is a third of the dispatcher's main thread (docs/performance.md).
 *
 * The child is set up as libuv sets up a child_process.spawn child with stdio
 * ['ignore', 'pipe', 'pipe']: stdin /dev/null, stdout and stderr the write ends of two new pipes,
 * every signal's disposition the default and none blocked (but glibc's posix_spawn leaves its own two
 * reserved signals, 32 and 33, ignored: no program can use them, and a glibc program installs its own
 * handlers for them), and with `ownSession` a session (and
 * process group) of its own (libuv's `detached`: setsid). Every other descriptor of this process is
 * close-on-exec already (Node opens them so), and the pipes' read ends are made so too.
 *
 * JavaScript interface:
 *   spawn(file, argv, ownSession, onExit) -> [pid, stdoutFd, stderrFd]
 *     `file` is looked up on PATH as execvp does (posix_spawnp); argv[0] is the program's name.
 *     Throws an Error with `code` ('ENOENT', 'EACCES', 'EMFILE'...) and `errno` (negative, as Node's)
 *     when the child could not be started: then nothing ran. Otherwise onExit(code, signal) is called
 *     once, on the event loop, when the child has exited (code null when a signal killed it, signal
 *     its number, or null; both null if its status could not be read). The child is reaped by a
 *     thread of its own, blocked in waitpid(pid): this reaps only this child, never one of libuv's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define CHECK(env, call)                                                        \
  do {                                                                          \
    if ((call) != napi_ok) {                                                    \
      napi_throw_error((env), NULL, "spawn.node: N-API call failed: " #call);   \
      return NULL;                                                              \
    }                                                                           \
  } while (0)

/*
 * One child's waiter, shared by its thread and its threadsafe function (TSFN), and freed by whichever
 * of the two lets go of it last. The thread waits for `ready`, then for the child (pid > 0) or for
 * nothing, and calls the TSFN only while it has not been finalized: when the environment goes away
 * (a worker thread that ends), Node finalizes its TSFNs with children still running, and a call
 * after that would use freed memory.
 */
struct waiter {
  sem_t ready;
  pid_t pid;
  pthread_mutex_t lock;
  int finalized; /* under lock */
  int refs;      /* under lock: the thread's and the TSFN's */
  napi_threadsafe_function on_exit;
};

static void unref_waiter(struct waiter *w) {
  pthread_mutex_lock(&w->lock);
  int last = --w->refs == 0;
  pthread_mutex_unlock(&w->lock);
  if (!last) return;
  pthread_mutex_destroy(&w->lock);
  sem_destroy(&w->ready);
  free(w);
}

/* The TSFN's finalizer, on the event loop: after the thread released it, or at the environment's end. */
static void finalize_waiter(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct waiter *w = data;
  pthread_mutex_lock(&w->lock);
  w->finalized = 1;
  pthread_mutex_unlock(&w->lock);
  unref_waiter(w);
}

/* What the thread hands to the event loop: the wait status, or that there is none (waitpid failed). */
#define NO_STATUS ((void *)0)
#define STATUS_DATA(status) ((void *)((((intptr_t)(status)) << 1) | 1))

static void *wait_for_child(void *arg) {
  struct waiter *w = arg;
  while (sem_wait(&w->ready) != 0 && errno == EINTR) {
  }
  void *data = NO_STATUS;
  if (w->pid > 0) {
    int status = 0, r;
    while ((r = waitpid(w->pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (r == w->pid) data = STATUS_DATA(status);
  }
  pthread_mutex_lock(&w->lock);
  if (!w->finalized) {
    /* Queued (the queue has no limit), never run here: the finalizer cannot run under this lock. */
    if (w->pid > 0) napi_call_threadsafe_function(w->on_exit, data, napi_tsfn_nonblocking);
    napi_release_threadsafe_function(w->on_exit, napi_tsfn_release);
  }
  pthread_mutex_unlock(&w->lock);
  unref_waiter(w);
  return NULL;
}

/*
 * On the event loop: onExit(code, signal); both null when the status could not be read (something
 * else reaped the child). onExit is to defer its work (process.nextTick): an exception left here would
 * be reported only as a warning.
 */
static void call_on_exit(napi_env env, napi_value js_callback, void *context, void *data) {
  (void)context;
  if (env == NULL) return; /* the environment is going away */
  napi_value undefined, argv[2];
  napi_get_undefined(env, &undefined);
  intptr_t encoded = (intptr_t)data;
  int status = (int)(encoded >> 1);
  if (data == NO_STATUS) {
    napi_get_null(env, &argv[0]);
    napi_get_null(env, &argv[1]);
  } else if (WIFEXITED(status)) {
    napi_create_int32(env, WEXITSTATUS(status), &argv[0]);
    napi_get_null(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_int32(env, WTERMSIG(status), &argv[1]);
  }
  napi_call_function(env, undefined, js_callback, 2, argv, NULL);
}

/*
 * A JavaScript string as a malloc'd C string; NULL (with an exception pending) when it is not one, or
 * holds a NUL byte (which would cut it short: Node's spawn refuses those too).
 */
static char *c_string(napi_env env, napi_value value) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "spawn.node: expected a string");
    return NULL;
  }
  char *s = malloc(length + 1);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "spawn.node: out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, s, length + 1, &length);
  if (strlen(s) != length) {
    free(s);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "spawn.node: a program or argument must be a string without null bytes");
    return NULL;
  }
  return s;
}

static void free_argv(char **argv, uint32_t n) {
  if (argv == NULL) return;
  for (uint32_t i = 0; i < n; i++) free(argv[i]);
  free(argv);
}

/* A pipe whose two ends are close-on-exec and above 2 (so that no dup2 onto 0, 1, 2 clobbers them). */
static int make_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return errno;
  for (int i = 0; i < 2; i++) {
    if (fds[i] > 2) continue;
    int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fds[i]);
    if (moved < 0) {
      close(fds[1 - i]);
      fds[0] = fds[1] = -1;
      return saved;
    }
    fds[i] = moved;
  }
  return 0;
}

static void close_pipe(int fds[2]) {
  for (int i = 0; i < 2; i++)
    if (fds[i] >= 0) close(fds[i]);
  fds[0] = fds[1] = -1;
}

/* posix_spawnp with the child set up as described at the top. Returns 0 or an errno value. */
static int start_child(pid_t *pid, const char *file, char **argv, int own_session, int out[2], int err[2]) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  int rc = posix_spawn_file_actions_init(&actions);
  if (rc != 0) return rc;
  rc = posix_spawnattr_init(&attr);
  if (rc != 0) {
    posix_spawn_file_actions_destroy(&actions);
    return rc;
  }
  sigset_t all, none;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigemptyset(&none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (own_session ? POSIX_SPAWN_SETSID : 0);
  if (rc == 0) rc = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  if (rc == 0) rc = posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  if (rc == 0) rc = posix_spawnattr_setsigdefault(&attr, &all);
  if (rc == 0) rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0) rc = posix_spawnattr_setflags(&attr, flags);
  if (rc == 0) rc = posix_spawnp(pid, file, &actions, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}

/* The errno's name: ENOENT, EACCES, ENOEXEC (which libuv's names lack)... */
static const char *errno_name(int error) {
#ifdef __GLIBC__
  const char *name = strerrorname_np(error);
  if (name != NULL) return name;
#endif
  return uv_err_name(-error);
}

/* Throw Node's shape of a spawn error: code, negative errno, syscall and path, "spawn FILE CODE". */
static void throw_spawn_error(napi_env env, const char *file, int error) {
  const char *code = errno_name(error);
  size_t size = strlen(file) + strlen(code) + 16;
  char *message = malloc(size);
  char *syscall = malloc(size);
  if (message == NULL || syscall == NULL) {
    free(message);
    free(syscall);
    napi_throw_error(env, code, strerror(error));
    return;
  }
  snprintf(message, size, "spawn %s %s", file, code);
  snprintf(syscall, size, "spawn %s", file);
  napi_value js_code, js_message, js_error, js_errno, js_syscall, js_path;
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &js_message);
  napi_create_error(env, js_code, js_message, &js_error);
  napi_create_int32(env, -error, &js_errno);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &js_syscall);
  napi_create_string_utf8(env, file, NAPI_AUTO_LENGTH, &js_path);
  napi_set_named_property(env, js_error, "errno", js_errno);
  napi_set_named_property(env, js_error, "syscall", js_syscall);
  napi_set_named_property(env, js_error, "path", js_path);
  napi_throw(env, js_error);
  free(message);
  free(syscall);
}

/* The waiter's thread runs before the child does: when no thread can be made, no child is started. */
static int start_waiter(napi_env env, napi_value on_exit, struct waiter **out) {
  struct waiter *w = calloc(1, sizeof *w);
  if (w == NULL) return ENOMEM;
  if (sem_init(&w->ready, 0, 0) != 0) {
    free(w);
    return errno;
  }
  pthread_mutex_init(&w->lock, NULL);
  w->refs = 2;
  napi_value name;
  napi_create_string_utf8(env, "orchesjob-reserver waitpid", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, on_exit, NULL, name, 0, 1, w, finalize_waiter, NULL, call_on_exit, &w->on_exit) != napi_ok) {
    pthread_mutex_destroy(&w->lock);
    sem_destroy(&w->ready);
    free(w);
    return EAGAIN;
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t thread;
  int rc = pthread_create(&thread, &attr, wait_for_child, w);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    napi_release_threadsafe_function(w->on_exit, napi_tsfn_release); /* its finalizer lets go of w */
    unref_waiter(w);                                                  /* and so does the thread that never ran */
    return rc;
  }
  *out = w;
  return 0;
}

static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "spawn.node: spawn(file, argv, ownSession, onExit)");
    return NULL;
  }
  bool own_session = false;
  uint32_t n = 0;
  CHECK(env, napi_get_value_bool(env, args[2], &own_session));
  CHECK(env, napi_get_array_length(env, args[1], &n));
  char *file = c_string(env, args[0]);
  char **argv = calloc(n + 1, sizeof(char *));
  if (file == NULL || argv == NULL) {
    free(file);
    free(argv);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value element;
    if (napi_get_element(env, args[1], i, &element) != napi_ok || (argv[i] = c_string(env, element)) == NULL) {
      free_argv(argv, n);
      free(file);
      return NULL;
    }
  }

  int out[2] = {-1, -1}, err[2] = {-1, -1};
  pid_t pid = -1;
  struct waiter *w = NULL;
  int rc = make_pipe(out);
  if (rc == 0) rc = make_pipe(err);
  if (rc == 0) rc = start_waiter(env, args[3], &w);
  if (rc == 0) rc = start_child(&pid, file, argv, own_session, out, err);
  if (w != NULL) {
    w->pid = rc == 0 ? pid : -1;
    sem_post(&w->ready);
  }
  /* The write ends are the child's now (or nobody's). */
  if (out[1] >= 0) close(out[1]);
  if (err[1] >= 0) close(err[1]);
  out[1] = err[1] = -1;
  napi_value result = NULL;
  if (rc != 0) {
    close_pipe(out);
    close_pipe(err);
    throw_spawn_error(env, file, rc);
  } else {
    napi_value v;
    napi_create_array_with_length(env, 3, &result);
    napi_create_int32(env, pid, &v);
    napi_set_element(env, result, 0, v);
    napi_create_int32(env, out[0], &v);
    napi_set_element(env, result, 1, v);
    napi_create_int32(env, err[0], &v);
    napi_set_element(env, result, 2, v);
  }
  free_argv(argv, n);
  free(file);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value spawn;
  CHECK(env, napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, NULL, &spawn));
  CHECK(env, napi_set_named_property(env, exports, "spawn", spawn));
  return exports;
}
