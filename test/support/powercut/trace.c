/*
 * The power-cut explorer's recorder (test/e2e/powercut.e2e.test.ts), loaded with LD_PRELOAD into every
 * process of a recorded run: the CLI, the dispatcher and the orchesjob it starts.
 *
 * It appends, in the order they happened on this machine, the operations that decide what a power cut
 * can leave of the database files: every open, write, truncate, fsync/fdatasync, close, unlink and
 * rename of a file in POWERCUT_DIR (the database's folder; the -shm file is shared memory that SQLite
 * rebuilds after a reboot, so it is left out), fsyncs of that folder, and three markers: what a process
 * writes to its stdout (an acknowledgement), a fork or posix_spawn (a dispatcher starting orchesjob), and what is
 * written to POWERCUT_MARKER (the stand-in orchesjob notes each job it creates there).
 *
 * Each operation runs and is logged under one lock held across processes (flock on the log, taken by
 * each process on its own open of it) and threads (a mutex), so the log's order is the order of the
 * operations. Record: "OP pid a b c LEN\n" then LEN bytes (the data written, or a path).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536
enum kind { NONE = 0, TRACED_FILE = 1, TRACED_DIR = 2, MARKER = 3 };

static unsigned char fd_kind[MAX_FD];
/* The file each traced fd was opened on: libuv closes with syscall(SYS_close), past the close below,
 * so a number can come back for a pipe or another file; an fd counts as traced only while it still
 * names the same file. */
static dev_t fd_dev[MAX_FD];
static ino_t fd_ino[MAX_FD];
static const char *trace_dir;
static size_t trace_dir_len;
static const char *marker_path;
static const char *log_path;
static int log_fd = -1;
static pid_t log_pid;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

#define REAL(name, ret, ...)                                  \
  static ret (*real_##name)(__VA_ARGS__);                     \
  __attribute__((unused)) static void load_##name(void) {     \
    if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name);  \
  }

REAL(open, int, const char *, int, ...)
REAL(open64, int, const char *, int, ...)
REAL(openat, int, int, const char *, int, ...)
REAL(openat64, int, int, const char *, int, ...)
REAL(close, int, int)
REAL(write, ssize_t, int, const void *, size_t)
REAL(writev, ssize_t, int, const struct iovec *, int)
REAL(pwrite, ssize_t, int, const void *, size_t, off_t)
REAL(pwrite64, ssize_t, int, const void *, size_t, off64_t)
REAL(ftruncate, int, int, off_t)
REAL(ftruncate64, int, int, off64_t)
REAL(fsync, int, int)
REAL(fdatasync, int, int)
REAL(unlink, int, const char *)
REAL(unlinkat, int, int, const char *, int)
REAL(rename, int, const char *, const char *)
REAL(renameat, int, int, const char *, int, const char *)
REAL(fork, pid_t, void)
REAL(posix_spawn, int, pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[], char *const[])
REAL(posix_spawnp, int, pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[], char *const[])

static void lock(void) {
  pthread_mutex_lock(&mu);
  if (log_fd < 0 || log_pid != getpid()) {
    load_open();
    log_fd = real_open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    log_pid = getpid();
  }
  flock(log_fd, LOCK_EX);
}

static void unlock(void) {
  flock(log_fd, LOCK_UN);
  pthread_mutex_unlock(&mu);
}

/* Append one record; call with the lock held. */
static void emit(const char *op, long long a, long long b, long long c, const struct iovec *data, int n) {
  size_t len = 0;
  for (int i = 0; i < n; i++) len += data[i].iov_len;
  char head[160];
  int h = snprintf(head, sizeof head, "%s %d %lld %lld %lld %zu\n", op, (int)getpid(), a, b, c, len);
  struct iovec parts[18];
  parts[0].iov_base = head;
  parts[0].iov_len = (size_t)h;
  int count = 1;
  for (int i = 0; i < n && count < 18; i++) parts[count++] = data[i];
  load_writev();
  real_writev(log_fd, parts, count);
}

