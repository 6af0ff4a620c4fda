/* Tests for src/check.c: the table of mapped ranges, and what check_pointer does with
 * a pointer the backend owns, does not own, or NULL, or that the backend calls freed or
 * inside a block (abort, be_owns and be_check_block are mocked). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend.h"
#include "check.h"
#include "glue.h"

/* ---- Mocks: the backend's answer, the message, and abort ------------------------- */
static bool owns_answer = true;
bool __wrap_be_owns(const void *p) {
  (void)p;
  return owns_answer;
}

static enum check_block block_answer = CHECK_BLOCK_OK;
static const void *block_start;
enum check_block __wrap_be_check_block(const void *p, const void **start) {
  (void)p;
  *start = block_start;
  return block_answer;
}

static char said[1024];
void __wrap_allocshim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void __wrap_allocshim_say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(said, sizeof said, fmt, ap);
  va_end(ap);
}

static jmp_buf aborted;
/* Visible: ld applies --wrap to libcmocka.so's own unversioned reference to abort (a
 * cmocka built against musl, whose symbols carry no versions), and refuses to link one
 * that lands on a hidden symbol. At run time libcmocka still gets the C library's. */
__attribute__((visibility("default"))) void __wrap_abort(void) { longjmp(aborted, 1); }

static int reset(void **state) {
  (void)state;
  owns_answer = true;
  block_answer = CHECK_BLOCK_OK;
  block_start = NULL;
  said[0] = '\0';
  return 0;
}

/* True if check_pointer aborted. */
static bool check_aborts(const char *op, const void *p) {
  if (setjmp(aborted) != 0)
    return true;
  check_pointer(op, p);
  return false;
}

static void test_pointer_owned_or_null_passes(void **state) {
  (void)state;
  static int x;
  assert_false(check_aborts("free", &x));
  owns_answer = false;
  assert_false(check_aborts("free", NULL));
  assert_string_equal(said, "");
}

static void test_foreign_pointer_aborts_naming_causes(void **state) {
  (void)state;
  static int x;
  owns_answer = false;
  assert_true(check_aborts("realloc", &x));
  char expect[64];
  snprintf(expect, sizeof expect, "realloc(%p)", (void *)&x);
  assert_non_null(strstr(said, expect));
  assert_non_null(strstr(said, "not allocated by " ALLOCSHIM_BACKEND_NAME));
  assert_non_null(strstr(said, "RTLD_DEEPBIND"));
  assert_non_null(strstr(said, "statically linked copy of libc"));
}

/* Each answer of the backend's block check names its own cause, with the block's start
 * for a pointer into its middle. */
static void test_block_answers_name_causes(void **state) {
  (void)state;
  static char block[64];
  char expect[160];
  block_answer = CHECK_BLOCK_INTERIOR;
  block_start = block;
  assert_true(check_aborts("free", block + 16));
  snprintf(expect, sizeof expect,
           "free(%p): a pointer into the middle of a block: the block %s "
           "handed out starts at %p, 16 bytes before it",
           (void *)(block + 16), ALLOCSHIM_BACKEND_NAME, (void *)block);
  assert_non_null(strstr(said, expect));

  block_answer = CHECK_BLOCK_FREED;
  assert_true(check_aborts("realloc", block));
  snprintf(expect, sizeof expect, "realloc(%p): double free: this block was already freed",
           (void *)block);
  assert_non_null(strstr(said, expect));

  block_answer = CHECK_BLOCK_NONE;
  assert_true(check_aborts("malloc_usable_size", block));
  assert_non_null(strstr(said, "at no block it handed out"));
  assert_non_null(strstr(said, "a double free"));

  /* NULL never reaches the backend, and a foreign pointer is reported as foreign. */
  assert_false(check_aborts("free", NULL));
  owns_answer = false;
  assert_true(check_aborts("free", block));
  assert_non_null(strstr(said, "not allocated by"));
}

/* ---- The range table ----------------------------------------------------------------- */
#define AT(x) ((const void *)(uintptr_t)(x))
static bool held(uintptr_t a) { return check_ranges_hold(AT(a)); }

