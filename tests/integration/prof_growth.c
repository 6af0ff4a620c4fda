/* Writes two heap profiles through the API: one while 64 MiB are held from one named
 * function and 8 MiB from another, one after 16 MiB more from a third. Used by prof_flame.sh. */
#include <allocshim.h>
#include <stdio.h>
#include <stdlib.h>

/* Blocks of 8 MiB are sixteen of jemalloc's default 512 KiB sampling periods: each is
 * sampled but for a chance of e^-16, so the big figures are the same on every run. */
#define BIG         (8u << 20)
#define BIG_BLOCKS  8 /* 64 MiB */
#define GROW_BLOCKS 2 /* 16 MiB */
/* 8 MiB in 64 KiB blocks: some fifteen samples, an estimate that moves from run to
 * run: the test takes the share from jeprof, and holds it to 64 of 72 only loosely. */
#define SMALL        (64u << 10)
#define SMALL_BLOCKS 128

static void *big[BIG_BLOCKS], *small[SMALL_BLOCKS], *grown[GROW_BLOCKS];

/* noinline: the profile must show these frames by name. The blocks are not touched:
 * the profile counts what was asked for, and the test needs no 88 MiB of real memory. */
__attribute__((noinline)) void *flame_sixty_four_mib(size_t n) { return malloc(n); }
__attribute__((noinline)) void *flame_small_side(size_t n) { return malloc(n); }
__attribute__((noinline)) void *growth_sixteen_mib(size_t n) { return malloc(n); }

static int dump(const char *path) {
  int st = alloc_profile_dump(path);
  if (st != ALLOC_OK)
    fprintf(stderr, "prof_growth: alloc_profile_dump(%s): %s\n", path, alloc_strerror(st));
  return st == ALLOC_OK;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s BEFORE.heap AFTER.heap\n", argv[0]);
    return 2;
  }
  for (int i = 0; i < BIG_BLOCKS; i++)
    if (!(big[i] = flame_sixty_four_mib(BIG)))
      return 1;
  for (int i = 0; i < SMALL_BLOCKS; i++)
    if (!(small[i] = flame_small_side(SMALL)))
      return 1;
  if (!dump(argv[1]))
    return 1;
  for (int i = 0; i < GROW_BLOCKS; i++)
    if (!(grown[i] = growth_sixteen_mib(BIG)))
      return 1;
  if (!dump(argv[2]))
    return 1;
  /* Freed only now: every block above is live in the dumps that should see it. */
  for (int i = 0; i < BIG_BLOCKS; i++)
    free(big[i]);
  for (int i = 0; i < SMALL_BLOCKS; i++)
    free(small[i]);
  for (int i = 0; i < GROW_BLOCKS; i++)
    free(grown[i]);
  return 0;
}
