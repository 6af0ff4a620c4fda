/* Tests for src/stats.c's Prometheus printer against made-up backend figures (be_stats
 * and be_returned_bytes replaced): what is unknown is left out, HELP and TYPE with it. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#include "backend.h"

static alloc_stats_t figures;
static size_t returned;

void __wrap_be_stats(alloc_stats_t *out) { *out = figures; }
size_t __wrap_be_returned_bytes(void) { return returned; }

static const char *print(void) {
  static char out[4096];
  assert_int_equal(stats_printed(ALLOC_FORMAT_PROMETHEUS, out, sizeof out), ALLOC_OK);
  return out;
}

/* How many lines mention `name`: 3 when its family is there (HELP, TYPE, sample). */
static int lines_naming(const char *out, const char *name) {
  int count = 0;
  for (const char *line = out; *line != '\0'; line = strchr(line, '\n') + 1) {
    const char *end = strchr(line, '\n');
    const char *hit = strstr(line, name);
    count += hit != NULL && hit < end;
  }
  return count;
}

static void test_all_known(void **state) {
  (void)state;
  figures = (alloc_stats_t){
      .allocated = 1000, .active = 1500, .resident = 4096, .mapped = 8192, .retained = 0};
  returned = 65536;
  const char *out = print();
  char want[128];
  snprintf(want, sizeof want, "allocshim_allocated_bytes{backend=\"%s\"} 1000\n", EXPECTED_BACKEND);
  assert_non_null(strstr(out, want));
  assert_non_null(strstr(out, "# TYPE allocshim_returned_bytes_total counter\n"));
  assert_non_null(strstr(out, "} 65536\n"));
  assert_non_null(strstr(out, "} 0\n")); /* a known 0 is a 0 */
  assert_non_null(strstr(out, "# TYPE allocshim_fragmentation_ratio gauge\n"));
  assert_non_null(strstr(out, "} 1.500000\n"));
  assert_int_equal(lines_naming(out, "allocshim_"), 7 * 3);
}

static void test_unknown_left_out(void **state) {
  (void)state;
  figures = (alloc_stats_t){.allocated = ALLOC_STAT_UNKNOWN,
                            .active = 1500,
                            .resident = 4096,
                            .mapped = ALLOC_STAT_UNKNOWN,
                            .retained = ALLOC_STAT_UNKNOWN};
  returned = ALLOC_STAT_UNKNOWN;
  const char *out = print();
  assert_int_equal(lines_naming(out, "allocshim_active_bytes"), 3);
  assert_int_equal(lines_naming(out, "allocshim_resident_bytes"), 3);
  assert_int_equal(lines_naming(out, "allocshim_"), 2 * 3); /* no ratio without allocated */
  assert_null(strstr(out, "unknown"));
  assert_null(strstr(out, "18446744073709551615"));
}

static void test_nothing_known(void **state) {
  (void)state;
  figures = (alloc_stats_t){ALLOC_STAT_UNKNOWN, ALLOC_STAT_UNKNOWN, ALLOC_STAT_UNKNOWN,
                            ALLOC_STAT_UNKNOWN, ALLOC_STAT_UNKNOWN};
  returned = ALLOC_STAT_UNKNOWN;
  assert_string_equal(print(), "");
}

/* Terabytes: the ratio is worked out in integers and must not overflow. */
static void test_ratio_of_large_figures(void **state) {
  (void)state;
  size_t tib = (size_t)1 << (SIZE_MAX > UINT32_MAX ? 40 : 20); /* MiB on 32-bit targets */
  figures = (alloc_stats_t){
      .allocated = 30 * tib, .active = 45 * tib, .resident = 1, .mapped = 1, .retained = 1};
  returned = 0;
  assert_non_null(strstr(print(), "_ratio{backend=\"" EXPECTED_BACKEND "\"} 1.500000\n"));
}

/* Nothing allocated yet: a ratio would be a division by zero, so there is none. */
static void test_no_ratio_over_zero(void **state) {
  (void)state;
  figures = (alloc_stats_t){0, 4096, 4096, 4096, 0};
  returned = 0;
  const char *out = print();
  assert_int_equal(lines_naming(out, "fragmentation_ratio"), 0);
  assert_int_equal(lines_naming(out, "allocshim_allocated_bytes"), 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_all_known),          cmocka_unit_test(test_unknown_left_out),
      cmocka_unit_test(test_nothing_known),      cmocka_unit_test(test_ratio_of_large_figures),
      cmocka_unit_test(test_no_ratio_over_zero),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
