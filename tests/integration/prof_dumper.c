/* A root daemon's stand-in for tests/integration/prof_hostile.sh: it holds some memory
 * and asks for COUNT heap profiles at PATH ("-" for the default name), one line each. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* errno's name, as prof_hostile.sh expects it; glibc's strerrorname_np is not in
 * musl, and these are all the values a dump gives. */
static const char *errno_name(int e) {
  static char number[16];
  switch (e) {
  case 0: return "0";
  case EACCES: return "EACCES";
  case EEXIST: return "EEXIST";
  case EISDIR: return "EISDIR";
  case ELOOP: return "ELOOP";
  case ENOENT: return "ENOENT";
  case ENOTDIR: return "ENOTDIR";
  case ENOTSUP: return "EOPNOTSUPP"; /* the same number on Linux; glibc's name for it */
  case EPERM: return "EPERM";
  case EINVAL: return "EINVAL";
  case EIO: return "EIO";
  case ENOSPC: return "ENOSPC";
  case EROFS: return "EROFS";
  }
  snprintf(number, sizeof number, "%d", e);
  return number;
}

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
    printf("dump %d: %d %s\n", i, st, errno_name(errno));
    failed += st != ALLOC_OK;
  }
  for (int i = 0; i < 64; i++)
    free(keep[i]);
  return failed ? 1 : 0;
}
