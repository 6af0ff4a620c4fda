/* Allocator workloads for bench/run. Each knows nothing of allocshim, counts its own
 * operations and checks its result, so a broken allocator cannot look fast.
 * usage: workloads NAME [SCALE]   (SCALE multiplies the work; 1 is the standard size) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
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

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: workloads small|mixed|aligned|large|prodcons|larson|contend1|"
                    "contend2|contend4|contend8 [SCALE]\n");
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
  if (strncmp(w, "contend", 7) == 0) {
    int n = atoi(w + 7);
    if (n >= 1 && n <= 64)
      return contend(n);
  }
  fprintf(stderr, "workloads: unknown workload %s\n", w);
  return 2;
}
