/* Allocator workloads for bench/run. Each knows nothing of allocshim, counts its own
 * operations and checks its result, so a broken allocator cannot look fast.
 * usage: workloads NAME [SCALE]   (SCALE multiplies the work; 1 is the standard size) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double scale = 1.0;
static long n_of(long standard) {
  long n = (long)(standard * scale);
  return n > 0 ? n : 1;
}

static inline uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static int report(const char *name, long ops, uint64_t check, uint64_t want) {
  printf("%s: %ld operations, check %s\n", name, ops, check == want ? "ok" : "FAILED");
  return check == want ? 0 : 1;
}

/* Single thread, small objects (8-512 B), random lifetimes. */
static int small(void) {
  enum { SLOTS = 4096 };
  static unsigned char *slot[SLOTS];
  static size_t len[SLOTS];
  uint64_t s = 1, sum = 0, want = 0;
  long ops = n_of(20000000);
  for (long i = 0; i < ops; i++) {
    size_t k = rnd(&s) % SLOTS;
    if (slot[k]) {
      sum += slot[k][0] + slot[k][len[k] - 1];
      free(slot[k]);
      slot[k] = NULL;
    } else {
      len[k] = 8 + rnd(&s) % 505;
      slot[k] = malloc(len[k]);
      slot[k][0] = (unsigned char)k, slot[k][len[k] - 1] = (unsigned char)(k >> 3);
      want += (unsigned char)k + (unsigned char)(k >> 3);
    }
  }
  for (size_t k = 0; k < SLOTS; k++)
    if (slot[k]) {
      sum += slot[k][0] + slot[k][len[k] - 1];
      free(slot[k]);
    }
  return report("small", ops, sum, want);
}

/* Mixed sizes growing by realloc, as buffers and strings do. */
static int mixed(void) {
  enum { BUFS = 256 };
  static unsigned char *buf[BUFS];
  static size_t len[BUFS];
  uint64_t s = 2, sum = 0, want = 0;
  long ops = n_of(200000);
  for (long i = 0; i < ops; i++) {
    size_t k = rnd(&s) % BUFS;
    if (len[k] > (1u << 18) || rnd(&s) % 64 == 0) {
      for (size_t j = 0; j < len[k]; j += 4096)
        sum += buf[k][j];
      free(buf[k]);
      buf[k] = NULL, len[k] = 0;
      continue;
    }
    size_t grow = 1 + rnd(&s) % 2048;
    buf[k] = realloc(buf[k], len[k] + grow);
    memset(buf[k] + len[k], (int)(k & 0xFF), grow);
    for (size_t j = len[k]; j < len[k] + grow; j++)
      if (j % 4096 == 0)
        want += k & 0xFF;
    len[k] += grow;
  }
  for (size_t k = 0; k < BUFS; k++) {
    for (size_t j = 0; j < len[k]; j += 4096)
      sum += buf[k][j];
    free(buf[k]);
  }
  return report("mixed", ops, sum, want);
}

/* Aligned allocation: posix_memalign and aligned_alloc, 16 B to 4 KiB alignment. */
static int aligned(void) {
  enum { SLOTS = 2048 };
  static void *slot[SLOTS];
  uint64_t s = 3, misaligned = 0;
  long ops = n_of(3000000);
  for (long i = 0; i < ops; i++) {
    size_t k = rnd(&s) % SLOTS;
    free(slot[k]);
    size_t a = (size_t)16 << (rnd(&s) % 9), n = 16 + rnd(&s) % 2000;
    if (i & 1) {
      if (posix_memalign(&slot[k], a, n) != 0)
        slot[k] = NULL;
    } else {
      slot[k] = aligned_alloc(a, n);
    }
    misaligned += slot[k] == NULL || (uintptr_t)slot[k] % a != 0;
  }
  for (size_t k = 0; k < SLOTS; k++)
    free(slot[k]);
  return report("aligned", ops, misaligned, 0);
}

/* Large blocks, 1-8 MiB, touched and released. */
static int large(void) {
  uint64_t s = 4, sum = 0, want = 0;
  long ops = n_of(60000);
  void *keep[8] = {0};
  for (long i = 0; i < ops; i++) {
    size_t k = rnd(&s) % 8, n = ((size_t)1 << 20) * (1 + rnd(&s) % 8);
    free(keep[k]);
    unsigned char *p = keep[k] = malloc(n);
    for (size_t j = 0; j < n; j += 65536)
      p[j] = (unsigned char)i;
    sum += p[n - 65536 * (n > 65536)];
    want += (unsigned char)i;
  }
  for (int k = 0; k < 8; k++)
    free(keep[k]);
  return report("large", ops, sum, want);
}

