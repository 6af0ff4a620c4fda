/* The shim's extra entry points (reallocarray, free_sized, free_aligned_sized)
 * on blocks from whichever malloc serves this process, which may not be the shim's.
 * Knows nothing of allocshim; built twice: as is, and with a malloc family of its own. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(OWN_MALLOC)
/* The smallest malloc family a program may define (glibc's manual: malloc, free,
 * calloc and realloc): bump allocation from a static arena, a header in front of each
 * block. free counts the blocks it is given and aborts on one it never handed out.
 * Exported (-rdynamic, default visibility), as it must be for glibc's own calls to
 * realloc and calloc to reach it. */
#define OWN        __attribute__((visibility("default")))
#define ARENA_SIZE (64u << 20)
#define MAGIC      0xA110C8EDu
struct header {
  size_t size;
  unsigned magic;
  unsigned freed;
};
static _Alignas(16) unsigned char arena[ARENA_SIZE];
static size_t used;
static unsigned long own_frees;

OWN void *malloc(size_t n) {
  size_t need = (sizeof(struct header) + n + 15) & ~(size_t)15;
  size_t at = __atomic_fetch_add(&used, need, __ATOMIC_RELAXED);
  if (n > ARENA_SIZE || at + need > ARENA_SIZE) {
    errno = ENOMEM;
    return NULL;
  }
  struct header *h = (struct header *)(arena + at);
  *h = (struct header){n, MAGIC, 0};
  return h + 1;
}

OWN void free(void *p) {
  if (p == NULL)
    return;
  struct header *h = (struct header *)p - 1;
  if ((unsigned char *)p < arena || (unsigned char *)p >= arena + ARENA_SIZE || h->magic != MAGIC ||
      h->freed) {
    static const char msg[] = "extras: FAIL: the program's free got a block it never gave out\n";
    fwrite(msg, 1, sizeof msg - 1, stderr);
    abort();
  }
  h->freed = 1;
  __atomic_fetch_add(&own_frees, 1, __ATOMIC_RELAXED);
}

OWN void *calloc(size_t c, size_t n) {
  size_t total;
  if (__builtin_mul_overflow(c, n, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = malloc(total);
  return p ? memset(p, 0, total) : NULL;
}

OWN void *realloc(void *p, size_t n) {
  void *q = malloc(n);
  if (q != NULL && p != NULL) {
    size_t old = ((struct header *)p - 1)->size;
    memcpy(q, p, old < n ? old : n);
    free(p);
  }
  return q;
}
#endif

/* What free_aligned_sized may be given: a block from aligned_alloc(64, n). A program
 * with its own malloc family has no aligned_alloc; its own blocks stand in. */
static void *aligned_block(size_t n) {
#if defined(OWN_MALLOC)
  return malloc(n);
#else
  return aligned_alloc(64, n);
#endif
}

static int failures;
static void check(int ok, const char *what) {
  if (!ok) {
    failures++;
    fprintf(stderr, "extras: FAIL: %s\n", what);
  }
}

/* malloc's address, taken in code: built without PIE, the program then holds a stub
 * that stands for malloc (a canonical PLT entry), which dlsym finds ahead of any
 * library. */
static void *(*volatile malloc_fn)(size_t);

int main(void) {
  malloc_fn = malloc;
  /* Looked up, not linked: glibc 2.36 has no free_sized or free_aligned_sized. */
  void *(*reallocarray_fn)(void *, size_t, size_t) =
      (void *(*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "reallocarray");
  void (*free_sized_fn)(void *, size_t) =
      (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
  void (*free_aligned_sized_fn)(void *, size_t, size_t) =
      (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
  if (!reallocarray_fn || !free_sized_fn || !free_aligned_sized_fn) {
    fprintf(stderr, "extras: the extra entry points are not all there (is the shim preloaded?)\n");
    return 1;
  }
  unsigned long blocks = 0;
  for (size_t n = 1; n <= ((size_t)1 << 20); n = n * 2 + 7) {
    unsigned char *p = malloc_fn(n);
    check(p != NULL, "malloc");
    memset(p, 0x6B, n);
    p = reallocarray_fn(p, 3, n);
    check(p != NULL && p[0] == 0x6B && p[n - 1] == 0x6B, "reallocarray kept the contents");
    errno = 0;
    check(reallocarray_fn(p, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM,
          "reallocarray overflow is ENOMEM");
    check(p[n - 1] == 0x6B, "a failed reallocarray left the block alone");
    free_sized_fn(p, 3 * n);
    free_aligned_sized_fn(aligned_block(n), 64, n);
    blocks += 2;
  }
#if defined(OWN_MALLOC)
  /* reallocarray's realloc freed one more block per round. */
  unsigned long want = blocks + blocks / 2;
  check(own_frees >= want, "the program's free got every block");
  printf("extras: own malloc family: %lu blocks back through the program's free (want >= %lu)\n",
         own_frees, want);
#else
  printf("extras: %lu blocks through reallocarray, free_sized and free_aligned_sized\n", blocks);
#endif
  return failures != 0;
}
