/* Tests for src/profile.c: signal names, activation, the dumps an operator asks for
 * from outside (signal, exit, directory), and how a profile file is written (where it
 * may go, what it may replace, what a full disk does). ctest runs it with and without
 * ALLOCSHIM_PROF=1 on jemalloc builds; tests/integration/prof_hostile.sh adds the cases
 * that need a second user. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "test_util.h"

static int expected; /* what alloc_profile_supported() says in this run */

static int setup(void **state) {
  (void)state;
  expected = alloc_profile_supported();
  bool jemalloc = strcmp(EXPECTED_BACKEND, "jemalloc") == 0;
  const char *prof = getenv("ALLOCSHIM_PROF");
  int want = !jemalloc                          ? ALLOC_ENOTSUP
             : (prof && strcmp(prof, "1") == 0) ? ALLOC_OK
                                                : ALLOC_EPROFOFF;
  return expected == want ? 0 : -1;
}

static void test_parse_signal(void **state) {
  (void)state;
  assert_int_equal(profile_parse_signal("USR2"), SIGUSR2);
  assert_int_equal(profile_parse_signal("SIGUSR1"), SIGUSR1);
  assert_int_equal(profile_parse_signal("HUP"), SIGHUP);
  assert_int_equal(profile_parse_signal("12"), 12);
  const char *bad[] = {"KILL", "SIGSTOP", "9", "19", "0", "-3", "999", "USR3", "", "12x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(profile_parse_signal(bad[i]), -1);
}

static void test_activate(void **state) {
  (void)state;
  errno = 0;
  assert_int_equal(alloc_profile_activate(false), expected);
  if (expected == ALLOC_OK) {
    assert_int_equal(alloc_profile_activate(true), ALLOC_OK);
  } else {
    assert_int_equal(errno, expected == ALLOC_ENOTSUP ? ENOTSUP : ENOENT);
  }
}

static int count_heaps(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d)) != NULL;)
    n += strstr(e->d_name, ".heap") != NULL;
  if (d)
    closedir(d);
  return n;
}

static void settle(const char *dir, int want) {
  for (int i = 0; i < 200 && count_heaps(dir) < want; i++)
    nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
}

/* In a child, so that handlers, threads and atexit stay out of this process. */
static void test_signal_and_exit_dumps(void **state) {
  (void)state;
  char base[] = "/tmp/allocshim-test-prof.XXXXXX";
  assert_non_null(mkdtemp(base));
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/deep/er", base);
  pid_t pid = fork();
  if (pid == 0) {
    setenv("ALLOCSHIM_PROF_DIR", dir, 1);
    setenv("ALLOCSHIM_PROF_SIGNAL", "USR2", 1);
    setenv("ALLOCSHIM_PROF_AT_EXIT", "1", 1);
    char err[1024];
    stderr_begin();
    profile_start();
    stderr_end(err, sizeof err);
    if (expected == ALLOC_ENOTSUP)
      _exit(count_of(err, "not supported on this platform") == 1 && count_of(err, "\n") == 1 &&
                    raise(SIGUSR2) == 0 /* must not kill us */
                ? 0
                : 1);
    if (expected == ALLOC_EPROFOFF)
      _exit(count_of(err, "need ALLOCSHIM_PROF=1") == 1 ? 0 : 1);
    raise(SIGUSR2);
    settle(dir, 1);
    raise(SIGUSR2);
    settle(dir, 2);
    exit(count_heaps(dir) == 2 ? 0 : 3); /* exit(), not _exit(): the at-exit dump */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  if (expected == ALLOC_OK) {
    assert_int_equal(count_heaps(dir), 3);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
  } else {
    assert_int_equal(access(dir, F_OK), -1); /* nothing created */
  }
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  assert_int_equal(system(cmd), 0);
}

/* An unattended dump that fails says why once, and the program goes on. */
static void test_failed_dumps_said_once(void **state) {
  (void)state;
  if (expected != ALLOC_OK)
    skip();
  pid_t pid = fork();
  if (pid == 0) {
    setenv("ALLOCSHIM_PROF_DIR", "/proc/allocshim-cannot-be-here", 1);
    setenv("ALLOCSHIM_PROF_SIGNAL", "USR1", 1);
    char err[2048];
    stderr_begin();
    profile_start();
    for (int i = 0; i < 3; i++) {
      raise(SIGUSR1);
      nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
    }
    stderr_end(err, sizeof err);
    _exit(count_of(err, "heap profile on signal failed") == 1 ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- Profile files ------------------------------------------------------------------
 * Each case runs in a child, so that profile_start(), rlimits and chdir() stay out of
 * this process; the child's exit status is the number of the line that failed. */

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "child: line %d: %s (errno %d)\n", __LINE__, #c, errno);                     \
      return 1;                                                                                    \
    }                                                                                              \
  } while (0)

/* Entries in `dir`, "." and ".." aside: hidden temporary files count. */
static int entries_in(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d)) != NULL;)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  if (d)
    closedir(d);
  return d ? n : -1;
}

