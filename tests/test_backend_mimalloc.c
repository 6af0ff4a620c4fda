/* Tests for src/backend_mimalloc.c: its version string, the not-supported answers
 * for profiling, and the one-line notice when ALLOCSHIM_PROF is set. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
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
  assert_int_equal(be_profile_dump("/tmp/never-written.heap"), -1);
}

static void test_init_notice(void **state) {
  (void)state;
  char out[1024];
  unsetenv("ALLOCSHIM_PROF");
  stderr_begin();
  be_init();
  stderr_end(out, sizeof out);
  assert_string_equal(out, "");
  setenv("ALLOCSHIM_PROF", "1", 1);
  stderr_begin();
  be_init();
  stderr_end(out, sizeof out);
  assert_int_equal(count_of(out, "\n"), 1);
  assert_non_null(strstr(out, "not supported"));
  assert_non_null(strstr(out, "mimalloc"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_profiling_not_supported),
      cmocka_unit_test(test_init_notice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
