/* A root daemon's stand-in for tests/integration/prof_hostile.sh: it holds some memory
 * and asks for COUNT heap profiles at PATH ("-" for the default name), one line each. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s COUNT PATH|-\n", argv[0]);
    return 2;
  }
  int count = atoi(argv[1]), failed = 0;
  const char *path = strcmp(argv[2], "-") == 0 ? NULL : argv[2];
  static void *keep[64];
  for (int i = 0; i < 64; i++)
    keep[i] = malloc(64 * 1024);
  for (int i = 0; i < count; i++) {
    errno = 0;
    int st = alloc_profile_dump(path);
    const char *err = errno ? strerrorname_np(errno) : "0";
    printf("dump %d: %d %s\n", i, st, err ? err : "?");
    failed += st != ALLOC_OK;
  }
  for (int i = 0; i < 64; i++)
    free(keep[i]);
  return failed ? 1 : 0;
}