/* ---- Threads --------------------------------------------------------------------- */

/* Producer/consumer: blocks allocated in one thread, freed in another. */
enum { RING = 4096 };
struct ring {
  _Atomic(void *) slot[RING];
  atomic_ulong head, tail;
};
static struct ring rings[4];
static long per_producer;

static void *producer(void *arg) {
  struct ring *r = arg;
  uint64_t s = (uintptr_t)arg;
  for (long i = 0; i < per_producer; i++) {
    size_t n = 16 + rnd(&s) % 1000;
    unsigned char *p = malloc(n);
    p[0] = (unsigned char)n, p[1] = (unsigned char)(n >> 8), p[n - 1] = 0xAB;
    unsigned long h = atomic_load(&r->head);
    while (h - atomic_load(&r->tail) >= RING)
      ;
    atomic_store(&r->slot[h % RING], p);
    atomic_store(&r->head, h + 1);
  }
  return NULL;
}
static void *consumer(void *arg) {
  struct ring *r = arg;
  uint64_t bad = 0;
  for (long i = 0; i < per_producer; i++) {
    unsigned long t = atomic_load(&r->tail);
    while (atomic_load(&r->head) == t)
      ;
    unsigned char *p = atomic_load(&r->slot[t % RING]);
    atomic_store(&r->tail, t + 1);
    size_t n = p[0] | (size_t)p[1] << 8;
    bad += p[n - 1] != 0xAB;
    free(p);
  }
  return (void *)(uintptr_t)bad;
}
static int prodcons(void) {
  per_producer = n_of(500000);
  pthread_t t[4];
  for (int i = 0; i < 2; i++) {
    pthread_create(&t[2 * i], NULL, producer, &rings[i]);
    pthread_create(&t[2 * i + 1], NULL, consumer, &rings[i]);
  }
  uint64_t bad = 0;
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    bad += (uintptr_t)r;
  }
  return report("prodcons", per_producer * 2, bad, 0);
}

/* Larson-style server: threads replace random blocks in their arrays for rounds;
 * each round's array passes to the next thread, which frees what the last one made. */
enum { LARSON_BLOCKS = 2000 };
struct larson {
  void *blocks[LARSON_BLOCKS];
  long ops;
  uint64_t seed;
};
static long larson_ops;
static void *larson_round(void *arg) {
  struct larson *l = arg;
  for (long i = 0; i < larson_ops; i++) {
    size_t k = rnd(&l->seed) % LARSON_BLOCKS, n = 8 + rnd(&l->seed) % 1000;
    free(l->blocks[k]);
    l->blocks[k] = malloc(n);
    ((char *)l->blocks[k])[0] = 'L';
  }
  l->ops += larson_ops;
  return NULL;
}
static int larson(void) {
  enum { THREADS = 4, ROUNDS = 10 };
  static struct larson arrays[THREADS];
  larson_ops = n_of(4000000) / ROUNDS;
  for (int t = 0; t < THREADS; t++)
    arrays[t].seed = 5 + t;
  for (int round = 0; round < ROUNDS; round++) {
    pthread_t tid[THREADS];
    for (int t = 0; t < THREADS; t++) /* thread t takes array (t + round) */
      pthread_create(&tid[t], NULL, larson_round, &arrays[(t + round) % THREADS]);
    for (int t = 0; t < THREADS; t++)
      pthread_join(tid[t], NULL);
  }
  long ops = 0, bad = 0;
  for (int t = 0; t < THREADS; t++) {
    ops += arrays[t].ops;
    for (int k = 0; k < LARSON_BLOCKS; k++) {
      if (arrays[t].blocks[k] && ((char *)arrays[t].blocks[k])[0] != 'L')
        bad++;
      free(arrays[t].blocks[k]);
    }
  }
  return report("larson", ops, (uint64_t)bad, 0);
}

