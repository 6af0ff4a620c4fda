/* Heap profiles: the public calls, and the operator's way in without code changes
 * (ALLOCSHIM_PROF_SIGNAL, _AT_EXIT and _DIR, read once when the library loads). */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ALLOCSHIM_PROF_DIR made absolute when the library loads (so a later chdir() does not
 * move the profiles), or "" for the current directory at the time of each dump. */
static char prof_dir[PATH_MAX];
static atomic_uint dump_seq;
/* ALLOCSHIM_PROF_FORMAT=pprof: dumps under a default name are pprof's, not jeprof's. */
static bool prof_pprof;
#define PPROF_SUFFIX ".pb.gz"

/* How trusted_dir_open's refusals read for a dump. */
#define WRITING "to write a heap profile in"

/* Room for "/allocshim.<pid>.<seq>.pb.gz" after the directory. */
#define DEFAULT_NAME_ROOM 64
/* How many names a dump tries before it gives up: temporary names that exist already,
 * and default names taken by earlier runs (a pid-1 server restarting reuses its pid). */
#define NAME_TRIES 1000
/* Symlinks followed while walking to the profile directory, as the kernel's own limit. */
#define MAX_HOPS 40

static bool ends_with(const char *s, const char *tail) {
  size_t n = strlen(s), t = strlen(tail);
  return n >= t && strcmp(s + n - t, tail) == 0;
}

static int fail(int status, int err) {
  errno = err;
  return status;
}

int alloc_profile_supported(void) { return be_profile_status(); }

/* Support, then arguments, then whether profiling is on: the first problem wins. */
static int profile_ready(void) {
  int status = be_profile_status();
  if (status == ALLOC_ENOTSUP) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
      allocshim_say("alloc_profile_dump: %s", alloc_strerror(ALLOC_ENOTSUP));
    return fail(ALLOC_ENOTSUP, ENOTSUP);
  }
  return status;
}

/* ---- Where profiles may go ---------------------------------------------------------
 * A root daemon writing into a directory another user controls can be made to write
 * anywhere, so the directory is trusted the way OpenSSH's StrictModes trusts a home
 * directory: it and every directory above it must be owned by root or by us, and not
 * writable by group or others unless sticky (in a sticky directory nobody else can
 * remove or rename our files). A symlink on the way is followed only when root or we own
 * it; it sits in a directory already trusted, so nobody else can swap it. The walk
 * ends in a descriptor, and every later operation is relative to it. */

bool trusted_owner(uid_t uid) {
  /* A root daemon that has switched its effective uid to a user's for a while (its
   * saved uid still root) must not trust that user's files: code of theirs loaded then
   * could take root back. The euid counts only when it is the process's whole identity. */
  uid_t r, e, s;
  return uid == 0 || (getresuid(&r, &e, &s) == 0 && uid == e && r == e && s == e);
}

/* Why `st` (a directory) is not to be trusted, or NULL. */
static const char *distrust(const struct stat *st, char *buf, size_t cap) {
  if (!trusted_owner(st->st_uid)) {
    snprintf(buf, cap, "owned by uid %ld, not by root or uid %ld", (long)st->st_uid,
             (long)geteuid());
    return buf;
  }
  if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st->st_mode & S_ISVTX) == 0)
    return (st->st_mode & S_IWOTH) ? "writable by others and not sticky"
                                   : "writable by its group and not sticky";
  return NULL;
}

/* Appends "/name" (or "name" after "/") to the directory shown in messages. */
static void shown_push(char *shown, size_t cap, const char *name, size_t len) {
  size_t at = strlen(shown);
  if (at > 1 && at < cap - 1)
    shown[at++] = '/';
  snprintf(shown + at, cap - at, "%.*s", (int)len, name);
}

static void shown_pop(char *shown) {
  char *slash = strrchr(shown, '/');
  if (slash != NULL)
    slash[slash == shown] = '\0';
}

