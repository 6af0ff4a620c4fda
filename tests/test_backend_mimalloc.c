/* Tests for src/backend_mimalloc.c: its version string, the not-supported answers
 * for profiling, and which statistics it knows. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_profiling_not_supported),
      cmocka_unit_test(test_stats_fields),
      cmocka_unit_test(test_owns),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
