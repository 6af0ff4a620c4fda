/* Tests for src/front.c and the glue behind it: every C entry point against the
 * glibc rules of include/allocshim.h's contract, across sizes and alignments. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"


void cfree(void *p);
void *pvalloc(size_t n); /* the shim's on every target; musl's <malloc.h> lacks it */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

/* An errno value no allocator ever sets: a success path must leave it there. */
#define SENTINEL 4242

/* Sizes from 0 to 256 MiB: every size up to 1 KiB, then each power of two and its
 * neighbours, which sit on size-class and page boundaries of both backends. */
static size_t sweep[1500];
static size_t nsweep;

static int build_sweep(void **state) {
  (void)state;
  for (size_t n = 0; n <= 1024; n++)
    sweep[nsweep++] = n;
  for (size_t p = 2048; p <= ((size_t)256 << 20); p <<= 1) {
    sweep[nsweep++] = p - 1;
    sweep[nsweep++] = p;
    sweep[nsweep++] = p + 1;
  }
  return 0;
}

static void check_block(void *p, size_t asked, size_t align) {
  assert_non_null(p);
  assert_true(((uintptr_t)p & (align - 1)) == 0);
  size_t usable = malloc_usable_size(p);
  assert_true(usable >= asked);
  /* The whole usable size is the program's to write. */
  fill_pattern(p, usable);
  assert_true(check_pattern(p, usable));
}

static void test_malloc_sizes(void **state) {
  (void)state;
  for (size_t i = 0; i < nsweep; i++) {
    size_t n = sweep[i];
    errno = SENTINEL;
    void *p = malloc(n);
    assert_int_equal(errno, SENTINEL);
    /* glibc's guarantee: suitably aligned for any object that fits. */
    check_block(p, n, n >= 16 ? 16 : (n >= 8 ? 8 : 1));
    free(p);
  }
}

static void test_malloc_zero_is_unique(void **state) {
  (void)state;
  void *a = malloc(0), *b = malloc(0);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  free(a);
  free(b);
}