/* N threads each churning small objects at once: contention on shared state. */
static long contend_ops;
static void *contend_thread(void *arg) {
  uint64_t s = (uintptr_t)arg + 9, bad = 0;
  void *slot[512] = {0};
  for (long i = 0; i < contend_ops; i++) {
    size_t k = rnd(&s) % 512;
    if (slot[k]) {
      bad += *(unsigned char *)slot[k] != (unsigned char)k;
      free(slot[k]);
    }
    slot[k] = malloc(16 + rnd(&s) % 240);
    *(unsigned char *)slot[k] = (unsigned char)k;
  }
  for (int k = 0; k < 512; k++)
    free(slot[k]);
  return (void *)(uintptr_t)bad;
}
static int contend(int threads) {
  contend_ops = n_of(40000000) / threads;
  pthread_t t[64];
  for (int i = 0; i < threads; i++)
    pthread_create(&t[i], NULL, contend_thread, (void *)(uintptr_t)i);
  uint64_t bad = 0;
  for (int i = 0; i < threads; i++) {
    void *r;
    pthread_join(t[i], &r);
    bad += (uintptr_t)r;
  }
  char name[32];
  snprintf(name, sizeof name, "contend%d", threads);
  return report(name, contend_ops * threads, bad, 0);
}

/* ---- Issue #15: big zeroed blocks, short-lived threads ---------------------------- */

/* GCC turns malloc followed by memset(0) into calloc at -O2: hugefill's fill goes
 * through this. */
static void *(*volatile program_memset)(void *, int, size_t) = memset;

/* Large zeroed blocks: a live set of 20 blocks of 5-25 MiB, each replaced many times,
 * in the two ways a program gets them zeroed:
 *  - hugecalloc: calloc, because that is what a program that wants zeroed memory calls,
 *    and whether the allocator knows a block is already zero (fresh from mmap) and can
 *    skip the memset is exactly where allocators differ;
 *  - hugefill: malloc, then the program's own memset of every byte (what C++'s
 *    make_unique<char[]>(n) compiles to), where all the allocator can save is faults:
 *    its pages resident, not what they hold.
 * Every page-aligned byte of a block is checked to be zero and then tagged, so memory
 * that comes back from an earlier block unzeroed is caught on the very bytes that
 * block tagged, and every page is touched (resident), as a real user of it would. */
static int huge_blocks(const char *name, bool fill) {
  enum { LIVE = 20 };
  unsigned char *slot[LIVE] = {0}, tag[LIVE] = {0};
  size_t len[LIVE] = {0};
  uint64_t s = 11, sum = 0, want = 0, unzeroed = 0;
  long ops = n_of(2000);
  /* The tiny size keeps the sizes (they are the point) and shrinks the live set. */
  int live = n_of(LIVE) < 2 ? 2 : n_of(LIVE) > LIVE ? LIVE : (int)n_of(LIVE);
  const uintptr_t page = 4096;
  for (long i = 0; i < ops; i++) {
    size_t k = rnd(&s) % (size_t)live;
    if (slot[k]) {
      for (uintptr_t a = ((uintptr_t)slot[k] + page - 1) & ~(page - 1);
           a < (uintptr_t)slot[k] + len[k]; a += page)
        sum += *(unsigned char *)a;
      free(slot[k]);
    }
    len[k] = ((size_t)5 << 20) + rnd(&s) % ((size_t)20 << 20);
    tag[k] = (unsigned char)(i % 255 + 1); /* never 0, so a stale tag is not "zero" */
    slot[k] = fill ? malloc(len[k]) : calloc(len[k], 1);
    if (!slot[k])
      return report(name, i, 1, 0);
    if (fill)
      program_memset(slot[k], 0, len[k]);
    for (uintptr_t a = ((uintptr_t)slot[k] + page - 1) & ~(page - 1);
         a < (uintptr_t)slot[k] + len[k]; a += page) {
      unzeroed += *(unsigned char *)a != 0;
      *(unsigned char *)a = tag[k];
      want += tag[k];
    }
  }
  for (int k = 0; k < live; k++) {
    if (!slot[k])
      continue;
    for (uintptr_t a = ((uintptr_t)slot[k] + page - 1) & ~(page - 1);
         a < (uintptr_t)slot[k] + len[k]; a += page)
      sum += *(unsigned char *)a;
    free(slot[k]);
  }
  if (unzeroed)
    sum = ~want;
  return report(name, ops, sum, want);
}

/* A block's checksum, kept apart from the block so damage anywhere in it shows. */
static uint64_t block_sum(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603u;
  for (size_t j = 0; j < n; j++)
    h = (h ^ p[j]) * 1099511628211u;
  return h;
}
static void block_fill(unsigned char *p, size_t n, uint64_t *s) {
  for (size_t j = 0; j < n; j += 8) {
    uint64_t v = rnd(s);
    memcpy(p + j, &v, n - j < 8 ? n - j : 8);
  }
}

