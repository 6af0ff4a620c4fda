/* Tests for src/backend_mimalloc.c: its version string, the not-supported answers
 * for profiling, which statistics it knows, and how its idle-return thread starts. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend.h"
#include "test_owns.h"
#include "test_util.h"

static void test_version(void **state) {
  (void)state;
  char want[32];
  int v = mi_version();
  snprintf(want, sizeof want, "%d.%d.%d", v / 100, v / 10 % 10, v % 10);
  assert_string_equal(be_version(), want);
  assert_string_equal(alloc_backend_version(), want);
}

static void test_profiling_not_supported(void **state) {
  (void)state;
  assert_int_equal(be_profile_status(), ALLOC_ENOTSUP);
  assert_int_equal(alloc_profile_supported(), ALLOC_ENOTSUP);
  int fd = memfd_create("never-written", MFD_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(be_profile_dump(fd), -1);
  struct stat sb;
  assert_int_equal(fstat(fd, &sb), 0);
  assert_int_equal(sb.st_size, 0);
  close(fd);
  assert_false(be_profile_thread(false)); /* nothing to switch: nothing changed */
}

/* What mimalloc can and cannot say, marked as such. */
static void test_stats_fields(void **state) {
  (void)state;
  alloc_stats_t st;
  be_stats(&st);
  assert_true(st.allocated == ALLOC_STAT_UNKNOWN);
  assert_true(st.mapped == ALLOC_STAT_UNKNOWN);
  assert_true(st.retained == ALLOC_STAT_UNKNOWN);
  assert_true(st.active != ALLOC_STAT_UNKNOWN && st.active > 0);
  assert_true(st.resident != ALLOC_STAT_UNKNOWN && st.resident > 0);
}

/* mimalloc answers for itself, checked mode on or off; on 64-bit targets only (its
 * segment map misses large blocks on 32-bit ones, where checked mode is refused). */
static void test_owns(void **state) {
  (void)state;
  if (sizeof(void *) < 8) {
    assert_false(be_check_start());
    skip();
  }
  assert_owns_own_and_only_own();
}

/* mimalloc calls its deferred-free function after testing the pointer and loading it
 * again, so the shim may set it but never clear it while another thread could be
 * between the two loads. Every registration is seen here; crossing the mark then
 * starts the idle-return thread, with none of them a NULL. */
static atomic_int null_registrations, registrations;
void __real_mi_register_deferred_free(mi_deferred_free_fun *fn, void *arg);
void __wrap_mi_register_deferred_free(mi_deferred_free_fun *fn, void *arg) {
  atomic_fetch_add(fn == NULL ? &null_registrations : &registrations, 1);
  __real_mi_register_deferred_free(fn, arg);
}

static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* MiB committed and freed, past the 64 MiB mark; then slow paths, where the thread is
 * started, until it runs (5 s at most): whether it did. */
static bool cross_the_mark(int threads_before, int mib) {
  enum { BLOCKS = 256, BLOCK = 1 << 20 };
  static char *blocks[BLOCKS];
  for (int i = 0; i < mib; i++) {
    blocks[i] = malloc(BLOCK);
    if (blocks[i] == NULL)
      return false;
    memset(blocks[i], 1, BLOCK);
  }
  for (int i = 0; i < mib; i++)
    free(blocks[i]);
  for (int round = 0; round < 500 && thread_count() == threads_before; round++) {
    for (int i = 0; i < 4096; i++)
      free(malloc(16 + (size_t)(i % 64) * 64));
    usleep(10000);
  }
  return thread_count() == threads_before + 1;
}

static void test_deferred_free_kept(void **state) {
  (void)state;
  /* 2 under qemu-user, which has a thread of its own. */
  int before = thread_count();
  assert_true(cross_the_mark(before, 96));
  assert_true(atomic_load(&registrations) >= 1);
  assert_int_equal(atomic_load(&null_registrations), 0);
}

/* After the above: a forked child starts its own thread past its own mark (64 MiB more
 * than it had at the fork, which may still hold the 96 freed), the call never cleared.
 * Not under qemu-user, which aborts when a forked child starts a thread. */
static void test_deferred_free_kept_in_child(void **state) {
  (void)state;
#if defined(ALLOCSHIM_TEST_EMULATED)
  skip();
#endif
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(cross_the_mark(thread_count(), 192) && atomic_load(&null_registrations) == 0 ? 0 : 1);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A MIMALLOC_ option the user set has the last word over the shim's default, found as
 * mimalloc finds it, case aside (the _user_options run sets it in lower case, with
 * ALLOCSHIM_PURGE=5, whose defaults are a 1 ms delay and no extension). */
static void test_user_option_wins(void **state) {
  (void)state;
  const char *given = getenv("mimalloc_decommit_delay");
  if (given == NULL)
    skip();
  assert_int_equal(mi_option_get(mi_option_decommit_delay), atol(given));
  assert_int_equal(mi_option_get(mi_option_decommit_extend_delay), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* First: the others cross the mark, and the thread starts only once. */
      cmocka_unit_test(test_deferred_free_kept),
      cmocka_unit_test(test_deferred_free_kept_in_child),
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_profiling_not_supported),
      cmocka_unit_test(test_stats_fields),
      cmocka_unit_test(test_owns),
      cmocka_unit_test(test_user_option_wins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
