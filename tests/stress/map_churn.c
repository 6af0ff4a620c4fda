/* Map churn: threads allocating and freeing blocks big enough that the allocator maps
 * and unmaps memory for them, so one thread's fresh mapping can reuse another's old one.
 * usage: map_churn [THREADS [ROUNDS]]   (bounded by rounds, not time) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 64
#define HELD        4

/* 64 KiB: a large class from a shared arena; 33 MiB: above the shim's 32 MiB oversize
 * threshold, mapped and (with retain:false) unmapped on every use; 3 MiB in between. */
static const size_t sizes[] = {64 << 10, 33 << 20, 64 << 10, 3 << 20};

static long rounds;
static atomic_long bad;

static void *worker(void *arg) {
  uint64_t s = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
  unsigned char *held[HELD] = {0};
  size_t held_size[HELD] = {0};
  for (long r = 0; r < rounds; r++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    unsigned slot = (unsigned)(s % HELD);
    size_t n = sizes[(s >> 8) % (sizeof sizes / sizeof sizes[0])];
    if (held[slot] != NULL) {
      /* A page at each end: a block handed out twice or unmapped under us shows. */
      unsigned char want = (unsigned char)(held_size[slot] >> 10);
      if (held[slot][0] != want || held[slot][held_size[slot] - 1] != want)
        atomic_fetch_add(&bad, 1);
      free(held[slot]);
    }
    unsigned char *p = malloc(n);
    if (p == NULL) {
      atomic_fetch_add(&bad, 1);
      held[slot] = NULL;
      continue;
    }
    p[0] = p[n - 1] = (unsigned char)(n >> 10);
    held[slot] = p, held_size[slot] = n;
    /* And one that lives for no time at all. */
    free(malloc(sizes[s % 2]));
  }
  for (int i = 0; i < HELD; i++)
    free(held[i]);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 4;
  rounds = argc > 2 ? atol(argv[2]) : 2000;
  if (threads < 1 || threads > MAX_THREADS || rounds < 1)
    return 2;
  pthread_t t[MAX_THREADS];
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) != 0)
      return 2;
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  printf("map_churn: %d threads x %ld rounds, %ld bad blocks\n", threads, rounds,
         atomic_load(&bad));
  return atomic_load(&bad) == 0 ? 0 : 1;
}