int trusted_dir_open(const char *dir, bool create, const char *doing, char *why, size_t cap) {
  char todo[PATH_MAX], link[PATH_MAX], shown[PATH_MAX] = "/", reason[96];
  const int flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  struct stat st;
  int hops = 0;
  if (snprintf(todo, sizeof todo, "%s", dir) >= (int)sizeof todo)
    return fail(-1, ENAMETOOLONG);
  int cur = open("/", flags);
  if (cur < 0)
    return -1;
  const char *bad = fstat(cur, &st) == 0 ? distrust(&st, reason, sizeof reason) : "unreadable";
  for (char *p = todo; bad == NULL;) {
    while (*p == '/')
      p++;
    if (*p == '\0')
      return cur;
    size_t len = strcspn(p, "/");
    char *rest = p + len;
    if (*rest != '\0')
      *rest++ = '\0';
    if (strcmp(p, ".") == 0) {
      p = rest;
      continue;
    }
    int looked = fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW);
    if (looked != 0 && errno == ENOENT && create && strcmp(p, "..") != 0) {
      if (mkdirat(cur, p, 0700) != 0 && errno != EEXIST)
        break;
      looked = fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW); /* made, or raced: look again */
    }
    if (looked != 0)
      break;
    if (S_ISLNK(st.st_mode)) {
      shown_push(shown, sizeof shown, p, len);
      if (!trusted_owner(st.st_uid)) {
        snprintf(reason, sizeof reason, "a symlink owned by uid %ld", (long)st.st_uid);
        bad = reason;
        break;
      }
      ssize_t n = readlinkat(cur, p, link, sizeof link);
      if (n < 0)
        break;
      if (++hops > MAX_HOPS || n == 0 || (size_t)n >= sizeof link) {
        errno = hops > MAX_HOPS ? ELOOP : n == 0 ? ENOENT : ENAMETOOLONG;
        break;
      }
      shown_pop(shown);
      /* The rest of the walk: the link's target, then what followed the link. */
      size_t tail = strlen(rest);
      if ((size_t)n + 1 + tail >= sizeof link) {
        errno = ENAMETOOLONG;
        break;
      }
      link[n] = '/';
      memcpy(link + n + 1, rest, tail + 1);
      memcpy(todo, link, (size_t)n + 2 + tail);
      p = todo;
      if (link[0] == '/') {
        int root = open("/", flags);
        if (root < 0)
          break;
        close(cur);
        cur = root;
        snprintf(shown, sizeof shown, "/");
      }
      continue;
    }
    /* O_NOFOLLOW: a symlink swapped in since the look above fails here, it is not
     * followed. The trust check is on what was opened, not on what was looked at. */
    int next = openat(cur, p, flags);
    if (next < 0)
      break;
    close(cur);
    cur = next;
    if (strcmp(p, "..") == 0)
      shown_pop(shown);
    else
      shown_push(shown, sizeof shown, p, len);
    bad = fstat(cur, &st) == 0 ? distrust(&st, reason, sizeof reason) : "unreadable";
    p = rest;
  }
  int err = errno;
  close(cur);
  if (bad == NULL)
    return fail(-1, err);
  snprintf(why, cap, "refusing %s %s: %s is %s", doing, dir, shown, bad);
  return fail(-1, EPERM);
}

/* ---- Writing one profile -----------------------------------------------------------
 * jemalloc writes the profile into an anonymous memory file (memfd), never into the
 * file system: it opens nothing by name (src/backend_jemalloc.c) and ignores short
 * writes. The shim then copies those bytes, every one checked, into a new file it made
 * itself (O_EXCL|O_NOFOLLOW, 0600, relative to the trusted directory), syncs it, and
 * renames it into place: the profile appears complete or not at all. */

/* ".allocshim-XXXXXXXXXXXX.tmp", random: not derived from the final name (which may
 * be as long as a name can be) and not guessable by someone who would pre-create it. */
static void temp_name(char *out, size_t cap) {
  static const char digits[] = "abcdefghijklmnopqrstuvwxyz012345";
  unsigned char r[12];
  if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
    /* Too early in boot for the kernel's pool: O_EXCL keeps a guess harmless. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long x = (unsigned long long)ts.tv_nsec ^ (unsigned long long)getpid() << 32;
    for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
      r[i] = (unsigned char)(x >> 56);
  }
  char s[sizeof r + 1];
  for (size_t i = 0; i < sizeof r; i++)
    s[i] = digits[r[i] % 32];
  s[sizeof r] = '\0';
  snprintf(out, cap, ".allocshim-%s.tmp", s);
}

/* Copies all `size` bytes of `from` to `to`, or fails: a write that stops short is
 * tried again for the rest, so that the real reason (ENOSPC, EFBIG, EIO) is what the
 * caller sees, and no byte is taken as written unless write() said so. */
static int copy_all(int from, int to, size_t size) {
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, from, 0);
  if (map == MAP_FAILED)
    return -1;
  int rc = 0;
  for (size_t done = 0; done < size;) {
    ssize_t n = write(to, (const char *)map + done, size - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = fail(-1, n == 0 ? EIO : errno);
      break;
    }
    done += (size_t)n;
  }
  int err = errno;
  munmap(map, size);
  errno = err;
  return rc;
}

/* Whether `size` bytes reach RLIMIT_FSIZE: the kernel would cut the file short there
 * and send SIGXFSZ, whose default action kills the process. */
static bool over_file_limit(off_t size) {
  struct rlimit rl;
  return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
         (rlim_t)size >= rl.rlim_cur;
}

