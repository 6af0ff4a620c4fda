/* Torture: threads doing random allocation work through every entry point, a third
 * of frees done by another thread, every block's contents checked before it goes.
 * usage: torture [THREADS [OPS_PER_THREAD]]   (bounded by operations, not time) */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* C23; glibc 2.36 lacks them, the shim has them: weak, so the program also runs
 * without the shim (then those frees are plain free). */
void free_sized(void *p, size_t size) __attribute__((weak));
void free_aligned_sized(void *p, size_t align, size_t size) __attribute__((weak));

enum kind { PLAIN, ALIGNED_C11, ALIGNED_OTHER }; /* which frees a block allows */

struct block {
  unsigned char *p;
  size_t size, align;
  enum kind kind;
};

#define SLOTS       256
#define INBOX       1024
#define MAX_THREADS 64

struct inbox {
  pthread_mutex_t lock;
  struct block items[INBOX];
  int n;
};

static struct inbox inboxes[MAX_THREADS];
static int nthreads;
static long ops_per_thread;
static atomic_long corruptions, remote_frees, total_ops, bytes_checked;

static inline uint64_t next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

/* Derived from the block's address and size, so a block handed out twice, moved
 * without its data, or overwritten by a neighbour shows. */
static inline unsigned char pat(const void *p, size_t size, size_t i) {
  uintptr_t a = (uintptr_t)p;
  return (unsigned char)((a >> 4) * 31u + size * 7u + i * 13u + (i >> 8));
}

static void fill(struct block *b) {
  for (size_t i = 0; i < b->size; i++)
    b->p[i] = pat(b->p, b->size, i);
}

/* Checks the first `len` bytes against the pattern of a block at `base` of `size`. */
static void check(const unsigned char *data, const void *base, size_t size, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (data[i] != pat(base, size, i)) {
      if (atomic_fetch_add(&corruptions, 1) < 5)
        fprintf(stderr, "torture: corrupt byte %zu of a %zu-byte block at %p\n", i, size, base);
      return;
    }
  atomic_fetch_add(&bytes_checked, (long)len);
}

static size_t random_size(uint64_t *s) {
  uint64_t r = next(s);
  switch (r % 100) {
  case 0:
    return r >> 20 & ((1 << 20) - 1); /* up to 1 MiB, rarely */
  case 1 ... 9:
    return r >> 20 & ((1 << 16) - 1); /* up to 64 KiB */
  default:
    return r >> 20 & 1023; /* small: most of the traffic */
  }
}

static void release(struct block *b, uint64_t *s) {
  check(b->p, b->p, b->size, b->size);
  unsigned how = (unsigned)(next(s) % 3);
  if (b->kind == PLAIN && how == 0 && free_sized)
    free_sized(b->p, b->size);
  else if (b->kind == ALIGNED_C11 && how == 0 && free_aligned_sized)
    free_aligned_sized(b->p, b->align, b->size);
  else
    free(b->p);
}

static void drain(int self, uint64_t *s) {
  struct inbox *in = &inboxes[self];
  pthread_mutex_lock(&in->lock);
  for (int i = 0; i < in->n; i++)
    release(&in->items[i], s);
  in->n = 0;
  pthread_mutex_unlock(&in->lock);
}

/* Hands the block to another thread to free; false if its inbox is full. */
static int send_away(int self, struct block *b, uint64_t *s) {
  if (nthreads < 2)
    return 0;
  int to = (int)((self + 1 + next(s) % (uint64_t)(nthreads - 1)) % (uint64_t)nthreads);
  struct inbox *in = &inboxes[to];
  pthread_mutex_lock(&in->lock);
  int ok = in->n < INBOX;
  if (ok)
    in->items[in->n++] = *b;
  pthread_mutex_unlock(&in->lock);
  if (ok)
    atomic_fetch_add(&remote_frees, 1);
  return ok;
}