static void test_ranges_add_merge_remove(void **state) {
  (void)state;
  const uintptr_t base = 0x10000000;
  assert_false(held(base));
  check_ranges_add(AT(base), 0x1000);
  assert_true(held(base));
  assert_true(held(base + 0xfff));
  assert_false(held(base + 0x1000)); /* the end is not included */
  assert_false(held(base - 1));

  /* A touching range and an overlapping one merge with it; a distant one stays apart. */
  check_ranges_add(AT(base + 0x1000), 0x1000);
  check_ranges_add(AT(base + 0x1800), 0x2000);
  check_ranges_add(AT(base + 0x10000), 0x1000);
  assert_true(held(base + 0x37ff));
  assert_false(held(base + 0x3800));
  assert_true(held(base + 0x10000));

  /* A hole in the middle splits a range; trimming its ends keeps the rest. */
  check_ranges_remove(AT(base + 0x1000), 0x1000);
  assert_true(held(base + 0xfff));
  assert_false(held(base + 0x1000));
  assert_false(held(base + 0x1fff));
  assert_true(held(base + 0x2000));
  check_ranges_remove(AT(base), 0x800);
  assert_false(held(base));
  assert_true(held(base + 0x800));
  check_ranges_remove(AT(base + 0x3000), 0x800);
  assert_true(held(base + 0x2fff));
  assert_false(held(base + 0x3000));

  /* The start of the range that holds a pointer, for a backend's search downwards. */
  const void *lo = NULL;
  assert_true(check_ranges_start(AT(base + 0x2fff), &lo));
  assert_ptr_equal(lo, AT(base + 0x2000));
  assert_false(check_ranges_start(AT(base + 0x1800), &lo));

  /* One removal spanning several ranges and the gaps between them. */
  check_ranges_remove(AT(base), 0x20000);
  for (uintptr_t a = base; a < base + 0x20000; a += 0x400)
    assert_false(held(a));
}

/* Many separate mappings, removed in another order: the table stays exact. */
static void test_ranges_many(void **state) {
  (void)state;
  const uintptr_t base = 0x20000000;
  for (uintptr_t i = 0; i < 1000; i++)
    check_ranges_add(AT(base + i * 0x3000), 0x1000);
  for (uintptr_t i = 0; i < 1000; i += 2)
    check_ranges_remove(AT(base + i * 0x3000), 0x1000);
  for (uintptr_t i = 0; i < 1000; i++) {
    assert_int_equal(held(base + i * 0x3000 + 0x10), i % 2 == 1);
    assert_false(held(base + i * 0x3000 + 0x1000));
  }
  check_ranges_remove(AT(base), 1000 * 0x3000);
  assert_false(held(base + 0x3010));
}

/* Whether the page holding addr is mapped without write permission. */
static bool read_only(const void *addr) {
  FILE *maps = fopen("/proc/self/maps", "r");
  assert_non_null(maps);
  char line[512];
  bool found = false, writable = true;
  while (!found && fgets(line, sizeof line, maps)) {
    unsigned long lo, hi;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) == 3 && lo <= (uintptr_t)addr &&
        (uintptr_t)addr < hi) {
      found = true;
      writable = perms[1] == 'w';
    }
  }
  fclose(maps);
  return found && !writable;
}

/* Checked mode's one mechanism, run without and with ALLOCSHIM_CHECK=1: the table of
 * pointer-taking operations is read-only whichever way it was chosen, holds the plain
 * operations or the checking ones, and the checking one stops a foreign pointer before
 * the backend sees it. */
static void test_ops_table(void **state) {
  (void)state;
  assert_true(read_only(&glue_ops));
  bool checked = __atomic_load_n(&check_on, __ATOMIC_RELAXED);
  assert_int_equal(glue_ops.realloc != glue_realloc_plain, checked);
  assert_int_equal(glue_ops.usable_size != glue_usable_size_plain, checked);
#if !BE_CHECKS_FREES
  const struct glue_ops plain = {NULL, NULL, BE_FREE_FUNCTIONS};
  assert_int_equal(glue_ops.free != plain.free, checked);
  assert_int_equal(glue_ops.free_sized != plain.free_sized, checked);
  assert_int_equal(glue_ops.free_aligned_sized != plain.free_aligned_sized, checked);
#endif
  void *p = malloc(16);
  assert_non_null(p);
  owns_answer = false;
  bool stopped = true;
  if (setjmp(aborted) == 0) {
    void *q = glue_realloc(p, 32);
    stopped = false;
    if (q != NULL)
      p = q;
  }
  owns_answer = true;
  assert_int_equal(stopped, checked);
  if (checked)
    assert_non_null(strstr(said, "realloc("));
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_pointer_owned_or_null_passes, reset),
      cmocka_unit_test_setup(test_foreign_pointer_aborts_naming_causes, reset),
      cmocka_unit_test_setup(test_block_answers_name_causes, reset),
      cmocka_unit_test_setup(test_ranges_add_merge_remove, reset),
      cmocka_unit_test_setup(test_ranges_many, reset),
      cmocka_unit_test_setup(test_ops_table, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
