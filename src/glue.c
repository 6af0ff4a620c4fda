/* The out-of-line half of the semantics glue: legacy page-aligned entry points and
 * operator new's failure path (new-handler loop, std::bad_alloc). */
#define _GNU_SOURCE
#include "glue.h"

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

/* An alignment that is not a power of two cannot have come from aligned_alloc; such
 * a call is undefined in C23, and the safe answer is the unsized free. */
void glue_free_aligned_sized(void *p, size_t align, size_t size) {
  if (!glue_malloc_is_ours())
    glue_other_free(p);
  else if (be_pow2(align))
    be_free_aligned_sized(p, align, size);
  else
    be_free(p);
}

/* libstdc++'s hooks, looked up weakly so that C programs load no C++ runtime. */
typedef void (*new_handler_fn)(void);
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

void *glue_cxx_new_failed(size_t size, size_t align, bool nothrow) {
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