static int allocate(struct block *b, uint64_t *s) {
  size_t n = random_size(s), a = (size_t)1 << (next(s) % 13); /* 1 .. 4096 */
  b->size = n, b->align = 1, b->kind = PLAIN;
  switch (next(s) % 7) {
  case 0:
    b->p = malloc(n);
    break;
  case 1:
    b->p = calloc(1, n);
    if (b->p)
      for (size_t i = 0; i < n; i++)
        if (b->p[i]) {
          atomic_fetch_add(&corruptions, 1);
          break;
        }
    break;
  case 2:
    b->p = reallocarray(NULL, n, 1);
    break;
  case 3:
    if (a < sizeof(void *))
      a = sizeof(void *);
    if (posix_memalign((void **)&b->p, a, n) != 0)
      b->p = NULL;
    b->align = a, b->kind = ALIGNED_OTHER;
    break;
  case 4:
    b->p = aligned_alloc(a, n);
    b->align = a, b->kind = ALIGNED_C11;
    break;
  case 5:
    b->p = memalign(a, n);
    b->align = a, b->kind = ALIGNED_OTHER;
    break;
  default:
    b->p = malloc(n);
    break;
  }
  if (b->p == NULL)
    return fprintf(stderr, "torture: allocation of %zu failed\n", n), -1;
  if ((uintptr_t)b->p % b->align != 0 || malloc_usable_size(b->p) < n) {
    atomic_fetch_add(&corruptions, 1);
    fprintf(stderr, "torture: bad block %p: align %zu, usable %zu < %zu?\n", (void *)b->p, b->align,
            malloc_usable_size(b->p), n);
  }
  fill(b);
  return 0;
}

static void *worker(void *arg) {
  int self = (int)(intptr_t)arg;
  uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(self + 1);
  static _Thread_local struct block slot[SLOTS];
  for (long op = 0; op < ops_per_thread; op++) {
    if (op % 64 == 0)
      drain(self, &s);
    struct block *b = &slot[next(&s) % SLOTS];
    if (b->p == NULL) {
      if (allocate(b, &s) != 0)
        exit(2);
      continue;
    }
    unsigned what = (unsigned)(next(&s) % 6);
    if (what < 2) { /* realloc or reallocarray, growing or shrinking */
      size_t n = random_size(&s) + 1, keep = n < b->size ? n : b->size;
      unsigned char *old = b->p;
      size_t old_size = b->size;
      check(old, old, old_size, old_size);
      unsigned char *q = what == 0 ? realloc(old, n) : reallocarray(old, n, 1);
      if (q == NULL)
        exit(2);
      check(q, old, old_size, keep); /* the kept prefix still has the old block's bytes */
      *b = (struct block){q, n, 1, PLAIN};
      fill(b);
    } else if (what == 2 && send_away(self, b, &s)) {
      b->p = NULL; /* the other thread frees it */
    } else {
      release(b, &s);
      b->p = NULL;
    }
  }
  for (int i = 0; i < SLOTS; i++)
    if (slot[i].p) {
      release(&slot[i], &s);
      slot[i].p = NULL;
    }
  atomic_fetch_add(&total_ops, ops_per_thread);
  return NULL;
}

int main(int argc, char **argv) {
  nthreads = argc > 1 ? atoi(argv[1]) : 8;
  ops_per_thread = argc > 2 ? atol(argv[2]) : 200000;
  if (nthreads < 1 || nthreads > MAX_THREADS || ops_per_thread < 1)
    return fprintf(stderr, "usage: torture [1-%d threads] [ops per thread]\n", MAX_THREADS), 2;
  pthread_t tid[MAX_THREADS];
  for (int i = 0; i < nthreads; i++)
    pthread_mutex_init(&inboxes[i].lock, NULL);
  for (int i = 0; i < nthreads; i++)
    pthread_create(&tid[i], NULL, worker, (void *)(intptr_t)i);
  for (int i = 0; i < nthreads; i++)
    pthread_join(tid[i], NULL);
  uint64_t s = 1;
  for (int i = 0; i < nthreads; i++)
    drain(i, &s);
  printf("torture: %d threads x %ld ops = %ld ops, %ld remote frees, %ld MiB verified, %ld "
         "corruptions%s\n",
         nthreads, ops_per_thread, (long)total_ops, (long)remote_frees, (long)(bytes_checked >> 20),
         (long)corruptions, free_sized ? "" : " (no free_sized in this process)");
  return corruptions == 0 ? 0 : 1;
}