/* The profile, whole, in a memfd: the descriptor, or -1 with errno. */
static int profile_in_memory(off_t *size) {
  int mem = memfd_create("allocshim-profile", MFD_CLOEXEC);
  if (mem < 0)
    return -1;
  bool written = be_profile_dump(mem) == 0;
  struct stat st;
  int err = EIO;
  if (fstat(mem, &st) != 0)
    err = errno;
  else if (over_file_limit(st.st_size))
    err = EFBIG; /* a memfd obeys RLIMIT_FSIZE too: the end may be lost, unnoticed */
  else if (written && st.st_size > 0) {
    *size = st.st_size;
    return mem;
  }
  close(mem);
  return fail(-1, err);
}

/* A fresh profile in pprof's format, in a memfd: the descriptor, or -1 with errno (and
 * `why`, when the converter failed). */
static int pprof_in_memory(char *why, size_t cap) {
  off_t size;
  int heap = profile_in_memory(&size);
  if (heap < 0)
    return -1;
  int out = pprof_from_heap(heap, why, cap);
  int err = errno;
  close(heap);
  if (out < 0)
    return fail(-1, err);
  struct stat st;
  if (fstat(out, &st) != 0)
    err = errno;
  else if (!over_file_limit(st.st_size))
    return out;
  else
    err = EFBIG;
  close(out);
  return fail(-1, err);
}

/* What an explicit path may replace: nothing (1), or a regular file of ours (0).
 * Anything else stays as it is: -1, with errno saying what is there. */
static int replaceable(int dir, const char *name) {
  struct stat st;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? 1 : -1;
  if (S_ISDIR(st.st_mode))
    return fail(-1, EISDIR);
  if (S_ISLNK(st.st_mode))
    return fail(-1, ELOOP); /* what open(O_NOFOLLOW) says of one */
  if (!S_ISREG(st.st_mode))
    return fail(-1, EEXIST); /* a FIFO, socket or device: not a profile to replace */
  if (st.st_uid != geteuid())
    return fail(-1, EPERM);
  return 0;
}

/* "allocshim.<pid>.<seq>.heap", or ".pb.gz" for a profile in pprof's format. */
static void make_default_name(char *name, size_t cap, bool pprof) {
  snprintf(name, cap, "allocshim.%ld.%u%s", (long)getpid(), atomic_fetch_add(&dump_seq, 1),
           pprof ? PPROF_SUFFIX : ".heap");
}

/* rename() that never replaces: -1 with EEXIST when `name` is taken. */
static int rename_new(int dir, const char *tmp, const char *name) {
  /* The system call, not glibc's renameat2(): musl 1.2.3 has no wrapper for it. 1 is
   * <linux/fs.h>'s RENAME_NOREPLACE, a header musl's compiler does not see. */
  if (syscall(SYS_renameat2, dir, tmp, dir, name, 1u) == 0)
    return 0;
  /* A file system without RENAME_NOREPLACE: link() never replaces either. */
  if ((errno == EINVAL || errno == ENOSYS) && linkat(dir, tmp, dir, name, 0) == 0) {
    unlinkat(dir, tmp, 0);
    return 0;
  }
  return -1;
}

/* Moves the finished temporary file `tmp` to its name in `dir`. An explicit name that
 * was free when looked at is taken only if it still is: in a sticky shared directory
 * another user could put a link there in between (our own file there they cannot
 * touch). A default name never replaces anything: if taken, the next number is tried. */
static int put_in_place(int dir, const char *tmp, char *name, size_t cap, bool default_name) {
  if (!default_name) {
    int r = replaceable(dir, name);
    return r < 0 ? -1 : r == 1 ? rename_new(dir, tmp, name) : renameat(dir, tmp, dir, name);
  }
  for (int i = 0; i < NAME_TRIES; i++) {
    if (rename_new(dir, tmp, name) == 0)
      return 0;
    if (errno != EEXIST)
      return -1;
    make_default_name(name, cap, ends_with(name, PPROF_SUFFIX));
  }
  return fail(-1, EEXIST);
}

/* The whole dump into directory descriptor `dir`, under `name`: a fresh one from
 * jemalloc, or (given >= 0) the bytes of the memfd `given`, which stays the caller's. */
