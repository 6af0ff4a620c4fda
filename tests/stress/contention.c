/* Threads that allocate and free small blocks all at once, timed: the workload on which
 * a C library's malloc behind one lock (musl's mallocng) falls behind the shim's.
 * usage: contention THREADS OPS_PER_THREAD   (prints the result, then the seconds) */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define LIVE 64 /* blocks each thread holds at once: frees land amid allocations */

struct worker {
  pthread_t thread;
  unsigned id;
  long ops;
  uint64_t sum; /* of every tag read back: the same for any allocator */
  long bad;     /* blocks that did not hold what was written */
};

/* A block's first and last bytes say which thread wrote it and when, so one handed to
 * two threads at once, or clobbered, is seen when it is read back before free. Only
 * those: the time is to be the allocator's, not spent filling blocks. */
static unsigned char tag(unsigned id, long op) { return (unsigned char)(id * 31u + (unsigned long)op * 7u + 1u); }

static void *work(void *arg) {
  struct worker *w = arg;
  unsigned char *blocks[LIVE] = {0};
  size_t sizes[LIVE] = {0};
  unsigned char tags[LIVE] = {0};
  uint32_t rng = 2463534242u ^ w->id;
  for (long op = 0; op < w->ops; op++) {
    rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
    unsigned slot = rng % LIVE;
    if (blocks[slot] != NULL) {
      unsigned char *b = blocks[slot];
      w->sum += b[0] + b[sizes[slot] - 1];
      w->bad += (b[0] != tags[slot]) + (b[sizes[slot] - 1] != tags[slot]);
      free(b);
    }
    sizes[slot] = 16 + (rng >> 8) % 241; /* 16 to 256 bytes */
    tags[slot] = tag(w->id, op);
    blocks[slot] = malloc(sizes[slot]);
    if (blocks[slot] == NULL) {
      w->bad++;
      continue;
    }
    blocks[slot][0] = blocks[slot][sizes[slot] - 1] = tags[slot];
  }
  for (unsigned s = 0; s < LIVE; s++)
    free(blocks[s]);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s THREADS OPS_PER_THREAD\n", argv[0]);
    return 2;
  }
  unsigned threads = (unsigned)strtoul(argv[1], NULL, 10);
  long ops = strtol(argv[2], NULL, 10);
  if (threads == 0 || threads > 256 || ops <= 0) {
    fprintf(stderr, "contention: bad THREADS or OPS\n");
    return 2;
  }
  struct worker *w = calloc(threads, sizeof *w);
  if (w == NULL)
    return 1;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (unsigned i = 0; i < threads; i++) {
    w[i].id = i;
    w[i].ops = ops;
    if (pthread_create(&w[i].thread, NULL, work, &w[i]) != 0) {
      fprintf(stderr, "contention: pthread_create failed\n");
      return 1;
    }
  }
  uint64_t sum = 0;
  long bad = 0;
  for (unsigned i = 0; i < threads; i++) {
    pthread_join(w[i].thread, NULL);
    sum += w[i].sum;
    bad += w[i].bad;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  free(w);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  /* The first line is the result, compared across runs; the second the time. */
  printf("contention: threads=%u ops=%ld sum=%llu bad=%ld\n", threads, ops, (unsigned long long)sum, bad);
  printf("%.6f\n", secs);
  return bad == 0 ? 0 : 1;
}