static void emit_bytes(const char *op, long long a, long long b, long long c, const void *buf, size_t len) {
  struct iovec v = {(void *)buf, len};
  emit(op, a, b, c, &v, 1);
}

static int absolute(int dirfd, const char *path, char *out) {
  if (path[0] == '/') return snprintf(out, PATH_MAX, "%s", path) < PATH_MAX;
  char base[PATH_MAX];
  if (dirfd == AT_FDCWD) {
    if (!getcwd(base, sizeof base)) return 0;
  } else {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, base, sizeof base - 1);
    if (n < 0) return 0;
    base[n] = 0;
  }
  return snprintf(out, PATH_MAX, "%s/%s", base, path) < PATH_MAX;
}

static enum kind classify(const char *abs) {
  if (trace_dir == NULL) return NONE;
  if (marker_path && strcmp(abs, marker_path) == 0) return MARKER;
  if (strncmp(abs, trace_dir, trace_dir_len) != 0) return NONE;
  if (abs[trace_dir_len] == 0) return TRACED_DIR;
  if (abs[trace_dir_len] != '/') return NONE;
  size_t n = strlen(abs);
  if (n >= 4 && strcmp(abs + n - 4, "-shm") == 0) return NONE;
  return TRACED_FILE;
}

static int traced_fd(int fd) {
  if (fd < 0 || fd >= MAX_FD || fd_kind[fd] == NONE) return 0;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_dev != fd_dev[fd] || st.st_ino != fd_ino[fd]) {
    fd_kind[fd] = NONE;
    return 0;
  }
  return 1;
}

/* Every open goes through here: the real open runs under the lock, with whether it created the file. */
static int do_open(int dirfd, const char *path, int flags, mode_t mode, int at) {
  char abs[PATH_MAX];
  enum kind k = (path && absolute(dirfd, path, abs)) ? classify(abs) : NONE;
  if (k == NONE) {
    int fd;
    if (at) { load_openat(); fd = real_openat(dirfd, path, flags, mode); }
    else { load_open(); fd = real_open(path, flags, mode); }
    if (fd >= 0 && fd < MAX_FD) fd_kind[fd] = NONE;
    return fd;
  }
  lock();
  struct stat st;
  int existed = stat(abs, &st) == 0;
  int fd;
  if (at) { load_openat(); fd = real_openat(dirfd, path, flags, mode); }
  else { load_open(); fd = real_open(path, flags, mode); }
  int saved = errno;
  if (fd >= 0 && fd < MAX_FD && fstat(fd, &st) == 0) {
    fd_kind[fd] = (unsigned char)k;
    fd_dev[fd] = st.st_dev;
    fd_ino[fd] = st.st_ino;
    if (k != MARKER) emit_bytes("OPEN", fd, !existed, (flags & O_TRUNC) != 0, abs, strlen(abs));
  }
  unlock();
  errno = saved;
  return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & (O_CREAT | __O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
  va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
  return do_open(AT_FDCWD, path, flags, m, 0);
}
int open64(const char *path, int flags, ...) {
  va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
  return do_open(AT_FDCWD, path, flags, m, 0);
}
int openat(int dirfd, const char *path, int flags, ...) {
  va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
  return do_open(dirfd, path, flags, m, 1);
}
int openat64(int dirfd, const char *path, int flags, ...) {
  va_list ap; va_start(ap, flags); mode_t m = mode_arg(flags, ap); va_end(ap);
  return do_open(dirfd, path, flags, m, 1);
}
int __open_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0, 0); }
int __open64_2(const char *path, int flags) { return do_open(AT_FDCWD, path, flags, 0, 0); }
int __openat_2(int dirfd, const char *path, int flags) { return do_open(dirfd, path, flags, 0, 1); }
int __openat64_2(int dirfd, const char *path, int flags) { return do_open(dirfd, path, flags, 0, 1); }

int close(int fd) {
  load_close();
  if (!traced_fd(fd)) return real_close(fd);
  lock();
  int kind = fd_kind[fd];
  fd_kind[fd] = NONE;
  int r = real_close(fd);
  int saved = errno;
  if (kind != MARKER) emit_bytes("CLOSE", fd, 0, 0, NULL, 0);
  unlock();
  errno = saved;
  return r;
}

