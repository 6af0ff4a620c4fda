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
#include <stdbool.h>
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

/* The link wraps sigaction (tests/CMakeLists.txt): a refusal on request, so the test
 * can see that the shim checks the result. */
static bool fail_sigaction;
int __real_sigaction(int sig, const struct sigaction *sa, struct sigaction *old);
int __wrap_sigaction(int sig, const struct sigaction *sa, struct sigaction *old) {
  if (fail_sigaction) {
    errno = EINVAL;
    return -1;
  }
  return __real_sigaction(sig, sa, old);
}

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
  char rtmin[16], rtmax[16];
  snprintf(rtmin, sizeof rtmin, "%d", SIGRTMIN);
  snprintf(rtmax, sizeof rtmax, "%d", SIGRTMAX);
  const struct {
    const char *text;
    int sig;
  } good[] = {{"USR2", SIGUSR2},   {"SIGUSR1", SIGUSR1},      {"12", 12},
              {"10", 10},          {"RTMIN", SIGRTMIN},       {"SIGRTMIN+1", SIGRTMIN + 1},
              {"RTMAX", SIGRTMAX}, {"RTMAX-2", SIGRTMAX - 2}, {rtmin, SIGRTMIN},
              {rtmax, SIGRTMAX}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    const char *why = NULL;
    assert_int_equal(profile_parse_signal(good[i].text, &why), good[i].sig);
    assert_int_equal(profile_parse_signal(good[i].text, NULL), good[i].sig);
  }
  /* Each refused with a reason containing the given words. */
  const struct {
    const char *text, *because;
  } bad[] = {{"CONT", "same session"},
             {"SIGCONT", "same session"},
             {"18", "same session"},
             {"HUP", "hangs up"},
             {"TERM", "stop"},
             {"INT", "stop"},
             {"ALRM", "timers"},
             {"PROF", "timers"},
             {"WINCH", "resized"},
             {"URG", "network peer"},
             {"IO", "asynchronous"},
             {"KILL", "cannot be caught"},
             {"SIGSTOP", "cannot be caught"},
             {"9", "cannot be caught"},
             {"19", "cannot be caught"},
             {"SEGV", "crash"},
             {"SIGSEGV", "crash"},
             {"11", "crash"},
             {"BUS", "crash"},
             {"7", "crash"},
             {"ILL", "crash"},
             {"4", "crash"},
             {"FPE", "crash"},
             {"8", "crash"},
             {"ABRT", "abort"},
             {"6", "abort"},
             {"TRAP", "debuggers"},
             {"SYS", "crash"},
             {"31", "crash"},
             {"QUIT", "core"},
             {"PIPE", "closed pipe"},
             {"CHLD", "child"},
             {"TSTP", "job control"},
             {"TTIN", "job control"},
             {"TTOU", "job control"},
             {"XCPU", "limit"},
             {"XFSZ", "limit"},
             {"32", "reserves"},
             {"33", "reserves"},
             {"RTMIN+99", "SIGRTMIN..SIGRTMAX"},
             {"RTMAX-99", "SIGRTMIN..SIGRTMAX"},
             {"RTMIN-1", "not a signal name"},
             {"RTMAX+1", "not a signal name"},
             {"RTMIN+", "not a signal name"},
             {"0", "not a signal"},
             {"-3", "not a signal"},
             {"+12", "not a signal"},
             {" 12", "not a signal"},
             {"999", "not a signal"},
             {"99999999999999999999", "not a signal"},
             {"USR3", "not a signal"},
             {"", "not a signal"},
             {"12x", "not a signal"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *why = NULL;
    assert_int_equal(profile_parse_signal(bad[i].text, &why), -1);
    assert_non_null(why);
    if (strstr(why, bad[i].because) == NULL)
      fail_msg("%s: \"%s\" does not say \"%s\"", bad[i].text, why, bad[i].because);
  }
}

