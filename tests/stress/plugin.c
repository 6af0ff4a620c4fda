/* A library for process_life's dlopen tests: it allocates and frees on behalf of the
 * program, so pointers cross the library boundary in both directions. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

void *plugin_alloc(size_t n) {
  char *p = malloc(n);
  if (p)
    memset(p, 0x5C, n);
  return p;
}

void plugin_free(void *p) { free(p); }

char *plugin_strdup(const char *s) { return strdup(s); }