static int write_profile(int dir, char *name, size_t cap, bool default_name, int given) {
  off_t size = 0;
  struct stat gst;
  int mem = given;
  if (given < 0)
    mem = profile_in_memory(&size);
  else if (fstat(given, &gst) == 0)
    size = gst.st_size;
  else
    return -1;
  if (mem < 0)
    return -1;
  if (size == 0)
    return fail(-1, EIO);
  char tmp[64];
  int fd = -1;
  for (int i = 0; i < NAME_TRIES && fd < 0; i++) {
    temp_name(tmp, sizeof tmp);
    fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      int err = errno;
      if (mem != given)
        close(mem);
      return fail(-1, err);
    }
  }
  int rc = fd < 0 ? fail(-1, EEXIST) : copy_all(mem, fd, (size_t)size);
  int err = errno;
  if (mem != given)
    close(mem);
  /* fsync: "complete or not at all" should also hold after a crash, and a dump is rare
   * enough (an operator's request) to pay for one. close() can report a late write
   * error (NFS), so it is checked as well. */
  if (rc == 0 && fsync(fd) != 0)
    rc = -1, err = errno;
  if (fd >= 0 && close(fd) != 0 && rc == 0)
    rc = -1, err = errno;
  if (rc == 0 && put_in_place(dir, tmp, name, cap, default_name) != 0)
    rc = -1, err = errno;
  if (rc != 0 && fd >= 0)
    unlinkat(dir, tmp, 0);
  errno = err;
  return rc;
}

/* Splits `path` into an absolute directory and a final name; NULL is the default name
 * in ALLOCSHIM_PROF_DIR or the current directory. -1 with errno when it cannot be. */
static int locate(const char *path, bool pprof, char *dir, size_t dir_cap, char *name,
                  size_t name_cap) {
  const char *slash = path ? strrchr(path, '/') : NULL;
  const char *base = slash ? slash + 1 : path;
  if (path == NULL) {
    make_default_name(name, name_cap, pprof);
    if (prof_dir[0] != '\0')
      return snprintf(dir, dir_cap, "%s", prof_dir) < (int)dir_cap ? 0 : fail(-1, ENAMETOOLONG);
  } else {
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
      return fail(-1, EISDIR);
    if (strlen(base) > NAME_MAX || strlen(base) >= name_cap)
      return fail(-1, ENAMETOOLONG);
    snprintf(name, name_cap, "%s", base);
  }
  if (path != NULL && path[0] == '/') /* "/x" is in "/", "/a/x" in "/a" */
    return snprintf(dir, dir_cap, "%.*s", (int)(slash == path ? 1 : slash - path), path) <
                   (int)dir_cap
               ? 0
               : fail(-1, ENAMETOOLONG);
  if (getcwd(dir, dir_cap) == NULL)
    return -1;
  size_t at = strlen(dir);
  int n = slash ? snprintf(dir + at, dir_cap - at, "/%.*s", (int)(slash - path), path) : 0;
  return n >= 0 && (size_t)n < dir_cap - at ? 0 : fail(-1, ENAMETOOLONG);
}

/* A new file for a profile jemalloc writes itself (MALLOC_CONF's prof_final, gdump, an
 * interval dump): the same trusted-directory walk as the shim's own dumps, so a link
 * another user planted on the way is refused too, then a new 0600 file only, never a
 * symlink's target. A descriptor, or -1 with errno (and one line for an untrusted
 * directory). */
int profile_create_new(const char *path) {
  char dir[PATH_MAX], name[NAME_MAX + 1], why[1024];
  if (locate(path, false, dir, sizeof dir, name, sizeof name) != 0)
    return -1;
  int dfd = trusted_dir_open(dir, false, WRITING, why, sizeof why);
  if (dfd < 0) {
    if (errno == EPERM)
      allocshim_say("%s", why);
    return -1;
  }
  int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  int err = errno;
  close(dfd);
  errno = err;
  return fd;
}

