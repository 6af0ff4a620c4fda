/* The out-of-line half of the semantics glue: legacy page-aligned entry points and
 * operator new's failure path (new-handler loop, std::bad_alloc, nothrow's nullptr). */
#define _GNU_SOURCE
#include "glue.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *glue_memalign(size_t align, size_t size) {
  /* glibc rejects only alignments that cannot be a power of two and rounds the
   * rest up, so memalign(24, n) is memalign(32, n). */
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return NULL;
  }
  size_t a = 1;
  while (a < align)
    a <<= 1;
  return be_aligned(a, size);
}

void *glue_valloc(size_t size) { return be_aligned((size_t)sysconf(_SC_PAGESIZE), size); }

/* glibc: the size is rounded up to whole pages (0 stays 0); overflow is ENOMEM. */
void *glue_pvalloc(size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size_t rounded;
  if (__builtin_add_overflow(size, page - 1, &rounded)) {
    errno = ENOMEM;
    return NULL;
  }
  return be_aligned(page, rounded & ~(page - 1));
}

/* In .data.rel.ro: the dynamic linker fills it in, then makes it read-only; only
 * check_start() writes it again, under mprotect, before main. */
__attribute__((section(".data.rel.ro"))) struct glue_ops glue_ops = {
    glue_realloc_plain,
    glue_usable_size_plain,
#if !BE_CHECKS_FREES
    BE_FREE_FUNCTIONS,
#endif
};

/* glibc: realloc(p, 0) frees p and returns NULL, errno untouched. */
void *glue_realloc_plain(void *p, size_t n) {
  if (ALLOC_UNLIKELY(n == 0 && p != NULL)) {
    be_free(p);
    return NULL;
  }
  return be_realloc(p, n);
}

size_t glue_usable_size_plain(void *p) { return be_usable_size(p); }

/* An alignment that is not a power of two cannot have come from aligned_alloc; such
 * a call is undefined in C23, and the safe answer is the unsized free. */
void glue_free_aligned_sized(void *p, size_t align, size_t size) {
  if (!glue_malloc_is_ours())
    glue_other_free(p);
  else if (be_pow2(align))
    glue_delete_aligned_sized(p, align, size);
  else
    glue_free(p);
}

/* libstdc++'s hooks, looked up weakly so that C programs load no C++ runtime. */
typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

/* The C++ runtime's own nothrow operator new (libstdc++'s or libc++'s, whichever is
 * next after the shim). Both call the throwing operator new, which interposition makes
 * the shim's, inside a try block, and turn whatever escapes into nullptr. C has no
 * catch, so a nothrow failure with a new-handler that may throw is handed to it: the
 * handler then runs inside that try block. */
#if defined(__LP64__)
#define SIZE_MANGLED "m"
#else
#define SIZE_MANGLED "j"
#endif
typedef void *(*nothrow_new_fn)(size_t size, const void *tag);
typedef void *(*nothrow_new_aligned_fn)(size_t size, size_t align, const void *tag);

/* NULL when no C++ runtime after the shim defines it. */
static void *runtime_nothrow_new(const char *name) {
  void *fn = dlsym(RTLD_NEXT, name);
  Dl_info mine, theirs;
  if (fn == NULL || !dladdr(fn, &theirs) || !dladdr((void *)runtime_nothrow_new, &mine) ||
      theirs.dli_fbase == mine.dli_fbase)
    return NULL; /* never the shim's own: that would come straight back here */
  return fn;
}

/* True when the runtime's nothrow operator new answered; *out is then its answer,
 * final: NULL, or a block from the shim's own operator new. */
static bool nothrow_through_runtime(size_t size, size_t align, void **out) {
  static void *plain, *aligned; /* found once each */
  static const char tag;        /* std::nothrow_t is empty: only its address is passed */
  void **slot = align ? &aligned : &plain;
  void *fn = __atomic_load_n(slot, __ATOMIC_RELAXED);
  if (fn == NULL) {
    fn = runtime_nothrow_new(align ? "_Znw" SIZE_MANGLED "St11align_val_tRKSt9nothrow_t"
                                   : "_Znw" SIZE_MANGLED "RKSt9nothrow_t");
    if (fn == NULL)
      return false;
    __atomic_store_n(slot, fn, __ATOMIC_RELAXED);
  }
  *out = align ? ((nothrow_new_aligned_fn)fn)(size, align, &tag) : ((nothrow_new_fn)fn)(size, &tag);
  return true;
}

void *glue_cxx_new_failed(size_t size, size_t align, bool nothrow) {
  void *answer;
  if (nothrow && _ZSt15get_new_handlerv && _ZSt15get_new_handlerv() != NULL &&
      nothrow_through_runtime(size, align, &answer))
    return answer;
  for (;;) {
    new_handler_fn handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
    if (handler == NULL)
      break;
    handler(); /* may free memory, throw, or end the program */
    void *p = align ? be_aligned(align, size) : be_malloc(size);
    if (p != NULL)
      return p;
  }
  if (nothrow)
    return NULL;
  if (_ZSt17__throw_bad_allocv)
    _ZSt17__throw_bad_allocv();
  fprintf(stderr, "allocshim: operator new(%zu) failed and no C++ runtime is loaded to throw\n",
          size);
  abort();
}