static void test_malloc_huge_is_enomem(void **state) {
  (void)state;
  /* PTRDIFF_MAX itself can succeed in a 32-bit process; above it, nothing can. */
  const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX};
  size_t count = sizeof(size_t) == 8 ? 4 : 3;
  for (size_t i = 0; i < count; i++) {
    errno = 0;
    assert_null(malloc(opaque_size(huge[i])));
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_free_null(void **state) {
  (void)state;
  errno = SENTINEL;
  free(NULL);
  cfree(NULL);
  free_sized(NULL, 10);
  free_aligned_sized(NULL, 64, 10);
  assert_int_equal(errno, SENTINEL);
}

static void test_calloc_zeroes(void **state) {
  (void)state;
  for (size_t i = 0; i < nsweep; i += 7) {
    size_t n = sweep[i];
    /* Dirty memory first, so a calloc that skipped zeroing would be caught. */
    void *dirty = malloc(n);
    if (dirty)
      memset(dirty, 0xA5, n);
    free(dirty);
    errno = SENTINEL;
    unsigned char *p = calloc(n, 1);
    assert_int_equal(errno, SENTINEL);
    assert_non_null(p);
    assert_true(all_zero(p, n));
    free(p);
  }
  unsigned char *q = calloc(1000, 24);
  assert_non_null(q);
  assert_true(all_zero(q, 24000));
  free(q);
}

static void test_calloc_zero_and_overflow(void **state) {
  (void)state;
  void *a = calloc(0, 16), *b = calloc(16, 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_ptr_not_equal(a, b);
  free(a);
  free(b);
  const size_t bad[][2] = {
      {SIZE_MAX, 2},
      {2, SIZE_MAX},
      {SIZE_MAX / 2 + 1, 2},
      {SIZE_MAX, SIZE_MAX},
      {(size_t)1 << (sizeof(size_t) * 4 + 1), (size_t)1 << (sizeof(size_t) * 4)}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    assert_null(calloc(opaque_size(bad[i][0]), opaque_size(bad[i][1])));
    assert_int_equal(errno, ENOMEM);
  }
}

static void test_realloc_null_is_malloc(void **state) {
  (void)state;
  errno = SENTINEL;
  void *p = realloc(NULL, 100);
  assert_int_equal(errno, SENTINEL);
  check_block(p, 100, 16);
  free(p);
  void *z = realloc(NULL, 0); /* glibc: malloc(0), a unique pointer */
  assert_non_null(z);
  free(z);
}

static void test_realloc_zero_frees(void **state) {
  (void)state;
  void *p = malloc(100);
  assert_non_null(p);
  errno = SENTINEL;
  assert_null(realloc(p, 0));
  assert_int_equal(errno, SENTINEL);
}

static void test_realloc_preserves_content(void **state) {
  (void)state;
  /* Grow through every size class boundary in the sweep, then shrink back. */
  unsigned char *p = malloc(1);
  size_t have = 1;
  fill_pattern(p, have);
  for (size_t i = 1; i < nsweep; i += 3) {
    size_t n = sweep[i];
    if (n == 0)
      continue;
    errno = SENTINEL;
    unsigned char *q = realloc(p, n);
    assert_int_equal(errno, SENTINEL);
    assert_non_null(q);
    size_t keep = have < n ? have : n;
    assert_true(check_pattern(q, keep));
    fill_pattern(q, n);
    p = q;
    have = n;
  }
  for (size_t n = have / 3; n > 0; n /= 3) {
    unsigned char *q = realloc(p, n);
    assert_non_null(q);
    assert_true(check_pattern(q, n));
    p = q;
  }
  free(p);
}

static void test_realloc_failure_keeps_block(void **state) {
  (void)state;
  unsigned char *p = malloc(1000);
  fill_pattern(p, 1000);
  errno = 0;
  assert_null(realloc(opaque_ptr(p), opaque_size(SIZE_MAX)));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(realloc(opaque_ptr(p), opaque_size((size_t)PTRDIFF_MAX + 1)));
  assert_int_equal(errno, ENOMEM);
  assert_true(check_pattern(p, 1000));
  free(p);
}

static void test_reallocarray(void **state) {
  (void)state;
  unsigned char *p = reallocarray(NULL, 10, 10);
  assert_non_null(p);
  fill_pattern(p, 100);
  errno = SENTINEL;
  unsigned char *q = reallocarray(p, 1000, 10);
  assert_int_equal(errno, SENTINEL);
  assert_non_null(q);
  assert_true(check_pattern(q, 100));
  errno = 0;
  assert_null(reallocarray(opaque_ptr(q), opaque_size(SIZE_MAX / 2 + 1), 2));
  assert_int_equal(errno, ENOMEM);
  assert_true(check_pattern(q, 100));  /* untouched by the failed call */
  assert_null(reallocarray(q, 0, 10)); /* realloc(q, 0): freed, as glibc does */
}

static void test_posix_memalign_valid(void **state) {
  (void)state;
  const size_t sizes[] = {0, 1, 7, 100, 4095, 4097, 65536, (size_t)3 << 20};
  for (size_t a = sizeof(void *); a <= ((size_t)16 << 20); a <<= 1) {
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      void *p = NULL;
      errno = SENTINEL;
      assert_int_equal(posix_memalign(&p, a, sizes[i]), 0);
      assert_int_equal(errno, SENTINEL);
      check_block(p, sizes[i], a);
      free(p);
    }
  }
}

static void test_posix_memalign_invalid(void **state) {
  (void)state;
  const size_t bad[] = {0, 1, 2, 4, 3, 24, sizeof(void *) + 1, 48, 4095, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (bad[i] == sizeof(void *) && bad[i] == 4)
      continue; /* 4 is valid on 32-bit targets */
    void *sentinel = (void *)&sentinel, *p = sentinel;
    errno = SENTINEL;
    assert_int_equal(posix_memalign(&p, bad[i], 64), EINVAL);
    assert_ptr_equal(p, sentinel);
    assert_int_equal(errno, SENTINEL);
  }
  void **volatile no_out = NULL; /* hidden from glibc's nonnull attribute */
  assert_int_equal(posix_memalign(no_out, 64, 64), EINVAL);
  /* Sizes the backend's own checks let through and the kernel then refuses (jemalloc
   * 5.3: mmap's ENOMEM leaked out), and an alignment no mapping can meet. */
  const size_t top = SIZE_MAX / 2 + 1, huge = SIZE_MAX > 0xffffffffu ? SIZE_MAX / 4 + 1 : SIZE_MAX;
  const size_t align[] = {64, 64, 4096, top, top};
  const size_t size[] = {SIZE_MAX, huge, huge, 64, 0};
  for (size_t i = 0; i < sizeof size / sizeof size[0]; i++) {
    void *sentinel = (void *)&sentinel, *p = sentinel;
    errno = SENTINEL;
    assert_int_equal(posix_memalign(&p, opaque_size(align[i]), opaque_size(size[i])), ENOMEM);
    assert_ptr_equal(p, sentinel);
    assert_int_equal(errno, SENTINEL);
  }
}

static void test_aligned_alloc(void **state) {
  (void)state;
  for (size_t a = 1; a <= ((size_t)16 << 20); a <<= 1) {
    for (size_t n = 0; n <= 3 * a && n < ((size_t)64 << 20); n += a / 2 + 1) {
      errno = SENTINEL;
      void *p = aligned_alloc(a, n);
      assert_int_equal(errno, SENTINEL);
      check_block(p, n, a);
      free(p);
    }
  }
  const size_t bad[] = {0, 3, 24, 4095, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    assert_null(aligned_alloc(opaque_size(bad[i]), 64));
    assert_int_equal(errno, EINVAL);
  }
  errno = 0;
  assert_null(aligned_alloc(64, opaque_size(SIZE_MAX)));
  assert_int_equal(errno, ENOMEM);
}

/* Sizes that are exact multiples of the alignment, many times over with blocks kept
 * alive: mimalloc 2.0.9 misaligns some of these on its own. */
static void test_aligned_exact_multiples(void **state) {
  (void)state;
  static void *keep[512];
  for (size_t a = 32; a <= ((size_t)64 << 10); a <<= 1) {
    for (int round = 0; round < 4; round++) {
      for (size_t i = 0; i < 512; i++) {
        size_t n = a * (1 + i % 8);
        keep[i] = (i % 2) ? aligned_alloc(a, n) : memalign(a, n);
        check_block(keep[i], n, a);
      }
      for (size_t i = 0; i < 512; i += 1 + round) {
        free(keep[i]);
        keep[i] = NULL;
      }
      for (size_t i = 0; i < 512; i++)
        if (keep[i] != NULL)
          free(keep[i]);
    }
  }
}

static void test_memalign(void **state) {
  (void)state;
  for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 1) {
    void *p = memalign(a, 1000);
    check_block(p, 1000, a);
    free(p);
  }
  /* glibc rounds an alignment that is not a power of two up to the next one. */
  void *p = memalign(opaque_size(24), 100); /* opaque: clang rejects a constant 24 */
  check_block(p, 100, 32);
  free(p);
  p = memalign(opaque_size(0), 100);
  check_block(p, 100, 1);
  free(p);
  errno = 0;
  assert_null(memalign(opaque_size(SIZE_MAX / 2 + 2), 16));
  assert_int_equal(errno, EINVAL);
  errno = 0;
  assert_null(memalign(64, opaque_size(SIZE_MAX)));
  assert_int_equal(errno, ENOMEM);
}

