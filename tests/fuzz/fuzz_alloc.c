/* libFuzzer harness: reads its input as a program of allocation operations over every
 * entry point, valid and not, and checks the shim's promises after each one. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

#define SLOTS    16
#define SENTINEL 4242

struct slot {
  unsigned char *p;
  size_t size;
  size_t align; /* honoured alignment */
  int c11;      /* from aligned_alloc: free_aligned_sized allowed */
  int plain;    /* from malloc/calloc/realloc: free_sized allowed */
  unsigned char fill;
};

struct input {
  const uint8_t *data;
  size_t left;
};

static uint8_t byte(struct input *in) {
  if (in->left == 0)
    return 0;
  in->left--;
  return *in->data++;
}

/* Sizes: mostly small, some large, and a share of impossible ones. */
static size_t size_of(struct input *in) {
  uint8_t mode = byte(in);
  uint16_t v = (uint16_t)(byte(in) | byte(in) << 8);
  static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, (size_t)PTRDIFF_MAX + 1,
                                SIZE_MAX / 2 + 4096, SIZE_MAX - 4095};
  if (mode == 255)
    return (size_t)v << 4; /* up to 1 MiB, rarely: large blocks are slow to check */
  switch (mode % 8) {
  case 0 ... 5:
    return v % 256;
  case 6:
    return v % 16384;
  default:
    return huge[v % (sizeof huge / sizeof huge[0])];
  }
}

/* Alignments: powers of two up to 64 KiB, and some that no call may accept. */
static size_t align_of(struct input *in) {
  uint8_t b = byte(in);
  static const size_t bad[] = {0, 3, 6, 24, 48, 100, 4095, SIZE_MAX};
  return b < 200 ? (size_t)1 << (b % 17) : bad[b % 8]; /* up to 64 KiB */
}

static int pow2(size_t a) { return a && !(a & (a - 1)); }

/* Called through pointers: glibc's declarations promise the compiler (and UBSan) that
 * the alignment argument is valid, and the point here is to pass invalid ones. */
static void *(*volatile memalign_fn)(size_t, size_t) = memalign;
static void *(*volatile aligned_alloc_fn)(size_t, size_t) = aligned_alloc;

#define FAIL(...)                                                                                  \
  do {                                                                                             \
    fprintf(stderr, "fuzz_alloc: " __VA_ARGS__);                                                   \
    fputc('\n', stderr);                                                                           \
    abort();                                                                                       \
  } while (0)

static void fill(struct slot *s, uint8_t value) {
  s->fill = value;
  memset(s->p, value, s->size);
}

/* Whether all n bytes are v: p[0] == v and every byte equals the next. One memcmp,
 * not a byte loop, which coverage tracing would make the fuzzer's main cost. */
static int all_are(const unsigned char *p, size_t n, unsigned char v) {
  return n == 0 || (p[0] == v && memcmp(p, p + 1, n - 1) == 0);
}

static void verify(const struct slot *s, size_t len) {
  if (!all_are(s->p, len, s->fill))
    FAIL("block %p lost some of its %zu bytes", (void *)s->p, len);
}

/* A fresh block: aligned as promised, big enough, errno untouched. */
static void accept(struct slot *s, void *p, size_t size, size_t align, int err_before, uint8_t v) {
  if (errno != err_before)
    FAIL("errno changed to %d by a successful call", errno);
  if ((uintptr_t)p % align != 0)
    FAIL("%p is not %zu-aligned", p, align);
  if (malloc_usable_size(p) < size)
    FAIL("usable size %zu < %zu", malloc_usable_size(p), size);
  s->p = p;
  s->size = size;
  s->align = align;
  fill(s, v);
}

static void release(struct slot *s, uint8_t how) {
  if (s->p == NULL)
    return;
  verify(s, s->size);
  if (s->plain && how % 2)
    free_sized(s->p, s->size);
  else if (s->c11 && how % 2)
    free_aligned_sized(s->p, s->align, s->size);
  else
    free(s->p);
  memset(s, 0, sizeof *s);
}

