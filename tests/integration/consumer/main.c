/* A program of the kind that adopts allocshim at link time: it allocates as usual
 * and asks the library which backend served it. */
#include <allocshim.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How the library was built is its own business: an installed allocshim gives its
 * users include directories and link dependencies, no compile definitions. */
#if defined(ALLOCSHIM_BACKEND_JEMALLOC) || defined(ALLOCSHIM_BACKEND_MIMALLOC) ||               \
    defined(ALLOCSHIM_MIMALLOC_INSIDE) || defined(ALLOCSHIM_BUILDING)
#error "the build's internal definitions reached a user of the installed library"
#endif

int main(void) {
  char *s = malloc(64);
  if (s == NULL)
    return 1;
  snprintf(s, 64, "%s", alloc_backend());
  printf("consumer: served by %s %s (allocshim %s)\n", s, alloc_backend_version(), alloc_version());
  free(s);
  return strcmp(alloc_version(), ALLOCSHIM_VERSION_STRING) == 0 ? 0 : 1;
}
