/* Tests for src/profile.c: signal names, activation, and the dumps an operator asks
 * for from outside (signal, exit, directory). ctest runs it with and without
 * ALLOCSHIM_PROF=1 on jemalloc builds. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_signal),
      cmocka_unit_test(test_activate),
      cmocka_unit_test(test_signal_and_exit_dumps),
      cmocka_unit_test(test_failed_dumps_said_once),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
