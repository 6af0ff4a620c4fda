/* A library preloaded after the shim: its constructor runs before the shim's and
 * allocates, from this thread and from a new one, before main. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void *early_block; /* checked and freed by process_life */

static void *early_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < 1000; i++)
    free(malloc((size_t)(i % 500) + 1));
  return strdup("from a thread started before main");
}

__attribute__((constructor)) static void early_start(void) {
  early_block = malloc(4096);
  if (early_block)
    memset(early_block, 0xE1, 4096);
  pthread_t t;
  void *r = NULL;
  if (pthread_create(&t, NULL, early_thread, NULL) == 0 && pthread_join(t, &r) == 0)
    free(r);
}