static void test_valloc_pvalloc(void **state) {
  (void)state;
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t sizes[] = {1, 100, page - 1, page, page + 1, 10 * page + 3};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *v = valloc(sizes[i]);
    check_block(v, sizes[i], page);
    free(v);
    void *pv = pvalloc(sizes[i]);
    check_block(pv, (sizes[i] + page - 1) / page * page, page);
    free(pv);
  }
  errno = 0;
  assert_null(pvalloc(opaque_size(SIZE_MAX - 1)));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(valloc(opaque_size(SIZE_MAX)));
  assert_int_equal(errno, ENOMEM);
}

static void test_usable_size(void **state) {
  (void)state;
  assert_int_equal(malloc_usable_size(NULL), 0);
  void *p = malloc(100);
  size_t u = malloc_usable_size(p);
  assert_true(u >= 100 && u < 100 + 4096);
  free(p);
}

static void test_free_sized(void **state) {
  (void)state;
  for (size_t i = 0; i < nsweep; i += 5) {
    size_t n = sweep[i];
    void *p = malloc(n);
    assert_non_null(p);
    fill_pattern(p, n);
    free_sized(p, n);
    void *c = calloc(n, 1);
    assert_non_null(c);
    free_sized(c, n);
  }
  void *r = realloc(malloc(10), 5000);
  free_sized(r, 5000);
  for (size_t a = 1; a <= ((size_t)1 << 20); a <<= 2) {
    void *q = aligned_alloc(a, 3 * a);
    check_block(q, 3 * a, a);
    free_aligned_sized(q, a, 3 * a);
  }
  /* Zero-byte aligned blocks freed with their (zero) size, as C23 allows: a backend
   * told the wrong size class would hand the same memory out twice, which the
   * pattern check below catches. */
  static unsigned char *small[4000];
  for (int round = 0; round < 4; round++) {
    for (size_t a = 1; a <= 4096; a <<= 1)
      for (int i = 0; i < 500; i++) {
        free_aligned_sized(aligned_alloc(a, 0), a, 0);
        free_sized(malloc(0), 0);
      }
    for (size_t i = 0; i < 4000; i++) {
      small[i] = malloc(i % 2 ? 8 : 256);
      memset(small[i], (int)(i & 0xFF), i % 2 ? 8 : 256);
    }
    for (size_t i = 0; i < 4000; i++) {
      for (size_t k = 0; k < (i % 2 ? 8u : 256u); k++)
        assert_int_equal(small[i][k], i & 0xFF);
      free_sized(small[i], i % 2 ? 8 : 256);
    }
  }
  /* Allocation after sized frees still works and is sane. */
  void *again = malloc(777);
  check_block(again, 777, 16);
  free(again);
}

