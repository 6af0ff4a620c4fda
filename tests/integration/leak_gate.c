/* The leak gate's programs in one: `leak` keeps a block from one named function,
 * `clean STATUS` frees all it allocates (printf's buffer included) and exits STATUS,
 * `thread` returns from main while another thread is still writing to stdout. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* noinline and distinctive: the gate must name this frame. */
__attribute__((noinline)) char *leaky_cache_fill(size_t n) {
  char *p = malloc(n);
  if (p)
    memset(p, 'x', n);
  return p;
}

/* Allocates and frees, so a clean run has had blocks to forget. */
__attribute__((noinline)) static size_t tidy_work(void) {
  size_t total = 0;
  for (int i = 1; i <= 64; i++) {
    char *p = malloc((size_t)i * 100);
    if (p == NULL)
      return 0;
    memset(p, 1, (size_t)i * 100);
    total += (size_t)i * 100;
    free(p);
  }
  return total;
}

/* Writes to stdout for as long as the process lives: exit() stops no thread. */
static void *chatter(void *arg) {
  (void)arg;
  for (;;) {
    printf("leak_gate: thread still writing\n");
    fflush(stdout);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "thread") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, chatter, NULL) != 0)
      return 1;
    printf("leak_gate: main returns\n");
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "leak") == 0) {
    char *kept = leaky_cache_fill(4000);
    if (kept == NULL)
      return 1;
    /* Buffered (stdout is a file in the test): must not be lost when the gate exits.
     * Returning drops the last pointer: a leak however it is counted. */
    printf("leak_gate: cache filled with %c\n", kept[0]);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "clean") == 0) {
    printf("leak_gate: clean, %zu bytes worked through\n", tidy_work());
    return atoi(argv[2]);
  }
  fprintf(stderr, "usage: %s leak | clean STATUS | thread\n", argv[0]);
  return 2;
}