static void expect_null(void *p, int err, const char *what, size_t n) {
  if (p != NULL)
    FAIL("%s(%zu) succeeded where it cannot", what, n);
  if (errno != err)
    FAIL("%s(%zu): errno %d, want %d", what, n, errno, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  struct input in = {data, len};
  struct slot slots[SLOTS] = {0};
  while (in.left > 0) {
    uint8_t op = byte(&in);
    struct slot *s = &slots[byte(&in) % SLOTS];
    uint8_t v = byte(&in);
    size_t n = size_of(&in), a = align_of(&in), c = (size_t)byte(&in) + 1;
    if (s->p != NULL && op % 13 < 9) /* allocating ops want a free slot */
      release(s, v);
    errno = SENTINEL;
    void *p = NULL;
    int impossible = n > PTRDIFF_MAX;
    switch (op % 13) {
    case 0:
      p = malloc(n);
      if (impossible)
        expect_null(p, ENOMEM, "malloc", n);
      else if (p)
        accept(s, p, n, n >= 16 ? 16 : 1, SENTINEL, v), s->plain = 1;
      break;
    case 1: {
      size_t total;
      int overflow = __builtin_mul_overflow(n, c, &total);
      p = calloc(c, n);
      if (overflow || total > PTRDIFF_MAX)
        expect_null(p, ENOMEM, "calloc", n);
      else if (p) {
        if (!all_are(p, total, 0))
          FAIL("calloc(%zu, %zu) not zeroed", c, n);
        accept(s, p, total, 1, SENTINEL, v), s->plain = 1;
      }
      break;
    }
    case 2: {
      p = realloc(NULL, n);
      if (impossible)
        expect_null(p, ENOMEM, "realloc", n);
      else if (p)
        accept(s, p, n, 1, SENTINEL, v), s->plain = 1;
      break;
    }
    case 3: {
      void *out = &in; /* sentinel: must survive a failure */
      int r = posix_memalign(&out, a, n);
      if (!pow2(a) || a % sizeof(void *)) {
        if (r != EINVAL || out != &in)
          FAIL("posix_memalign(%zu) took a bad alignment", a);
      } else if (impossible) {
        if (r != ENOMEM || out != &in)
          FAIL("posix_memalign(%zu, %zu) did not fail right", a, n);
      } else if (r == 0) {
        accept(s, out, n, a, SENTINEL, v);
      }
      if (errno != SENTINEL)
        FAIL("posix_memalign changed errno");
      break;
    }
    case 4:
      p = aligned_alloc_fn(a, n);
      if (!pow2(a))
        expect_null(p, EINVAL, "aligned_alloc", n);
      else if (impossible)
        expect_null(p, ENOMEM, "aligned_alloc", n);
      else if (p)
        accept(s, p, n, a, SENTINEL, v), s->c11 = 1;
      break;
    case 5:
      p = memalign_fn(a, n);
      if (a > SIZE_MAX / 2 + 1)
        expect_null(p, EINVAL, "memalign", n);
      else if (impossible)
        expect_null(p, ENOMEM, "memalign", n);
      else if (p) {
        size_t want = 1;
        while (want < a)
          want <<= 1;
        accept(s, p, n, want, SENTINEL, v);
      }
      break;
    case 6:
      p = valloc(n);
      if (impossible)
        expect_null(p, ENOMEM, "valloc", n);
      else if (p)
        accept(s, p, n, (size_t)sysconf(_SC_PAGESIZE), SENTINEL, v);
      break;
    case 7:
      p = reallocarray(NULL, c, n);
      if (__builtin_mul_overflow(c, n, &(size_t){0}) || c * n > PTRDIFF_MAX)
        expect_null(p, ENOMEM, "reallocarray", n);
      else if (p)
        accept(s, p, c * n, 1, SENTINEL, v), s->plain = 1;
      break;
    case 8:
      p = pvalloc(n);
      if (n > SIZE_MAX - 65536 || impossible)
        expect_null(p, ENOMEM, "pvalloc", n);
      else if (p)
        accept(s, p, n, (size_t)sysconf(_SC_PAGESIZE), SENTINEL, v);
      break;
    case 9: /* resize: content kept up to the smaller size */
      if (s->p == NULL)
        break;
      verify(s, s->size);
      p = realloc(s->p, n);
      if (n == 0) {
        if (p != NULL)
          FAIL("realloc(p, 0) did not free");
        memset(s, 0, sizeof *s);
      } else if (p == NULL) {
        if (!impossible)
          break; /* a real out-of-memory: the old block is still good */
        if (errno != ENOMEM)
          FAIL("failed realloc: errno %d", errno);
        verify(s, s->size);
      } else {
        size_t keep = n < s->size ? n : s->size;
        s->p = p;
        verify(s, keep);
        s->size = n, s->align = 1, s->c11 = 0, s->plain = 1;
        fill(s, v);
      }
      break;
    case 10:
      if (s->p == NULL)
        break;
      p = reallocarray(s->p, c, n);
      if (__builtin_mul_overflow(c, n, &(size_t){0})) {
        if (p || errno != ENOMEM)
          FAIL("reallocarray overflow not ENOMEM");
        verify(s, s->size);
      } else if (p) {
        size_t total = c * n, keep = total < s->size ? total : s->size;
        s->p = p;
        verify(s, keep);
        s->size = total, s->align = 1, s->c11 = 0, s->plain = 1;
        fill(s, v);
      } else if (c * n == 0) {
        memset(s, 0, sizeof *s); /* freed, as realloc(p, 0) */
      }
      break;
    default:
      release(s, v);
      break;
    }
  }
  for (int i = 0; i < SLOTS; i++)
    release(&slots[i], (uint8_t)i);
  free(NULL);
  return 0;
}
