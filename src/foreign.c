/* Whose malloc this process uses: the shim's, unless another allocator (preloaded ahead
 * of it, or the program's own) won interposition. Then the shim's extra entry points
 * hand that allocator's blocks back to its realloc and free. */
#define _GNU_SOURCE
#include "glue.h"
#include "internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

int glue_malloc_owner; /* GLUE_MALLOC_UNKNOWN until the first look */
static void *(*other_realloc)(void *p, size_t n);
static void (*other_free)(void *p);
static const char *other_name;

/* A program built without PIE that takes malloc's address holds a stub for it (a
 * "canonical PLT entry"), and dlsym names that stub, which defines nothing: the malloc
 * every object binds to is then the first definition among the other objects, in load
 * order. Asked of each object by name; only such programs (python3 on Debian) get here. */
struct definer {
  void *fn;
  bool found;
};
static int first_definer(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  struct definer *d = data;
  if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0')
    return 0; /* the program itself */
  void *h = dlopen(info->dlpi_name, RTLD_NOLOAD | RTLD_LAZY);
  if (h == NULL)
    return 0; /* the vDSO */
  void *fn = dlsym(h, "malloc");
  Dl_info where;
  if (fn != NULL && dladdr(fn, &where) && where.dli_fname != NULL &&
      strcmp(where.dli_fname, info->dlpi_name) == 0) {
    d->fn = fn;
    d->found = true;
  }
  dlclose(h);
  return d->found;
}

/* Whether the symbol at fn is such a stub: undefined, with a value. dladdr and dlsym
 * both take it for a definition; glibc's dladdr1 shows the symbol itself. Without it
 * (musl), a stub is taken for the program's own malloc, which only makes the extras
 * reach the shim through the stub. */
static bool is_stub(void *fn) {
#if ALLOCSHIM_GLIBC /* dladdr1 */
  Dl_info info;
  const ElfW(Sym) *sym = NULL;
  return dladdr1(fn, &info, (void **)&sym, RTLD_DL_SYMENT) && sym != NULL &&
         sym->st_shndx == SHN_UNDEF;
#else
  (void)fn;
  return false;
#endif
}

/* Found once, at start (foreign_start), by the dynamic linker's own lookup: the object
 * that defines the malloc every other object binds to. Neither dlsym (for a symbol that
 * exists) nor dladdr allocates; the stub's case may, through dlopen, into the shim. */
static int look(void) {
  Dl_info mine, theirs;
  void *winner = dlsym(RTLD_DEFAULT, "malloc");
  if (winner == NULL || !dladdr((void *)look, &mine) || !dladdr(winner, &theirs))
    return GLUE_MALLOC_OURS;
  if (is_stub(winner)) {
    struct definer d = {NULL, false};
    dl_iterate_phdr(first_definer, &d);
    if (!d.found || !dladdr(d.fn, &theirs))
      return GLUE_MALLOC_OURS;
  }
  if (mine.dli_fbase == theirs.dli_fbase)
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