/* A write to a traced file (at `offset`, or the file position when -1), to the marker, or to stdout. */
static ssize_t do_write(int fd, const struct iovec *iov, int n, off64_t offset) {
  ssize_t r;
  int traced = traced_fd(fd);
  if (!traced && fd != 1) {
    if (offset >= 0) { load_pwrite64(); return real_pwrite64(fd, iov[0].iov_base, iov[0].iov_len, offset); }
    load_writev();
    return real_writev(fd, iov, n);
  }
  lock();
  off64_t at = offset >= 0 ? offset : lseek64(fd, 0, SEEK_CUR);
  if (offset >= 0) { load_pwrite64(); r = real_pwrite64(fd, iov[0].iov_base, iov[0].iov_len, offset); }
  else { load_writev(); r = real_writev(fd, iov, n); }
  int saved = errno;
  if (r > 0) {
    /* What was written: the first r bytes of the vector. */
    struct iovec done[16];
    int m = 0;
    size_t left = (size_t)r;
    for (int i = 0; i < n && left > 0 && m < 16; i++) {
      size_t take = iov[i].iov_len < left ? iov[i].iov_len : left;
      done[m].iov_base = iov[i].iov_base;
      done[m].iov_len = take;
      left -= take;
      m++;
    }
    if (fd == 1 && !traced) emit("ACK", 0, 0, 0, done, m);
    else if (fd_kind[fd] == MARKER) emit("MARK", 0, 0, 0, done, m);
    else if (fd_kind[fd] == TRACED_FILE) emit("WRITE", fd, at, 0, done, m);
  }
  unlock();
  errno = saved;
  return r;
}

ssize_t write(int fd, const void *buf, size_t len) {
  struct iovec v = {(void *)buf, len};
  return do_write(fd, &v, 1, -1);
}
ssize_t writev(int fd, const struct iovec *iov, int n) {
  if (n > 16) { load_writev(); if (!traced_fd(fd) && fd != 1) return real_writev(fd, iov, n); n = 16; }
  return do_write(fd, iov, n, -1);
}
ssize_t pwrite(int fd, const void *buf, size_t len, off_t offset) {
  struct iovec v = {(void *)buf, len};
  return do_write(fd, &v, 1, offset);
}
ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t offset) {
  struct iovec v = {(void *)buf, len};
  return do_write(fd, &v, 1, offset);
}

static int do_truncate(int fd, off64_t size) {
  load_ftruncate64();
  if (!traced_fd(fd) || fd_kind[fd] != TRACED_FILE) return real_ftruncate64(fd, size);
  lock();
  int r = real_ftruncate64(fd, size);
  int saved = errno;
  if (r == 0) emit_bytes("TRUNC", fd, size, 0, NULL, 0);
  unlock();
  errno = saved;
  return r;
}
int ftruncate(int fd, off_t size) { return do_truncate(fd, size); }
int ftruncate64(int fd, off64_t size) { return do_truncate(fd, size); }

static int do_sync(int fd, int data_only) {
  load_fsync();
  load_fdatasync();
  if (!traced_fd(fd) || fd_kind[fd] == MARKER) return data_only ? real_fdatasync(fd) : real_fsync(fd);
  lock();
  int r = data_only ? real_fdatasync(fd) : real_fsync(fd);
  int saved = errno;
  if (r == 0) emit_bytes("SYNC", fd, data_only, 0, NULL, 0);
  unlock();
  errno = saved;
  return r;
}
int fsync(int fd) { return do_sync(fd, 0); }
int fdatasync(int fd) { return do_sync(fd, 1); }

static int do_unlink(int dirfd, const char *path, int flags, int at) {
  char abs[PATH_MAX];
  load_unlink();
  load_unlinkat();
  enum kind k = (path && absolute(dirfd, path, abs)) ? classify(abs) : NONE;
  if (k != TRACED_FILE) return at ? real_unlinkat(dirfd, path, flags) : real_unlink(path);
  lock();
  int r = at ? real_unlinkat(dirfd, path, flags) : real_unlink(path);
  int saved = errno;
  if (r == 0) emit_bytes("UNLINK", 0, 0, 0, abs, strlen(abs));
  unlock();
  errno = saved;
  return r;
}
int unlink(const char *path) { return do_unlink(AT_FDCWD, path, 0, 0); }
int unlinkat(int dirfd, const char *path, int flags) { return do_unlink(dirfd, path, flags, 1); }