static void test_parse_sample(void **state) {
  (void)state;
  unsigned long long bytes = 0;
  assert_true(profile_parse_sample("1", &bytes));
  assert_int_equal(bytes, 1);
  assert_true(profile_parse_sample("524288", &bytes));
  assert_int_equal(bytes, 524288);
  assert_true(profile_parse_sample("1099511627776", &bytes)); /* 2^40 */
  assert_int_equal(bytes, 1ull << 40);
  const char *bad[] = {"-1",
                       "0",
                       "",
                       "+5",
                       " 5",
                       "5 ",
                       "12k",
                       "0x10",
                       "1099511627777",
                       "18446744073709551615",
                       "99999999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    bytes = 7;
    errno = 4242;
    if (profile_parse_sample(bad[i], &bytes))
      fail_msg("ALLOCSHIM_PROF_SAMPLE=%s accepted", bad[i]);
    assert_int_equal(bytes, 7);
    assert_int_equal(errno, 4242);
  }
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

/* A pprof name gets the same answer as any other where there is nothing to dump (the
 * mimalloc backend, profiling off), before any converter is looked for; no file. */
static void test_pprof_name_without_profiling(void **state) {
  (void)state;
  if (expected == ALLOC_OK)
    skip();
  char dir[] = "/tmp/allocshim-test-pprof.XXXXXX", path[PATH_MAX];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/x.pb.gz", dir);
  errno = 0;
  assert_int_equal(alloc_profile_dump(path), expected);
  assert_int_equal(errno, expected == ALLOC_ENOTSUP ? ENOTSUP : ENOENT);
  assert_int_equal(access(path, F_OK), -1);
  rmdir(dir);
}

/* Profiles in `dir`; a directory not made yet holds none. */
static int count_heaps(const char *dir) {
  int n = count_entries(dir, ".heap");
  return n < 0 ? 0 : n;
}

/* Waits for `want` profiles in `dir`, at most 30 s: they are written by another thread. */
static void settle(const char *dir, int want) {
  for (int i = 0; i < 1500 && count_heaps(dir) < want; i++)
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
    if (expected == ALLOC_EPROFOFF) /* the runbook's signal must not kill us either */
      _exit(count_of(err, "need ALLOCSHIM_PROF=1") == 1 && count_of(err, "\n") == 1 &&
                    raise(SIGUSR2) == 0
                ? 0
                : 1);
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
    /* Each signal's dump waited for (30 s at most), not a guessed sleep. */
    for (unsigned i = 1; i <= 3; i++) {
      raise(SIGUSR1);
      for (int t = 0; t < 1500 && profile_signal_dumps_done() < i; t++)
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    stderr_end(err, sizeof err);
    if (profile_signal_dumps_done() != 3)
      _exit(2);
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
static int entries_in(const char *dir) { return count_entries(dir, ""); }

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

/* The link wraps the backend's per-thread sampling switch too, which a dump turns off
 * and on around its work: whatever it does to errno (a mallctl underneath), a dump that
 * works leaves the caller's. */
bool __real_be_profile_thread(bool on);
bool __wrap_be_profile_thread(bool on) {
  bool changed = __real_be_profile_thread(on);
  errno = EBADF;
  return changed;
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

/* profile_start() in a child with the given settings (NULL: unset); returns what it
 * said on stderr in `err`, and whether `raise_sig` (if not 0) left it alive. */
static bool start_in_child(const char *const settings[][2], size_t n, int raise_sig, char *err,
                           size_t cap) {
  int out[2];
  assert_int_equal(pipe(out), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(out[0]);
    const char *const all[] = {"ALLOCSHIM_PROF_SIGNAL", "ALLOCSHIM_PROF_DIR",
                               "ALLOCSHIM_PROF_AT_EXIT", "ALLOCSHIM_PROF_SAMPLE"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
      unsetenv(all[i]);
    for (size_t i = 0; i < n; i++)
      setenv(settings[i][0], settings[i][1], 1);
    dup2(out[1], STDERR_FILENO);
    /* cmocka catches SIGSEGV and friends to report a test; whether the signal kills
     * must depend on profile_start() alone. */
    if (raise_sig)
      signal(raise_sig, SIG_DFL);
    profile_start();
    if (raise_sig)
      raise(raise_sig);
    _exit(0);
  }
  close(out[1]);
  size_t len = 0;
  for (ssize_t r; len < cap - 1 && (r = read(out[0], err + len, cap - 1 - len)) != 0;)
    len += r > 0 ? (size_t)r : 0;
  err[len] = '\0';
  close(out[0]);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ALLOCSHIM_PROF=0 is the operator switching profiling off: said as such when other
 * settings are there to be ignored, and nothing at all when it stands alone. */
static void test_prof_off_said_truly(void **state) {
  (void)state;
  if (expected == ALLOC_OK)
    skip(); /* profiling is on for this process whatever the child's environment says */
  char err[2048];
  const char *const off_alone[][2] = {{"ALLOCSHIM_PROF", "0"}};
  assert_true(start_in_child(off_alone, 1, 0, err, sizeof err));
  assert_string_equal(err, "");
  const char *const off_with[][2] = {{"ALLOCSHIM_PROF", "no"}, {"ALLOCSHIM_PROF_SIGNAL", "USR2"}};
  assert_true(start_in_child(off_with, 2, SIGUSR2, err, sizeof err));
  assert_int_equal(count_of(err, "\n"), 1);
  assert_int_equal(count_of(err, "ALLOCSHIM_PROF=no switches heap profiling off"), 1);
  assert_int_equal(count_of(err, "the signal is caught and does nothing"), 1);
  assert_int_equal(count_of(err, "need ALLOCSHIM_PROF=1"), 0);
  const char *const unclear[][2] = {{"ALLOCSHIM_PROF", "2"}};
  assert_true(start_in_child(unclear, 1, 0, err, sizeof err));
  assert_int_equal(count_of(err, expected == ALLOC_ENOTSUP ? "not supported" : "neither 1 nor 0"),
                   1);
}

/* A fatal or reserved signal is refused in one line, on every backend, and a signal
 * the kernel will not let us catch is said to be so. */
static void test_signal_refused(void **state) {
  (void)state;
  char err[2048];
  const char *const segv[][2] = {{"ALLOCSHIM_PROF", "1"}, {"ALLOCSHIM_PROF_SIGNAL", "11"}};
  assert_false(start_in_child(segv, 2, SIGSEGV, err, sizeof err)); /* the default: death */
  assert_int_equal(count_of(err, "ALLOCSHIM_PROF_SIGNAL=11 refused: it reports a crash"), 1);
  const char *const rt32[][2] = {{"ALLOCSHIM_PROF", "1"}, {"ALLOCSHIM_PROF_SIGNAL", "32"}};
  assert_true(start_in_child(rt32, 2, 0, err, sizeof err));
  assert_int_equal(count_of(err, "ALLOCSHIM_PROF_SIGNAL=32 refused: the C library reserves it"), 1);
  fail_sigaction = true;
  const char *const usr1[][2] = {{"ALLOCSHIM_PROF", "1"}, {"ALLOCSHIM_PROF_SIGNAL", "USR1"}};
  bool alive = start_in_child(usr1, 2, 0, err, sizeof err);
  fail_sigaction = false;
  assert_true(alive);
  assert_int_equal(count_of(err, "sigaction(10): Invalid argument"), 1);
}

/* A bad sample interval is refused in one line; the default is kept (the value
 * jemalloc took is checked by tests/integration/sig_hostile.sh). */
static void test_sample_refused(void **state) {
  (void)state;
  if (expected != ALLOC_OK)
    skip();
  char err[2048];
  const char *const bad[][2] = {{"ALLOCSHIM_PROF_SAMPLE", "-1"}};
  assert_true(start_in_child(bad, 1, 0, err, sizeof err));
  assert_int_equal(count_of(err, "\n"), 1);
  assert_int_equal(count_of(err, "ALLOCSHIM_PROF_SAMPLE=-1 refused"), 1);
  const char *const good[][2] = {{"ALLOCSHIM_PROF_SAMPLE", "4096"}};
  assert_true(start_in_child(good, 1, 0, err, sizeof err));
  assert_string_equal(err, "");
}

/* A forked child keeps the handler but has no dump thread: the signal is caught
 * there and does nothing, neither a dump nor a wake-up of the parent's thread. */
static void test_signal_in_forked_child(void **state) {
  (void)state;
  if (expected != ALLOC_OK)
    skip();
  char dir[] = "/tmp/allocshim-test-fork.XXXXXX";
  assert_non_null(mkdtemp(dir));
  pid_t pid = fork();
  if (pid == 0) {
    setenv("ALLOCSHIM_PROF_DIR", dir, 1);
    setenv("ALLOCSHIM_PROF_SIGNAL", "USR2", 1);
    profile_start();
    pid_t child = fork();
    if (child == 0)
      _exit(raise(SIGUSR2) == 0 && raise(SIGUSR2) == 0 ? 0 : 1);
    int status = 0;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      _exit(2);     /* the child died of the signal */
    raise(SIGUSR2); /* the parent's own: one dump, queued after any the child caused */
    settle(dir, 1);
    _exit(count_heaps(dir) == 1 ? 0 : 3);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(count_heaps(dir), 1);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_signal),
      cmocka_unit_test(test_parse_sample),
      cmocka_unit_test(test_prof_off_said_truly),
      cmocka_unit_test(test_signal_refused),
      cmocka_unit_test(test_sample_refused),
      cmocka_unit_test(test_activate),
      cmocka_unit_test(test_pprof_name_without_profiling),
      cmocka_unit_test(test_signal_and_exit_dumps),
      cmocka_unit_test(test_failed_dumps_said_once),
      cmocka_unit_test(test_signal_in_forked_child),
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
