/* Whose malloc this process uses: the shim's, unless another allocator (preloaded ahead
 * of it, or the program's own) won interposition. Then the shim's extra entry points
 * hand that allocator's blocks back to its realloc and free. */
#define _GNU_SOURCE
#include "glue.h"
#include "internal.h"

#include <dlfcn.h>

int glue_malloc_owner; /* GLUE_MALLOC_UNKNOWN until the first look */
static void *(*other_realloc)(void *p, size_t n);
static void (*other_free)(void *p);
static const char *other_name;

/* Found once, by the dynamic linker's own lookup: the object that defines the malloc
 * every other object binds to. Neither dlsym (for a symbol that exists) nor dladdr
 * allocates. */
static int look(void) {
  Dl_info mine, theirs;
  void *winner = dlsym(RTLD_DEFAULT, "malloc");
  if (winner == NULL || !dladdr((void *)look, &mine) || !dladdr(winner, &theirs) ||
      mine.dli_fbase == theirs.dli_fbase)
    return GLUE_MALLOC_OURS;
  void *r = dlsym(RTLD_DEFAULT, "realloc"), *f = dlsym(RTLD_DEFAULT, "free");
  if (r == NULL || f == NULL)
    return GLUE_MALLOC_OURS; /* a malloc with no free: nothing better to hand them to */
  other_realloc = (void *(*)(void *, size_t))r;
  other_free = (void (*)(void *))f;
  other_name = theirs.dli_fname != NULL && theirs.dli_fname[0] != '\0' ? theirs.dli_fname
                                                                       : "the program itself";
  return GLUE_MALLOC_OTHER;
}

bool glue_malloc_owner_slow(void) {
  int owner = __atomic_load_n(&glue_malloc_owner, __ATOMIC_ACQUIRE);
  if (owner == GLUE_MALLOC_UNKNOWN) {
    /* Two threads may both look: they find the same answer. */
    owner = look();
    __atomic_store_n(&glue_malloc_owner, owner, __ATOMIC_RELEASE);
  }
  return owner == GLUE_MALLOC_OURS;
}

void *glue_other_realloc(void *p, size_t n) { return other_realloc(p, n); }
void glue_other_free(void *p) { other_free(p); }

void foreign_start(void) {
  if (!glue_malloc_owner_slow() && allocshim_env_flag("VERBOSE"))
    allocshim_say("malloc in this process is not allocshim's (malloc from %s); reallocarray, "
                  "free_sized and free_aligned_sized hand its blocks to its realloc and free",
                  other_name);
}