/* dump_profile_from's work, with this thread's sampling off. */
static int dump_profile_unsampled(const char *path, char *why, size_t cap, int mem, char *written,
                                  size_t wcap) {
  why[0] = '\0';
  int saved = errno;
  int status = profile_ready();
  if (status == ALLOC_ENOTSUP)
    return status;
  if (path != NULL && path[0] == '\0')
    return fail(ALLOC_EINVAL, EINVAL);
  if (path != NULL && strlen(path) >= PATH_MAX)
    return fail(ALLOC_EINVAL, ENAMETOOLONG);
  if (status != ALLOC_OK)
    return fail(status, ENOENT);
  /* pprof's format by the name's ending, or for a default name by ALLOCSHIM_PROF_FORMAT;
   * a given memfd (the leak check's) holds jeprof's. The converter is found before any
   * file is touched: without it there is nothing to write. */
  bool pprof = path != NULL ? ends_with(path, PPROF_SUFFIX) : mem < 0 && prof_pprof;
  if (pprof && (status = pprof_ready(why, cap)) != ALLOC_OK)
    return status;

  char dir[PATH_MAX], name[NAME_MAX + 1];
  if (locate(path, pprof, dir, sizeof dir, name, sizeof name) != 0)
    return fail(ALLOC_EIO, errno);
  int dfd = trusted_dir_open(dir, path == NULL && prof_dir[0] != '\0', WRITING, why, cap);
  if (dfd < 0)
    return fail(ALLOC_EIO, errno);
  if (path != NULL && replaceable(dfd, name) < 0) { /* before the work; again at the end */
    int err = errno;
    close(dfd);
    return fail(ALLOC_EIO, err);
  }
  /* The kernel sends SIGXFSZ to the thread whose write meets RLIMIT_FSIZE. Blocked here,
   * it cannot kill the program; one this dump caused is taken back off the thread. */
  sigset_t xfsz, old, before;
  sigemptyset(&xfsz);
  sigaddset(&xfsz, SIGXFSZ);
  pthread_sigmask(SIG_BLOCK, &xfsz, &old);
  sigpending(&before);
  int given = pprof ? pprof_in_memory(why, cap) : mem;
  int rc = given < 0 && pprof ? -1 : write_profile(dfd, name, sizeof name, path == NULL, given);
  int err = errno;
  if (pprof && given >= 0)
    close(given);
  sigset_t now;
  if (!sigismember(&before, SIGXFSZ) && sigpending(&now) == 0 && sigismember(&now, SIGXFSZ))
    sigtimedwait(&xfsz, NULL, &(struct timespec){0, 0});
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(dfd);
  if (rc != 0)
    return fail(ALLOC_EIO, err);
  if (written != NULL)
    snprintf(written, wcap, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name);
  errno = saved; /* success leaves errno as it was */
  return ALLOC_OK;
}

/* alloc_profile_dump(), with the reason for refusing a directory left in `why` for the
 * caller to say (once, or every time) rather than said here. `mem`: as write_profile's
 * `given`; `written` (if not NULL) gets the final path of a default-named dump. What
 * the dump itself allocates (the loader's memory for the pprof converter, the
 * converter's) is the shim's, not the program's: this thread samples none of it, or a
 * sample there would put the shim's frames in the very profile it writes. */
static int dump_profile_from(const char *path, char *why, size_t cap, int mem, char *written,
                             size_t wcap) {
  int saved = errno; /* as the dump found it, for its success to leave it so */
  bool paused = be_profile_thread(false);
  errno = saved;
  int status = dump_profile_unsampled(path, why, cap, mem, written, wcap);
  int err = errno;
  if (paused)
    be_profile_thread(true);
  errno = err;
  return status;
}

static int dump_profile(const char *path, char *why, size_t cap) {
  return dump_profile_from(path, why, cap, -1, NULL, 0);
}

int profile_write_memfd(int mem, char *written, size_t cap) {
  char why[1024]; /* as long as allocshim_say() prints */
  int status = dump_profile_from(NULL, why, sizeof why, mem, written, cap);
  if (why[0] != '\0') {
    int err = errno;
    allocshim_say("leak check: %s", why);
    errno = err;
  }
  return status == ALLOC_OK ? 0 : -1;
}

int profile_snapshot(void) {
  off_t size;
  return profile_in_memory(&size);
}

int alloc_profile_dump(const char *path) {
  char why[1024]; /* as long as allocshim_say() prints */
  int status = dump_profile(path, why, sizeof why);
  if (why[0] != '\0') {
    int err = errno;
    allocshim_say("alloc_profile_dump: %s", why);
    errno = err;
  }
  return status;
}

/* ALLOCSHIM_PROF_DIR, made absolute now: a relative one names a place under the
 * directory the program started in, not under wherever it later chdir()s. */
static void set_prof_dir(const char *dir) {
  size_t at = 0;
  if (dir[0] == '\0')
    return;
  if (dir[0] != '/') {
    if (getcwd(prof_dir, sizeof prof_dir) == NULL) {
      allocshim_say("ALLOCSHIM_PROF_DIR=%s is relative and the current directory is unknown "
                    "(%s); profiles go to the current directory",
                    dir, strerror(errno));
      prof_dir[0] = '\0';
      return;
    }
    at = strlen(prof_dir);
  }
  int n = snprintf(prof_dir + at, sizeof prof_dir - at, "%s%s", at ? "/" : "", dir);
  if (n < 0 || at + (size_t)n + DEFAULT_NAME_ROOM >= sizeof prof_dir) {
    prof_dir[0] = '\0';
    allocshim_say("ALLOCSHIM_PROF_DIR is too long; profiles go to the current directory");
  }
}

int alloc_profile_activate(bool active) {
  int status = profile_ready();
  if (status != ALLOC_OK)
    return status == ALLOC_ENOTSUP ? status : fail(status, ENOENT);
  return be_profile_activate(active) == 0 ? ALLOC_OK : fail(ALLOC_EIO, EIO);
}

/* ---- Dumps the operator asks for from outside ----------------------------------- */

