/* Preloaded after the shim, so that its constructor runs first: a thread that allocates
 * a block and never frees it, before the shim's constructor has opened the profiler's
 * unwinder. Not the loader's doing: the leak check must report it. */
#include <pthread.h>
#include <stdlib.h>

static void *leak(void *arg) {
  (void)arg;
  void *volatile block = malloc(5555);
  (void)block;
  return NULL;
}

__attribute__((constructor)) static void start(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, leak, NULL) == 0)
    pthread_join(t, NULL);
}
