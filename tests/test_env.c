/* Tests for src/env.c: ALLOCSHIM_ variable reading, flag parsing, and the
 * allocation-free stderr writer. */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "test_util.h"

static void test_env_reads_prefixed(void **state) {
  (void)state;
  setenv("ALLOCSHIM_TEST_VALUE", "hello", 1);
  assert_string_equal(allocshim_env("TEST_VALUE"), "hello");
  unsetenv("ALLOCSHIM_TEST_VALUE");
  assert_null(allocshim_env("TEST_VALUE"));
  char longname[200];
  memset(longname, 'X', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  assert_null(allocshim_env(longname));
}

static void test_flags(void **state) {
  (void)state;
  const char *yes[] = {"1", "y", "yes", "YES", "true", "True", "on"};
  const char *no[] = {"0", "", "no", "false", "off", "2", "yes please"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    setenv("ALLOCSHIM_TEST_FLAG", yes[i], 1);
    assert_true(allocshim_env_flag("TEST_FLAG"));
  }
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
    setenv("ALLOCSHIM_TEST_FLAG", no[i], 1);
    assert_false(allocshim_env_flag("TEST_FLAG"));
  }
  unsetenv("ALLOCSHIM_TEST_FLAG");
  assert_false(allocshim_env_flag("TEST_FLAG"));
}

static void test_say(void **state) {
  (void)state;
  char out[2048];
  stderr_begin();
  errno = 4242;
  allocshim_say("value %d and %s", 42, "text");
  int err = errno;
  char big[1000];
  memset(big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  allocshim_say("%s", big); /* cut to one line, never overflowing */
  stderr_end(out, sizeof out);
  assert_int_equal(err, 4242);
  assert_int_equal(strncmp(out, "allocshim: value 42 and text\n", 29), 0);
  assert_int_equal(count_of(out, "\n"), 2);
  assert_int_equal(count_of(out, "allocshim: "), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_env_reads_prefixed),
      cmocka_unit_test(test_flags),
      cmocka_unit_test(test_say),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