/* A dump nobody is waiting for: on failure, say why once, and let the program go on. */
static void dump_unattended(const char *trigger) {
  char why[1024]; /* as long as allocshim_say() prints */
  if (dump_profile(NULL, why, sizeof why) == ALLOC_OK)
    return;
  int err = errno;
  static atomic_flag said = ATOMIC_FLAG_INIT;
  if (atomic_flag_test_and_set(&said))
    return;
  if (why[0] != '\0')
    allocshim_say("heap profile on %s: %s", trigger, why);
  else
    allocshim_say("heap profile on %s failed: %s", trigger, strerror(err));
}

static void dump_at_exit(void) { dump_unattended("exit"); }

/* The handler only posts this semaphore (sem_post is async-signal-safe); a dedicated
 * thread waits on it and does the dump, so nothing unsafe runs in signal context. A
 * semaphore, not a pipe: a descriptor is something the program can close (closefrom),
 * or be handed as its own stdin/stdout when it starts with those closed, and then the
 * handler writes into the program's files. One post per signal, one dump per post. */
static sem_t wake;
/* The process whose thread waits on `wake`. A forked child has a copy of the semaphore
 * but no thread (fork copies only the caller), and a child that has not exec'd may
 * not safely start one; so in a child the signal is caught and does nothing: it
 * neither dumps nor reaches the parent. Compared in the handler, which needs no
 * pthread_atfork and holds for children made by clone() or vfork() too. */
static pid_t dumper;

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  if (getpid() == dumper) /* EOVERFLOW: SEM_VALUE_MAX dumps are already owed */
    sem_post(&wake);
  errno = saved;
}

static void ignore_signal(int sig) { (void)sig; }

/* Dumps the thread has finished, for tests that must know a signal was handled
 * rather than guess how long that takes. */
static atomic_uint signal_dumps_done;
unsigned profile_signal_dumps_done(void) { return atomic_load(&signal_dumps_done); }

static void *dump_thread(void *arg) {
  (void)arg;
  for (;;) {
    if (sem_wait(&wake) == 0) {
      dump_unattended("signal");
      atomic_fetch_add(&signal_dumps_done, 1);
    } else if (errno != EINTR) {
      return NULL;
    }
  }
}

/* Signals the operator may not choose, and why. A fault signal (SEGV, BUS, ILL, FPE)
 * is raised again by the faulting instruction as soon as a handler returns: caught, a
 * real crash becomes an endless loop of dumps. The others are the ones whose default
 * action is a core dump someone relies on (abort, debuggers, seccomp, ^\ for a hung
 * program's core), or that the kernel sends in the program's ordinary work, where
 * catching changes what the program does: PIPE (a program that should die on a closed
 * pipe would go on), CHLD (a dump per child that exits), job control (a background
 * read of the terminal with TTIN caught is retried forever), and the resource limits. */
/* Only USR1, USR2 and the real-time signals may be chosen: nobody else sends them. Every
 * other one either has a sender besides the operator (the kernel, a terminal, a network
 * peer, or, for CONT, any process of the same session whatever its user: an
 * unprivileged user could fill a root daemon's disk with dumps) or a meaning the program
 * relies on (a stop, a hang-up, its own timers). */
#define STOPS    "it asks the program to stop; caught, the program would go on"
#define HANGUP   "the terminal sends it when it hangs up, and daemons use it to reload"
#define TIMER    "the program's own timers raise it (alarm, setitimer)"
#define ASYNC_IO "the kernel sends it when asynchronous I/O is ready"
static const struct signal_name {
  const char *name;
  int sig;
  const char *refused; /* NULL: may be chosen */
} signal_names[] = {
    {"HUP", SIGHUP, HANGUP},
    {"INT", SIGINT, STOPS},
    {"QUIT", SIGQUIT, "its default action is a core dump, the way to see inside a hung program"},
    {"ILL", SIGILL, "it reports a crash; caught, a real crash would loop forever"},
    {"TRAP", SIGTRAP, "debuggers and breakpoints use it"},
    {"ABRT", SIGABRT, "abort() and failed assertions raise it"},
    {"IOT", SIGIOT, "abort() and failed assertions raise it"},
    {"BUS", SIGBUS, "it reports a crash; caught, a real crash would loop forever"},
    {"FPE", SIGFPE, "it reports a crash; caught, a real crash would loop forever"},
    {"KILL", SIGKILL, "it cannot be caught"},
    {"USR1", SIGUSR1, NULL},
    {"SEGV", SIGSEGV, "it reports a crash; caught, a real crash would loop forever"},
    {"USR2", SIGUSR2, NULL},
    {"PIPE", SIGPIPE, "the kernel sends it on writes to a closed pipe or socket"},
    {"ALRM", SIGALRM, TIMER},
    {"TERM", SIGTERM, STOPS},
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT, "it is unused on Linux; USR1, USR2 and RTMIN+n are for this"},
#endif
    {"CHLD", SIGCHLD, "the kernel sends it whenever a child process ends"},
    {"CONT", SIGCONT, "any process of the same session may send it, whoever runs it"},
    {"STOP", SIGSTOP, "it cannot be caught"},
    {"TSTP", SIGTSTP, "it is job control (^Z)"},
    {"TTIN", SIGTTIN, "it is job control: a background read of the terminal would retry forever"},
    {"TTOU", SIGTTOU, "it is job control: a background write to the terminal would retry forever"},
    {"URG", SIGURG, "the kernel sends it when a network peer sends urgent data"},
    {"XCPU", SIGXCPU, "the kernel sends it at the CPU time limit"},
    {"XFSZ", SIGXFSZ, "the kernel sends it at the file size limit"},
    {"VTALRM", SIGVTALRM, TIMER},
    {"PROF", SIGPROF, TIMER},
    {"WINCH", SIGWINCH, "the kernel sends it whenever the terminal is resized"},
    {"IO", SIGIO, ASYNC_IO},
    {"POLL", SIGPOLL, ASYNC_IO},
