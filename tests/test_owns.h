/* The ownership test behind checked mode, held to what it must answer on either
 * backend: yes for every block it handed out, any size, freed by any thread; no for
 * memory it never mapped. Included by the backend test of the build. */
#ifndef ALLOCSHIM_TEST_OWNS_H
#define ALLOCSHIM_TEST_OWNS_H

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>

#include "backend.h"

enum { OWNS_N = 12 };
static const size_t owns_sizes[OWNS_N] = {0,
                                          8,
                                          100,
                                          5000,
                                          70000,
                                          1 << 20,
                                          9 << 20,
                                          40 << 20,
                                          300 << 20,
                                          (size_t)1100 << 20,
                                          (size_t)2 << 30,
                                          24};

static void *owns_alloc_all(void *out) {
  void **blocks = out;
  for (int i = 0; i < OWNS_N; i++)
    blocks[i] = i == OWNS_N - 1 ? be_aligned(4096, owns_sizes[i]) : be_malloc(owns_sizes[i]);
  return NULL;
}

static void assert_owns_own_and_only_own(void) {
  void *blocks[OWNS_N];
  pthread_t t; /* allocated by another thread: its heap, not this one's */
  assert_int_equal(pthread_create(&t, NULL, owns_alloc_all, blocks), 0);
  pthread_join(t, NULL);
  for (int i = 0; i < OWNS_N; i++) {
    if (blocks[i] == NULL && sizeof(void *) < 8)
      continue; /* 32-bit: the largest may not fit */
    assert_non_null(blocks[i]);
    assert_true(be_owns(blocks[i]));
    be_free(blocks[i]);
  }
  static char data[64];
  char stack[64];
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  void *(*glibc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
  void *glibc_block = glibc_malloc ? glibc_malloc(100) : NULL;
  /* Bit 3 set: never 64 KiB-aligned, which mimalloc lets pass (see be_owns). */
  assert_false(be_owns((void *)((uintptr_t)data | 8)));
  assert_false(be_owns((void *)((uintptr_t)stack | 8)));
  assert_false(be_owns((void *)(uintptr_t)assert_owns_own_and_only_own));
  if (glibc_block != NULL)
    assert_false(be_owns(glibc_block));
}

#endif /* ALLOCSHIM_TEST_OWNS_H */