/* Thread churn with cross-thread frees: each generation of short-lived threads makes a
 * batch of blocks and frees a batch that a thread of the previous generation made,
 * after that thread has exited (what a thread pool's tasks passing buffers on do, and
 * the case where the freeing thread's allocator must return memory to a dead owner). */
enum { CHURN_THREADS = 4, CHURN_BLOCKS = 300 };
struct batch {
  unsigned char *block[CHURN_BLOCKS];
  size_t len[CHURN_BLOCKS];
  uint64_t sum[CHURN_BLOCKS];
};
struct churn_arg {
  struct batch *make, *take;
  uint64_t seed, bad, taken;
};
static void batch_free(struct batch *b, uint64_t *bad, uint64_t *taken) {
  for (int k = 0; k < CHURN_BLOCKS; k++) {
    *bad += block_sum(b->block[k], b->len[k]) != b->sum[k];
    free(b->block[k]);
    ++*taken;
  }
}
static void *churn_thread(void *arg) {
  struct churn_arg *a = arg;
  for (int k = 0; k < CHURN_BLOCKS; k++) {
    size_t n = 16 + rnd(&a->seed) % 2033;
    unsigned char *p = malloc(n);
    if (!p) { /* counted as bad here; the taker frees NULL and finds it intact */
      a->bad++;
      a->make->block[k] = NULL, a->make->len[k] = 0, a->make->sum[k] = block_sum(NULL, 0);
      continue;
    }
    block_fill(p, n, &a->seed);
    a->make->block[k] = p, a->make->len[k] = n, a->make->sum[k] = block_sum(p, n);
  }
  if (a->take)
    batch_free(a->take, &a->bad, &a->taken);
  return NULL;
}
static int churn(void) {
  static struct batch boxes[2][CHURN_THREADS];
  long rounds = n_of(1000);
  uint64_t bad = 0, taken = 0;
  for (long r = 0; r < rounds; r++) {
    pthread_t t[CHURN_THREADS];
    struct churn_arg arg[CHURN_THREADS];
    for (int i = 0; i < CHURN_THREADS; i++) {
      /* thread i frees what thread i+1 of the previous generation made */
      arg[i] = (struct churn_arg){&boxes[r & 1][i],
                                  r ? &boxes[(r - 1) & 1][(i + 1) % CHURN_THREADS] : NULL,
                                  (uint64_t)(r * CHURN_THREADS + i) * 2654435761u + 1, 0, 0};
      if (pthread_create(&t[i], NULL, churn_thread, &arg[i]) != 0)
        return report("churn", r, 1, 0);
    }
    for (int i = 0; i < CHURN_THREADS; i++) {
      pthread_join(t[i], NULL);
      bad += arg[i].bad, taken += arg[i].taken;
    }
  }
  for (int i = 0; i < CHURN_THREADS; i++)
    batch_free(&boxes[(rounds - 1) & 1][i], &bad, &taken);
  long made = rounds * CHURN_THREADS * CHURN_BLOCKS;
  /* every block made arrives once and intact */
  return report("churn", made, bad + (taken != (uint64_t)made), 0);
}

/* Thread create/exit: 10 threads at a time allocate, check, free and exit, over and
 * over, so the allocator's per-thread set-up and tear-down is what is measured. */
