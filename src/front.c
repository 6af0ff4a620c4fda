/* The front layer: every allocation entry point a program or its libraries may call,
 * defined from the one table of them (src/entries.def), each a forward to glue.h. */
#define _GNU_SOURCE
#include "glue.h"
#include "internal.h"

#include <allocshim.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>

#include "entries.def" /* its macros only: no row macro is defined yet */

#define UNUSED __attribute__((unused))
#if __has_attribute(copy)
#define ALIAS_OF(target) ALLOC_API __attribute__((alias(#target), copy(target)))
#else
#define ALIAS_OF(target) ALLOC_API __attribute__((alias(#target)))
#endif

/* Entry points that glibc 2.36's headers do not declare. */
void cfree(void *p);
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

/* operator new: the backend's block, or the new-handler loop and std::bad_alloc
 * (nullptr for the nothrow forms) when there is none. */
typedef struct nothrow_tag nothrow_tag; /* std::nothrow_t, only ever passed by reference */
_Static_assert(_Generic((size_t)0, ALLOCSHIM_CXX_SIZE_T : 1, default : 0),
               "size_t is the type whose letter src/entries.def mangles into operator new's names");
static inline void *cxx_new(size_t n) {
  void *p = be_malloc(n);
  return ALLOC_LIKELY(p != NULL) ? p : glue_cxx_new_failed(n, 0, false);
}
static inline void *cxx_new_nothrow(size_t n) {
  void *p = be_malloc(n);
  return ALLOC_LIKELY(p != NULL) ? p : glue_cxx_new_failed(n, 0, true);
}
static inline void *cxx_new_aligned(size_t n, size_t a) {
  void *p = be_aligned(a, n);
  return ALLOC_LIKELY(p != NULL) ? p : glue_cxx_new_failed(n, a, false);
}
static inline void *cxx_new_aligned_nothrow(size_t n, size_t a) {
  void *p = be_aligned(a, n);
  return ALLOC_LIKELY(p != NULL) ? p : glue_cxx_new_failed(n, a, true);
}

/* One definition per row; the backend columns are the build's (--defsym). */
#define FN(name, ret, params, call, je, mi)                                                        \
  ALLOC_API ret name params { return call; }
#define PROC(name, params, call, je, mi)                                                           \
  ALLOC_API void name params { call; }
#define ALIAS(name, target, je, mi) __typeof__(target) name ALIAS_OF(target);
#define ELSEWHERE(name)
#include "entries.def"