/* Every row of src/entries.def, as the test is built for this target: the name
 * resolves, in the global scope a program's own calls use, to the shim's library (a
 * name glibc answered instead would hand its pointers to the shim's free), and an
 * ALIAS row is the very function it names. */
#define ROW_NAME(name)   ROW_NAME_(name)
#define ROW_NAME_(name)  #name
#define FN(name, ret, params, call, je, mi) {ROW_NAME(name), NULL},
#define PROC(name, params, call, je, mi)    {ROW_NAME(name), NULL},
#define ALIAS(name, target, je, mi)         {ROW_NAME(name), #target},
#define ELSEWHERE(name)                     {ROW_NAME(name), NULL},
static const struct row {
  const char *name, *alias_of;
} rows[] = {
#include "entries.def"
};

static void test_every_entry_is_the_shims(void **state) {
  (void)state;
  Dl_info shim, info;
  assert_true(dladdr(dlsym(RTLD_DEFAULT, "alloc_version"), &shim));
  size_t aliases = 0;
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    void *fn = dlsym(RTLD_DEFAULT, rows[i].name);
    if (fn == NULL || !dladdr(fn, &info) || info.dli_fbase != shim.dli_fbase)
      fail_msg("%s resolves to %s, not to the shim (%s)", rows[i].name,
               fn && info.dli_fname ? info.dli_fname : "nothing", shim.dli_fname);
    if (rows[i].alias_of != NULL) {
      assert_ptr_equal(fn, dlsym(RTLD_DEFAULT, rows[i].alias_of));
      aliases++;
    }
  }
  assert_true(aliases >= 1); /* cfree, at least */
  void *p = malloc(64);
  cfree(p);
  /* A pointer from glibc's own name for malloc is free()'s to take. */
  if (ALLOCSHIM_GLIBC) {
    void *(*libc_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    p = libc_malloc(100);
    check_block(p, 100, 16);
    free(p);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_malloc_sizes),
    cmocka_unit_test(test_malloc_zero_is_unique),
    cmocka_unit_test(test_malloc_huge_is_enomem),
    cmocka_unit_test(test_free_null),
    cmocka_unit_test(test_calloc_zeroes),
    cmocka_unit_test(test_calloc_zero_and_overflow),
    cmocka_unit_test(test_realloc_null_is_malloc),
    cmocka_unit_test(test_realloc_zero_frees),
    cmocka_unit_test(test_realloc_preserves_content),
    cmocka_unit_test(test_realloc_failure_keeps_block),
    cmocka_unit_test(test_reallocarray),
    cmocka_unit_test(test_posix_memalign_valid),
    cmocka_unit_test(test_posix_memalign_invalid),
    cmocka_unit_test(test_aligned_alloc),
    cmocka_unit_test(test_aligned_exact_multiples),
    cmocka_unit_test(test_memalign),
    cmocka_unit_test(test_valloc_pvalloc),
    cmocka_unit_test(test_usable_size),
    cmocka_unit_test(test_free_sized),
    cmocka_unit_test(test_every_entry_is_the_shims),
  };
  return cmocka_run_group_tests(tests, build_sweep, NULL);
}
