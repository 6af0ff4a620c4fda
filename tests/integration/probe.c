/* Proves who serves this process's malloc: the shim's backend, not glibc. Built twice:
 * plain (run under LD_PRELOAD) and linked against allocshim. Exit 0 only if proven. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS     200
#define BLOCK_SIZE (100 * 1024) /* below glibc's mmap threshold: it would use its arena */

static int failures;
#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "probe: FAIL: " __VA_ARGS__);                                                \
      fputc('\n', stderr);                                                                         \
    }                                                                                              \
  } while (0)

/* glibc's own view of its heap, asked of libc.so.6 itself so that a mallinfo2 the
 * shim might export cannot answer instead. */
static size_t glibc_heap_bytes(void) {
#if !ALLOCSHIM_GLIBC
  return 0; /* musl: no glibc heap to grow, and no mallinfo2 to ask */
#else
  void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  struct mallinfo2 (*mi2)(void) = libc ? (struct mallinfo2(*)(void))dlsym(libc, "mallinfo2") : NULL;
  if (mi2 == NULL)
    return 0;
  struct mallinfo2 m = mi2();
  return m.uordblks + m.hblkhd;
#endif
}

/* The backend's own accounting of bytes this thread allocated, or 0 if unknown. */
static uint64_t jemalloc_thread_allocated(void) {
  int (*ctl)(const char *, void *, size_t *, void *, size_t) =
      (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
  uint64_t v = 0;
  size_t len = sizeof v;
  return ctl && ctl("thread.allocated", &v, &len, NULL, 0) == 0 ? v : 0;
}

int main(int argc, char **argv) {
  const char *want_provider = argc > 1 ? argv[1] : "liballocshim";
  Dl_info info = {0};
  void *sym = dlsym(RTLD_DEFAULT, "malloc");
  CHECK(sym && dladdr(sym, &info) && info.dli_fname, "malloc has no provider");
  const char *provider = info.dli_fname ? info.dli_fname : "?";
  CHECK(strstr(provider, want_provider) != NULL, "malloc comes from %s, not %s", provider,
        want_provider);

  const char *(*backend_fn)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "alloc_backend");
  const char *backend = backend_fn ? backend_fn() : "none";
  CHECK(backend_fn != NULL, "alloc_backend() is not in the process");

  size_t glibc_before = glibc_heap_bytes();
  uint64_t je_before = jemalloc_thread_allocated();
  static void *blocks[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    blocks[i] = malloc(BLOCK_SIZE);
    CHECK(blocks[i] != NULL, "malloc failed");
    memset(blocks[i], i, BLOCK_SIZE);
  }
  size_t glibc_grew = glibc_heap_bytes() - glibc_before;
  CHECK(glibc_grew < (size_t)BLOCKS * BLOCK_SIZE / 10,
        "glibc's heap grew by %zu bytes: it served malloc", glibc_grew);

  /* The backend, asked in its own words, knows these blocks. */
  uint64_t backend_accounted = 0;
  if (strcmp(backend, "jemalloc") == 0) {
    backend_accounted = jemalloc_thread_allocated() - je_before;
  } else if (strcmp(backend, "mimalloc") == 0) {
    /* mi_check_owned walks this thread's heap: slow, exact, and 32-bit safe (where
     * mi_is_in_heap_region does not know large blocks). */
    bool (*owned)(const void *) = (bool (*)(const void *))dlsym(RTLD_DEFAULT, "mi_check_owned");
    CHECK(owned != NULL, "mi_check_owned not found");
    int local;
    CHECK(owned && !owned(&local), "mimalloc claims a stack address");
    for (int i = 0; owned && i < BLOCKS; i++)
      if (owned(blocks[i]))
        backend_accounted += BLOCK_SIZE;
  }
  CHECK(backend_accounted >= (uint64_t)BLOCKS * BLOCK_SIZE, "%s accounts for %llu of %d bytes",
        backend, (unsigned long long)backend_accounted, BLOCKS * BLOCK_SIZE);

  /* glibc's private names lead to the same allocator: no pointer crosses over. */
  if (ALLOCSHIM_GLIBC) { /* musl has no such names, and the shim none there */
    void *(*libc_malloc)(size_t) = (void *(*)(size_t))dlsym(RTLD_DEFAULT, "__libc_malloc");
    void *p = libc_malloc ? libc_malloc(64) : NULL;
    CHECK(p != NULL && malloc_usable_size(p) >= 64, "__libc_malloc failed");
    free(p);
  }
  for (int i = 0; i < BLOCKS; i++)
    free(blocks[i]);

  printf("probe: malloc from %s; backend %s accounted %llu bytes; glibc heap grew %zu bytes\n",
         provider, backend, (unsigned long long)backend_accounted, glibc_grew);
  return failures == 0 ? 0 : 1;
}
