/* The program's first allocation leaves errno as it was, as glibc's does: a library
 * constructor sets errno, allocates (the first call, which starts the backend) and
 * records errno; the program reports it. Built twice, as the library (FIRST_ERRNO_LIB)
 * and as the program linked to it. With FIRST_ERRNO_RETRY=1 the constructor takes
 * every thread-specific key first, so that jemalloc's start fails (NULL, ENOMEM) after
 * reading its options, gives one back, and the allocation that starts it again is the
 * one whose errno counts.
 * usage: first_errno [BACKEND_KIND]   (with the shim preloaded; exit 0 when errno came
 *        back intact, 77 where the build cannot hold it: mimalloc-shared) */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef FIRST_ERRNO_LIB
int first_errno_seen = -1;
__attribute__((constructor)) static void first_allocation(void) {
  static pthread_key_t keys[4096];
  int taken = 0;
  const char *retry = getenv("FIRST_ERRNO_RETRY");
  if (retry != NULL && *retry == '1') {
    while (taken < 4096 && pthread_key_create(&keys[taken], NULL) == 0)
      taken++;
    errno = EILSEQ;
    void *volatile failed = malloc(32); /* may fail: no key for the backend */
    free(failed);
    if (taken > 0)
      pthread_key_delete(keys[--taken]);
  }
  errno = EOWNERDEAD;
  void *volatile p = malloc(32); /* volatile: the compiler may not drop the pair */
  first_errno_seen = errno;
  free(p);
  while (taken > 0)
    pthread_key_delete(keys[--taken]);
}
#else
#include <string.h>
extern int first_errno_seen;
int main(int argc, char **argv) {
  printf("first_errno: errno %d after the first malloc, %d before\n", first_errno_seen, EOWNERDEAD);
  if (first_errno_seen == EOWNERDEAD)
    return 0;
  /* libmimalloc.so's first allocation counts NUMA nodes with access() until one is
   * missing, out of the shim's reach (the compiled-in mimalloc's goes through it). */
  if (argc > 1 && strcmp(argv[1], "mimalloc-shared") == 0) {
    printf("first_errno: SKIP: libmimalloc.so sets errno in its first allocation\n");
    return 77;
  }
  return 1;
}
#endif