#ifdef SIGPWR
    {"PWR", SIGPWR, "init and power daemons send it"},
#endif
    {"SYS", SIGSYS, "it reports a crash (a bad system call, seccomp)"},
};

/* Decimal digits only, no sign, at most 9 of them: a signal number or an RTMIN offset. */
static int small_number(const char *text) {
  int n = 0;
  for (const char *p = text; *p; p++) {
    if (*p < '0' || *p > '9' || p - text >= 9)
      return -1;
    n = n * 10 + (*p - '0');
  }
  return text[0] ? n : -1;
}

int profile_parse_signal(const char *text, const char **why) {
  const char *unused;
  if (why == NULL)
    why = &unused;
  *why = "it is not a signal name (USR2, SIGUSR2, RTMIN+3) or number";
  if (strncmp(text, "SIG", 3) == 0)
    text += 3;
  int n = small_number(text);
  if (strncmp(text, "RTMIN", 5) == 0 || strncmp(text, "RTMAX", 5) == 0) {
    int off = text[5] == '\0' ? 0 : small_number(text + 6);
    if (off < 0 || (text[5] != '\0' && text[5] != (text[4] == 'N' ? '+' : '-')))
      return -1;
    n = text[4] == 'N' ? SIGRTMIN + off : SIGRTMAX - off;
    if (n < SIGRTMIN || n > SIGRTMAX) {
      *why = "it is outside SIGRTMIN..SIGRTMAX";
      return -1;
    }
  } else if (n < 0) {
    for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
      if (strcmp(text, signal_names[i].name) == 0)
        n = signal_names[i].sig;
    if (n < 0)
      return -1;
  }
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
    if (n == signal_names[i].sig && signal_names[i].refused) {
      *why = signal_names[i].refused;
      return -1;
    }
  if (n >= SIGRTMIN && n <= SIGRTMAX)
    return n;
  /* Between the standard signals and SIGRTMIN lie glibc's own (thread cancellation,
   * setxid): sigaction refuses them. */
  *why = n > 0 && n < SIGRTMIN ? "the C library reserves it" : "it is not a signal on this system";
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
    if (n == signal_names[i].sig)
      return n;
  return -1;
}

/* The signal for ALLOCSHIM_PROF_SIGNAL, or -1 after saying why it was refused. */
static int chosen_signal(const char *text) {
  const char *why;
  int sig = profile_parse_signal(text, &why);
  if (sig < 0)
    allocshim_say("ALLOCSHIM_PROF_SIGNAL=%s refused: %s; no heap dumps on signal", text, why);
  return sig;
}

static bool catch_signal(int sig, void (*handler)(int)) {
  struct sigaction sa = {0};
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, NULL) == 0)
    return true;
  allocshim_say("no heap dumps on signal: sigaction(%d): %s", sig, strerror(errno));
  return false;
}

static void start_signal_dumps(int sig) {
  if (sem_init(&wake, 0, 0) != 0) {
    allocshim_say("no heap dumps on signal: semaphore: %s", strerror(errno));
    return;
  }
  dumper = getpid();
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread inherits "all blocked" */
  pthread_t tid;
  int err = pthread_create(&tid, NULL, dump_thread, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) {
    allocshim_say("no heap dumps on signal: thread: %s", strerror(err));
    return;
  }
  pthread_detach(tid);
  catch_signal(sig, on_signal);
}

