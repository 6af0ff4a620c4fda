/* Hands the allocator a pointer it must not take, the way real bugs do: one from
 * glibc's own malloc, one into static data, one on the stack; a block already freed
 * (a double free); a pointer into the middle of a block. Knows nothing of allocshim;
 * checked mode must stop it with a message before anything is corrupted.
 * usage: foreign glibc|static|stack|freed-SIZE|lone-SIZE|inside-SIZE free|realloc|usable|delete
 *        where SIZE is small (32 B), medium (20 KiB), large (4 MiB) or huge (64 MiB);
 *        lone-SIZE is freed-SIZE with the blocks allocated just before and after it
 *        freed first, so that the freed block's memory merges with free memory
 *        around it */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdbool.h>
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
  void *p = NULL;
  const char *size = strchr(argv[1], '-');
  if (size != NULL) {
    size_t n = strcmp(size, "-small") == 0    ? 32
               : strcmp(size, "-medium") == 0 ? 20 << 10
               : strcmp(size, "-large") == 0  ? 4 << 20
               : strcmp(size, "-huge") == 0   ? 64 << 20
                                              : 0;
    /* A neighbour keeps the block's slab or page in use, and stdout unbuffered keeps
     * stdio from taking the freed memory back: the block stays freed, not reused. */
    setvbuf(stdout, NULL, _IONBF, 0);
    bool lone = strncmp(argv[1], "lone-", 5) == 0;
    char *before = lone ? malloc(n) : NULL;
    char *block = n ? malloc(n) : NULL, *neighbour = n ? malloc(n) : NULL;
    if (block == NULL || neighbour == NULL || (lone && before == NULL))
      return 2;
    memset(block, 0x5a, n);
    if (lone) /* both sides free: whichever is next to the block in memory */
      free(before), free(neighbour);
    if (strncmp(argv[1], "freed-", 6) == 0 || strncmp(argv[1], "lone-", 5) == 0) {
      /* The point is to use it after free; the empty asm hides that from the compiler,
       * which at some optimisation levels refuses (-Wuse-after-free). */
      p = block;
      __asm__("" : "+r"(p));
      free(block);
    } else if (strncmp(argv[1], "inside-", 7) == 0) {
      /* Past the first page, where it can be, as well as into the first one. */
      p = block + (n > 4096 ? n / 2 : 16);
    }
  } else {
    p = strcmp(argv[1], "static") == 0  ? (void *)data
        : strcmp(argv[1], "stack") == 0 ? (void *)stack
        : glibc_malloc                  ? glibc_malloc(100)
                                        : NULL;
  }
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