/* Whether `path` is a regular file that starts like a jemalloc heap profile. */
static bool is_profile(const char *path) {
  char head[8] = {0};
  FILE *f = fopen(path, "r");
  bool ok = f && fread(head, 1, sizeof head, f) == sizeof head && memcmp(head, "heap_v2/", 8) == 0;
  if (f)
    fclose(f);
  return ok;
}

static bool has_content(const char *path, const char *want) {
  char got[64] = {0};
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(got, 1, sizeof got - 1, f) : 0;
  if (f)
    fclose(f);
  return f && n == strlen(want) && memcmp(got, want, n) == 0;
}

static void put_file(const char *path, const char *content) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

static void in_child(int (*body)(const char *base)) {
  if (expected != ALLOC_OK)
    skip();
  char base[] = "/tmp/allocshim-test-prof.XXXXXX";
  assert_non_null(mkdtemp(base));
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0)
    _exit(body(base));
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
  assert_int_equal(system(cmd), 0);
  if (WIFSIGNALED(status))
    fail_msg("the child died of signal %d", WTERMSIG(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* errno is the caller's after a dump that worked: once EEXIST leaked from mkdir. */
static int errno_kept(const char *base) {
  setenv("ALLOCSHIM_PROF_DIR", base, 1); /* exists already */
  profile_start();
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/explicit.heap", base);
  errno = ERANGE;
  CHECK(alloc_profile_dump(NULL) == ALLOC_OK);
  CHECK(errno == ERANGE);
  errno = EDOM;
  CHECK(alloc_profile_dump(path) == ALLOC_OK);
  CHECK(errno == EDOM);
  errno = 0;
  CHECK(alloc_profile_dump(path) == ALLOC_OK); /* replacing our own earlier profile */
  CHECK(errno == 0);
  CHECK(is_profile(path) && entries_in(base) == 2);
  return 0;
}
static void test_errno_kept_on_success(void **state) {
  (void)state;
  in_child(errno_kept);
}

/* A name as long as most file systems allow, 250 bytes: the temporary file's name
 * once grew from it past NAME_MAX. */
static int long_name(const char *base) {
  char path[PATH_MAX];
  int at = snprintf(path, sizeof path, "%s/", base);
  memset(path + at, 'p', 250);
  path[at + 250] = '\0';
  CHECK(alloc_profile_dump(path) == ALLOC_OK);
  CHECK(is_profile(path) && entries_in(base) == 1);
  path[at + 250] = 'p'; /* one over NAME_MAX (255): the OS's answer, nothing left */
  memset(path + at + 250, 'p', 6);
  path[at + 256] = '\0';
  CHECK(alloc_profile_dump(path) == ALLOC_EIO && errno == ENAMETOOLONG);
  CHECK(entries_in(base) == 1);
  return 0;
}
static void test_long_file_name(void **state) {
  (void)state;
  in_child(long_name);
}

/* A relative ALLOCSHIM_PROF_DIR means where the program started, not wherever it
 * has chdir()ed to since. */
static int relative_dir(const char *base) {
  char here[PATH_MAX], elsewhere[PATH_MAX], want[PATH_MAX];
  snprintf(here, sizeof here, "%s/start", base);
  snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", base);
  snprintf(want, sizeof want, "%s/start/rel/dir", base);
  CHECK(mkdir(here, 0700) == 0 && mkdir(elsewhere, 0700) == 0 && chdir(here) == 0);
  setenv("ALLOCSHIM_PROF_DIR", "rel/dir", 1);
  profile_start();
  CHECK(chdir(elsewhere) == 0);
  CHECK(alloc_profile_dump(NULL) == ALLOC_OK);
  CHECK(entries_in(want) == 1 && entries_in(elsewhere) == 0);
  return 0;
}
static void test_relative_dir_survives_chdir(void **state) {
  (void)state;
  in_child(relative_dir);
}

/* Default names repeat across runs (pid 1 in a container restarting): a file that
 * has the next name already is kept, and the dump takes a free one. */
static int default_names(const char *base) {
  setenv("ALLOCSHIM_PROF_DIR", base, 1);
  profile_start();
  CHECK(alloc_profile_dump(NULL) == ALLOC_OK);
  DIR *d = opendir(base);
  unsigned seq = 0;
  for (struct dirent *e; d && (e = readdir(d)) != NULL;)
    if (sscanf(e->d_name, "allocshim.%*d.%u.heap", &seq) == 1)
      break;
  closedir(d);
  char taken[3][PATH_MAX];
  for (unsigned i = 0; i < 3; i++) {
    snprintf(taken[i], sizeof taken[i], "%s/allocshim.%ld.%u.heap", base, (long)getpid(),
             seq + 1 + i);
    put_file(taken[i], "last run's profile");
  }
  CHECK(alloc_profile_dump(NULL) == ALLOC_OK);
  for (int i = 0; i < 3; i++)
    CHECK(has_content(taken[i], "last run's profile"));
  CHECK(entries_in(base) == 5);
  return 0;
}
static void test_default_name_never_replaces(void **state) {
  (void)state;
  in_child(default_names);
}

/* 1 MiB blocks (sampled nearly always) from `depth` different call stacks, each one
 * frame deeper: a profile longer than jemalloc's 64 KiB write buffer. */
__attribute__((noinline)) static void deep_blocks(int depth, void **keep) {
  if (depth == 0)
    return;
  keep[depth - 1] = malloc(1 << 20);
  deep_blocks(depth - 1, keep);
  __asm__ volatile("" ::: "memory"); /* no tail call: every level keeps its frame */
}

/* RLIMIT_FSIZE below the profile's size: the dump fails with EFBIG and leaves no
 * file, and the process lives, whatever SIGXFSZ's disposition (its default kills). The
 * profile takes more than one of jemalloc's writes, so one of them meets the limit and
 * the kernel raises SIGXFSZ (a single short write would not). */
static int file_limit(const char *base, void (*action)(int)) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/limited.heap", base);
  static void *keep[160];
  deep_blocks(160, keep);
  signal(SIGXFSZ, action);
  struct rlimit small = {1024, RLIM_INFINITY}, none = {RLIM_INFINITY, RLIM_INFINITY};
  CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
  errno = 0;
  CHECK(alloc_profile_dump(path) == ALLOC_EIO);
  CHECK(errno == EFBIG);
  CHECK(alloc_profile_dump(NULL) == ALLOC_EIO && errno == EFBIG);
  CHECK(entries_in(base) == 0);
  CHECK(setrlimit(RLIMIT_FSIZE, &none) == 0); /* no SIGXFSZ left pending either */
  CHECK(alloc_profile_dump(path) == ALLOC_OK && is_profile(path));
  struct stat sb;
  CHECK(stat(path, &sb) == 0 && sb.st_size > 80 * 1024); /* more than one write */
  for (int i = 0; i < 160; i++)
    free(keep[i]);
  return 0;
}
static int file_limit_default(const char *base) { return file_limit(base, SIG_DFL); }
static int file_limit_ignored(const char *base) { return file_limit(base, SIG_IGN); }
static void test_file_size_limit(void **state) {
  (void)state;
  in_child(file_limit_default);
  in_child(file_limit_ignored);
}

/* An explicit path replaces nothing but a regular file of ours: a symlink (and what it
 * points to) and a FIFO stay as they were. prof_hostile.sh adds devices and another
 * user's file. */
static int targets(const char *base) {
  char victim[PATH_MAX], link[PATH_MAX], fifo[PATH_MAX], target[PATH_MAX];
  snprintf(victim, sizeof victim, "%s/victim", base);
  snprintf(link, sizeof link, "%s/link.heap", base);
  snprintf(fifo, sizeof fifo, "%s/fifo.heap", base);
  put_file(victim, "precious");
  CHECK(symlink(victim, link) == 0 && mkfifo(fifo, 0600) == 0);
  CHECK(alloc_profile_dump(link) == ALLOC_EIO && errno == ELOOP);
  struct stat sb;
  ssize_t n = readlink(link, target, sizeof target - 1);
  CHECK(n > 0 && (size_t)n == strlen(victim) && memcmp(target, victim, (size_t)n) == 0);
  CHECK(has_content(victim, "precious"));
  CHECK(alloc_profile_dump(fifo) == ALLOC_EIO && errno == EEXIST);
  CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
  CHECK(alloc_profile_dump(victim) == ALLOC_OK && is_profile(victim)); /* ours: replaced */
  CHECK(entries_in(base) == 3);
  return 0;
}
static void test_only_own_regular_files_replaced(void **state) {
  (void)state;
  in_child(targets);
}

/* A profile directory others may write to (not sticky) is refused with one line
 * naming it, and nothing is created there; a sticky one is fine. */
static int untrusted_dirs(const char *base) {
  const struct {
    const char *name;
    mode_t mode;
    const char *why; /* NULL: trusted */
  } dirs[] = {{"open", 0777, "writable by others and not sticky"},
              {"group", 0770, "writable by its group and not sticky"},
              {"sticky", 01777, NULL}};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    char dir[PATH_MAX / 2], path[PATH_MAX], err[2048];
    snprintf(dir, sizeof dir, "%s/%s", base, dirs[i].name);
    snprintf(path, sizeof path, "%s/under/x.heap", dir);
    CHECK(mkdir(dir, 0700) == 0 && chmod(dir, dirs[i].mode) == 0);
    stderr_begin();
    int st = alloc_profile_dump(path); /* dir/under is missing: refused before that shows */
    int e = errno;
    stderr_end(err, sizeof err);
    CHECK(st == ALLOC_EIO && e == (dirs[i].why ? EPERM : ENOENT));
    snprintf(path, sizeof path, "%s/x.heap", dir);
    stderr_begin();
    st = alloc_profile_dump(path);
    e = errno;
    stderr_end(err, sizeof err);
    if (dirs[i].why == NULL) {
      CHECK(st == ALLOC_OK && is_profile(path) && err[0] == '\0');
      continue;
    }
    CHECK(st == ALLOC_EIO && e == EPERM);
    CHECK(count_of(err, "\n") == 1 && count_of(err, dir) >= 1 && count_of(err, dirs[i].why) == 1);
    CHECK(entries_in(dir) == 0);
  }
  /* ALLOCSHIM_PROF_DIR under one: not created, and one line for the operator. */
  char dir[PATH_MAX], err[2048];
  snprintf(dir, sizeof dir, "%s/open/profiles", base);
  setenv("ALLOCSHIM_PROF_DIR", dir, 1);
  profile_start();
  stderr_begin();
  int st = alloc_profile_dump(NULL);
  stderr_end(err, sizeof err);
  CHECK(st == ALLOC_EIO && count_of(err, "\n") == 1 && count_of(err, "writable by others") == 1);
  snprintf(dir, sizeof dir, "%s/open", base);
  CHECK(entries_in(dir) == 0);
  return 0;
}
static void test_untrusted_dir_refused(void **state) {
  (void)state;
  in_child(untrusted_dirs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_signal),
      cmocka_unit_test(test_activate),
      cmocka_unit_test(test_signal_and_exit_dumps),
      cmocka_unit_test(test_failed_dumps_said_once),
      cmocka_unit_test(test_errno_kept_on_success),
      cmocka_unit_test(test_long_file_name),
      cmocka_unit_test(test_relative_dir_survives_chdir),
      cmocka_unit_test(test_default_name_never_replaces),
      cmocka_unit_test(test_file_size_limit),
      cmocka_unit_test(test_only_own_regular_files_replaced),
      cmocka_unit_test(test_untrusted_dir_refused),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
