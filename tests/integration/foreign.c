/* Hands the allocator a pointer it never allocated, the way real bugs do: one from
 * glibc's own malloc, one into static data, one on the stack. Knows nothing of
 * allocshim; checked mode must stop it with a message before anything is corrupted.
 * usage: foreign glibc|static|stack free|realloc|usable|delete */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char data[64];

int main(int argc, char **argv) {
  if (argc != 3)
    return 2;
  /* libc.so.6's own malloc, found in its own scope, past any preloaded one. */
  void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
  void *(*glibc_malloc)(size_t) = libc ? (void *(*)(size_t))dlsym(libc, "malloc") : NULL;
  char stack[64];
  void *p = strcmp(argv[1], "static") == 0  ? (void *)data
            : strcmp(argv[1], "stack") == 0 ? (void *)stack
            : glibc_malloc                  ? glibc_malloc(100)
                                            : NULL;
  if (p == NULL)
    return 2;
  printf("handing %p (%s) to %s\n", p, argv[1], argv[2]);
  fflush(stdout);
  if (strcmp(argv[2], "realloc") == 0)
    p = realloc(p, 200);
  else if (strcmp(argv[2], "usable") == 0)
    printf("usable size %zu\n", malloc_usable_size(p));
  else if (strcmp(argv[2], "delete") == 0) /* operator delete(void *), as C++ calls it */
    ((void (*)(void *))dlsym(RTLD_DEFAULT, "_ZdlPv"))(p);
  else
    free(p);
  puts("survived");
  return 0;
}
