/* A program that allocates most of its memory in one known function and writes a heap
 * profile through the API, as application code would. Used by jeprof.sh. */
#include <allocshim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP 400

/* noinline: the profile must show this frame by name. */
__attribute__((noinline)) void *build_big_cache(size_t n) {
  void *p = malloc(n);
  if (p)
    memset(p, 1, n);
  return p;
}

__attribute__((noinline)) void *small_side_work(size_t n) { return calloc(1, n); }

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PROFILE_PATH\n", argv[0]);
    return 2;
  }
  static void *keep[KEEP], *side[KEEP];
  for (int i = 0; i < KEEP; i++) {
    keep[i] = build_big_cache(256 * 1024);
    side[i] = small_side_work(512);
  }
  int st = alloc_profile_dump(argv[1]);
  printf("alloc_profile_dump: %d (%s)\n", st, alloc_strerror(st));
  for (int i = 0; i < KEEP; i++) {
    free(keep[i]);
    free(side[i]);
  }
  return st == ALLOC_OK ? 0 : 1;
}