static int do_rename(int olddir, const char *from, int newdir, const char *to, int at) {
  char a[PATH_MAX], b[PATH_MAX];
  load_rename();
  load_renameat();
  int traced = from && to && absolute(olddir, from, a) && absolute(newdir, to, b) &&
               (classify(a) == TRACED_FILE || classify(b) == TRACED_FILE);
  if (!traced) return at ? real_renameat(olddir, from, newdir, to) : real_rename(from, to);
  lock();
  int r = at ? real_renameat(olddir, from, newdir, to) : real_rename(from, to);
  int saved = errno;
  if (r == 0) {
    struct iovec v[3] = {{a, strlen(a)}, {"\n", 1}, {b, strlen(b)}};
    emit("RENAME", 0, 0, 0, v, 3);
  }
  unlock();
  errno = saved;
  return r;
}
int rename(const char *from, const char *to) { return do_rename(AT_FDCWD, from, AT_FDCWD, to, 0); }
int renameat(int olddir, const char *from, int newdir, const char *to) { return do_rename(olddir, from, newdir, to, 1); }

/* A fork: recorded by the parent after it returns, so it stands after everything the parent did before. */
pid_t fork(void) {
  load_fork();
  pid_t pid = real_fork();
  if (pid == 0) {
    pthread_mutex_init(&mu, NULL); /* another thread may have held it at the fork */
    log_fd = -1;                   /* the child takes the lock on an open of its own */
    return 0;
  }
  if (pid > 0 && trace_dir) {
    lock();
    emit_bytes("FORK", pid, 0, 0, NULL, 0);
    unlock();
  }
  return pid;
}

/*
 * A posix_spawn (the dispatcher's way of starting orchesjob, native/spawn.c) is a fork too. It is made
 * and recorded under the lock: the child, which execs before posix_spawn returns, can log nothing (its
 * EXEC first) until its FORK stands, after everything the parent did before.
 */
static int traced_spawn(int (*real)(pid_t *, const char *, const posix_spawn_file_actions_t *, const posix_spawnattr_t *, char *const[], char *const[]),
                        pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attr,
                        char *const argv[], char *const envp[]) {
  if (!trace_dir) return real(pid, file, actions, attr, argv, envp);
  pid_t child = 0;
  lock();
  int rc = real(&child, file, actions, attr, argv, envp);
  if (rc == 0) emit_bytes("FORK", child, 0, 0, NULL, 0);
  unlock();
  if (rc == 0 && pid != NULL) *pid = child;
  return rc;
}
int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attr, char *const argv[],
                char *const envp[]) {
  load_posix_spawn();
  return traced_spawn(real_posix_spawn, pid, path, actions, attr, argv, envp);
}
int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *actions, const posix_spawnattr_t *attr, char *const argv[],
                 char *const envp[]) {
  load_posix_spawnp();
  return traced_spawn(real_posix_spawnp, pid, file, actions, attr, argv, envp);
}

/* Each traced process announces itself with its parent and argv. */
__attribute__((constructor)) static void start(void) {
  trace_dir = getenv("POWERCUT_DIR");
  marker_path = getenv("POWERCUT_MARKER");
  log_path = getenv("POWERCUT_LOG");
  if (!trace_dir || !log_path) { trace_dir = NULL; return; }
  trace_dir_len = strlen(trace_dir);
  char cmdline[8192];
  ssize_t n = 0;
  load_open();
  int fd = real_open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = read(fd, cmdline, sizeof cmdline);
    load_close();
    real_close(fd);
  }
  lock();
  emit_bytes("EXEC", getppid(), 0, 0, cmdline, n > 0 ? (size_t)n : 0);
  unlock();
}