/* ALLOCSHIM_PROF_SAMPLE: whole bytes, 1 to 2^40 (a sample per TiB is already next to
 * none). Digits only: strtoull would take "-1" as ULLONG_MAX, and an overflow as the
 * same, and either would switch sampling off in silence. Parsed by hand because it
 * runs inside jemalloc's first allocation, where errno must stay as it was. */
bool profile_parse_sample(const char *text, unsigned long long *bytes) {
  unsigned long long n = 0;
  for (const char *p = text; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
    n = n * 10 + (unsigned long long)(*p - '0');
    if (n > PROF_SAMPLE_MAX)
      return false;
  }
  if (n == 0)
    return false;
  *bytes = n;
  return true;
}

/* "0", "no" and the like: the operator switched profiling off on purpose. */
static bool said_no(const char *v) {
  static const char *const no[] = {"0", "n", "no", "false", "off"};
  for (size_t i = 0; v != NULL && i < sizeof no / sizeof no[0]; i++)
    if (strcasecmp(v, no[i]) == 0)
      return true;
  return false;
}

void profile_start(void) {
  const char *prof = allocshim_env("PROF"), *sig = allocshim_env("PROF_SIGNAL");
  const char *dir = allocshim_env("PROF_DIR"), *sample = allocshim_env("PROF_SAMPLE");
  const char *format = allocshim_env("PROF_FORMAT");
  bool at_exit = allocshim_env_flag("PROF_AT_EXIT"), leaks = allocshim_env_flag("PROF_LEAKS");
  bool others = sig != NULL || dir != NULL || sample != NULL || format != NULL || at_exit || leaks;
  if (prof == NULL && !others)
    return;
  int signo = sig ? chosen_signal(sig) : -1;
  int status = be_profile_status();
  if (status != ALLOC_OK) {
    /* The operator's runbook may still send the signal: it must not kill the program.
     * A handler (not SIG_IGN) so that exec'd children get the default back. */
    bool caught = signo > 0 && catch_signal(signo, ignore_signal);
    const char *note = caught ? " (the signal is caught and does nothing)" : "";
    if (leaks && status == ALLOC_ENOTSUP) {
      /* One line, and the program runs as it would without the setting. */
      allocshim_say("leak checking (ALLOCSHIM_PROF_LEAKS) is not supported on this platform: "
                    "allocshim uses %s %s here; the program runs without it%s",
                    alloc_backend(), alloc_backend_version(), note);
    } else if (leaks && !said_no(prof)) {
      allocshim_say("ALLOCSHIM_PROF_LEAKS=1, but jemalloc's profiling is off (MALLOC_CONF has "
                    "the last word); no leak check%s",
                    note);
    } else if (said_no(prof)) {
      if (others)
        allocshim_say("ALLOCSHIM_PROF=%s switches heap profiling off; the other ALLOCSHIM_PROF_* "
                      "settings are ignored%s",
                      prof, note);
    } else if (status == ALLOC_ENOTSUP) {
      allocshim_say("heap profiling is not supported on this platform: allocshim uses %s %s "
                    "here; the ALLOCSHIM_PROF settings are ignored%s",
                    alloc_backend(), alloc_backend_version(), note);
    } else if (prof == NULL) {
      allocshim_say("ALLOCSHIM_PROF_* settings need ALLOCSHIM_PROF=1; ignored%s", note);
    } else if (allocshim_env_flag("PROF")) {
      allocshim_say("ALLOCSHIM_PROF=%s, but jemalloc's profiling is off (MALLOC_CONF has the last "
                    "word); the ALLOCSHIM_PROF_* settings are ignored%s",
                    prof, note);
    } else {
      allocshim_say("ALLOCSHIM_PROF=%s is neither 1 nor 0; heap profiling is off%s%s", prof,
                    others ? " and the other ALLOCSHIM_PROF_* settings are ignored" : "", note);
    }
    return;
  }
  unsigned long long bytes;
  if (sample != NULL && !profile_parse_sample(sample, &bytes))
    allocshim_say("ALLOCSHIM_PROF_SAMPLE=%s refused: not a whole number of bytes from 1 to "
                  "%llu; jemalloc's default sampling is kept",
                  sample, (unsigned long long)PROF_SAMPLE_MAX);
  if (format != NULL && strcmp(format, "pprof") == 0)
    prof_pprof = true;
  else if (format != NULL && strcmp(format, "jeprof") != 0)
    allocshim_say("ALLOCSHIM_PROF_FORMAT=%s refused: it is pprof or jeprof; profiles are "
                  "written in jeprof's format",
                  format);
  if (dir != NULL)
    set_prof_dir(dir);
  if (signo > 0)
    start_signal_dumps(signo);
  if (at_exit)
    atexit(dump_at_exit);
  if (leaks)
    leaks_start();
}