enum { SPAWN_THREADS = 10, SPAWN_BLOCKS = 64 };
static void *spawn_thread(void *arg) {
  uint64_t s = (uintptr_t)arg, bad = 0;
  unsigned char *p[SPAWN_BLOCKS];
  size_t n[SPAWN_BLOCKS];
  for (int k = 0; k < SPAWN_BLOCKS; k++) {
    n[k] = 16 + rnd(&s) % 16369; /* 16 B to 16 KiB: several size classes */
    p[k] = malloc(n[k]);
    if (!p[k])
      return (void *)(uintptr_t)SPAWN_BLOCKS;
    p[k][0] = (unsigned char)k, p[k][n[k] - 1] = (unsigned char)(n[k] >> 3);
  }
  for (int k = 0; k < SPAWN_BLOCKS; k++) {
    bad += p[k][0] != (unsigned char)k || p[k][n[k] - 1] != (unsigned char)(n[k] >> 3);
    free(p[k]);
  }
  return (void *)(uintptr_t)bad;
}
static int spawn(void) {
  long rounds = n_of(1000);
  uint64_t bad = 0;
  for (long r = 0; r < rounds; r++) {
    pthread_t t[SPAWN_THREADS];
    for (int i = 0; i < SPAWN_THREADS; i++)
      if (pthread_create(&t[i], NULL, spawn_thread,
                         (void *)(uintptr_t)(r * SPAWN_THREADS + i + 1)) != 0)
        return report("spawn", r, 1, 0);
    for (int i = 0; i < SPAWN_THREADS; i++) {
      void *ret;
      pthread_join(t[i], &ret);
      bad += (uintptr_t)ret;
    }
  }
  return report("spawn", rounds * SPAWN_THREADS * SPAWN_BLOCKS, bad, 0);
}

/* Fragmentation: 16 live blocks of 64 KiB-8 MiB, one replaced each step, while small
 * objects (16-512 B) pass through a first-in first-out line of 200,000 (2,000 a step):
 * long-lived small blocks carved from the pages big ones left, which could pin a freed
 * big block's range and make the allocator map new ranges for the next. Peak RSS is the
 * measure (the shim's lg_extent_max_active_fit:10 on jemalloc; docs/PERFORMANCE.md). */
static int frag(void) {
  enum { BIG = 16, LINE = 200000, STEP = 2000 };
  static unsigned char *line[LINE];
  unsigned char *big[BIG] = {0};
  size_t big_len[BIG] = {0};
  uint64_t s = 5, sum = 0, want = 0;
  long steps = n_of(20000);
  size_t head = 0;
  for (long i = 0; i < steps; i++) {
    size_t k = rnd(&s) % BIG;
    if (big[k]) {
      sum += big[k][0] + big[k][big_len[k] - 1];
      free(big[k]);
    }
    big_len[k] = ((size_t)64 << 10) + rnd(&s) % ((size_t)8 << 20);
    if (!(big[k] = malloc(big_len[k])))
      return report("frag", i, 1, 0);
    for (size_t o = 0; o < big_len[k]; o += 4096)
      big[k][o] = (unsigned char)k;
    big[k][big_len[k] - 1] = (unsigned char)k;
    want += 2 * k;
    for (int j = 0; j < STEP; j++, head = (head + 1) % LINE) {
      if (line[head]) {
        sum += line[head][0];
        free(line[head]);
      }
      if (!(line[head] = malloc(16 + rnd(&s) % 497)))
        return report("frag", i, 1, 0);
      line[head][0] = (unsigned char)(head & 0x7f);
      want += head & 0x7f;
    }
  }
  for (size_t h = 0; h < LINE; h++)
    if (line[h]) {
      sum += line[h][0];
      free(line[h]);
    }
  for (size_t k = 0; k < BIG; k++)
    if (big[k]) {
      sum += big[k][0] + big[k][big_len[k] - 1];
      free(big[k]);
    }
  return report("frag", steps * (STEP + 1), sum, want);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: workloads small|mixed|aligned|large|prodcons|larson|contend1|"
                    "contend2|contend4|contend8|hugecalloc|hugefill|churn|spawn|frag [SCALE]\n");
    return 2;
  }
  if (argc > 2)
    scale = atof(argv[2]);
  const char *w = argv[1];
  if (strcmp(w, "small") == 0)
    return small();
  if (strcmp(w, "mixed") == 0)
    return mixed();
  if (strcmp(w, "aligned") == 0)
    return aligned();
  if (strcmp(w, "large") == 0)
    return large();
  if (strcmp(w, "prodcons") == 0)
    return prodcons();
  if (strcmp(w, "larson") == 0)
    return larson();
  if (strcmp(w, "hugecalloc") == 0)
    return huge_blocks(w, false);
  if (strcmp(w, "hugefill") == 0)
    return huge_blocks(w, true);
  if (strcmp(w, "churn") == 0)
    return churn();
  if (strcmp(w, "spawn") == 0)
    return spawn();
  if (strcmp(w, "frag") == 0)
    return frag();
  if (strncmp(w, "contend", 7) == 0) {
    int n = atoi(w + 7);
    if (n >= 1 && n <= 64)
      return contend(n);
  }
  fprintf(stderr, "workloads: unknown workload %s\n", w);
  return 2;
}
