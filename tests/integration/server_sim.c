/* A stand-in for a prebuilt server: it knows nothing of allocshim, builds a cache in
 * one known function, says "ready", then serves until its stdin closes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *build_big_cache(size_t n) {
  void *p = malloc(n);
  if (p)
    memset(p, 7, n);
  return p;
}

__attribute__((noinline)) void *handle_request(size_t n) { return calloc(1, n); }

int main(void) {
  enum { KEEP = 300 };
  static void *cache[KEEP], *req[KEEP];
  for (int i = 0; i < KEEP; i++) {
    cache[i] = build_big_cache(256 * 1024);
    req[i] = handle_request(300);
  }
  printf("ready\n");
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin) != NULL) /* the test writes, then closes */
    ;
  for (int i = 0; i < KEEP; i++) {
    free(cache[i]);
    free(req[i]);
  }
  printf("done\n");
  return 0;
}
