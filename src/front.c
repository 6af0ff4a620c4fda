/* The front layer: every allocation entry point a program or its libraries may call,
 * each a one-line forward to the backend (backend.h) or to the semantics glue (glue.h).
 * BE_DIRECT marks entries the backend's own function may serve with no forward: the
 * shared library's link then gives the name to it (cmake/AllocshimBackend.cmake). */
#define _GNU_SOURCE
#include "glue.h"
#include "internal.h"

#include <allocshim.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>

#define EXPORT ALLOC_API
#define UNUSED __attribute__((unused))
#if __has_attribute(copy)
#define ALIAS(target) ALLOC_API __attribute__((alias(#target), copy(target)))
#else
#define ALIAS(target) ALLOC_API __attribute__((alias(#target)))
#endif

/* Entry points that glibc 2.36's headers do not declare. */
void cfree(void *p);
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

/* ---- The C library family ------------------------------------------------- */

EXPORT BE_DIRECT void *malloc(size_t n) { return be_malloc(n); }
EXPORT BE_DIRECT void *calloc(size_t c, size_t n) { return be_calloc(c, n); }
EXPORT void *realloc(void *p, size_t n) { return glue_realloc(p, n); }
EXPORT void *reallocarray(void *p, size_t c, size_t n) { return glue_reallocarray(p, c, n); }
EXPORT BE_DIRECT void free(void *p) { be_free(p); }
EXPORT void free_sized(void *p, size_t n) { glue_free_sized(p, n); }
EXPORT void free_aligned_sized(void *p, size_t a, size_t n) { glue_free_aligned_sized(p, a, n); }
EXPORT int posix_memalign(void **out, size_t a, size_t n) { return glue_posix_memalign(out, a, n); }
EXPORT BE_DIRECT void *aligned_alloc(size_t a, size_t n) { return glue_aligned_alloc(a, n); }
EXPORT void *memalign(size_t a, size_t n) { return glue_memalign(a, n); }
EXPORT void *valloc(size_t n) { return glue_valloc(n); }
EXPORT void *pvalloc(size_t n) { return glue_pvalloc(n); }
EXPORT size_t malloc_usable_size(void *p) { return glue_usable_size(p); }
BE_DIRECT void cfree(void *p) ALIAS(free);

/* glibc's own names for the same functions: libraries that call them directly would
 * otherwise reach glibc's allocator behind the shim's back. */
#if ALLOCSHIM_GLIBC
BE_DIRECT void *__libc_malloc(size_t n) ALIAS(malloc);
BE_DIRECT void __libc_free(void *p) ALIAS(free);
BE_DIRECT void *__libc_calloc(size_t c, size_t n) ALIAS(calloc);
void *__libc_realloc(void *p, size_t n) ALIAS(realloc);
void *__libc_memalign(size_t a, size_t n) ALIAS(memalign);
void *__libc_valloc(size_t n) ALIAS(valloc);
void *__libc_pvalloc(size_t n) ALIAS(pvalloc);
#endif

/* glibc's introspection, answered from the backend's figures (src/stats.c); glibc's
 * own would describe its empty arena. */
#if ALLOCSHIM_GLIBC
EXPORT struct mallinfo2 mallinfo2(void) { return stats_mallinfo2(); }
EXPORT struct mallinfo mallinfo(void) { return stats_mallinfo(); }
EXPORT void malloc_stats(void) { stats_malloc_stats(); }
EXPORT int malloc_info(int options, FILE *fp) { return stats_malloc_info(options, fp); }
EXPORT int malloc_trim(size_t pad) { return stats_malloc_trim(pad); }
EXPORT int mallopt(int param, int value) { return stats_mallopt(param, value); }
#endif

/* ---- C++ operator new and delete (Itanium C++ ABI names) ---------------------
 * The mangled names carry size_t's type: 'm' (unsigned long) on LP64 targets,
 * 'j' (unsigned int) on 32-bit ones. */
#if defined(__LP64__)
#define CXX(head, tail) head##m##tail
_Static_assert(_Generic((size_t)0, unsigned long : 1, default : 0), "size_t mangles as 'm'");
#else
#define CXX(head, tail) head##j##tail
_Static_assert(_Generic((size_t)0, unsigned int : 1, default : 0), "size_t mangles as 'j'");
#endif

typedef struct nothrow_tag nothrow_tag; /* std::nothrow_t, only ever passed by reference */

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

/* The table stays one line per operator; clang-format would fold it. */
/* clang-format off */
/* new, new[] */
EXPORT void *CXX(_Znw, )(size_t n) { return cxx_new(n); }
EXPORT void *CXX(_Zna, )(size_t n) { return cxx_new(n); }
EXPORT void *CXX(_Znw, RKSt9nothrow_t)(size_t n, const nothrow_tag *t UNUSED) { return cxx_new_nothrow(n); }
EXPORT void *CXX(_Zna, RKSt9nothrow_t)(size_t n, const nothrow_tag *t UNUSED) { return cxx_new_nothrow(n); }
EXPORT void *CXX(_Znw, St11align_val_t)(size_t n, size_t a) { return cxx_new_aligned(n, a); }
EXPORT void *CXX(_Zna, St11align_val_t)(size_t n, size_t a) { return cxx_new_aligned(n, a); }
EXPORT void *CXX(_Znw, St11align_val_tRKSt9nothrow_t)(size_t n, size_t a, const nothrow_tag *t UNUSED) { return cxx_new_aligned_nothrow(n, a); }
EXPORT void *CXX(_Zna, St11align_val_tRKSt9nothrow_t)(size_t n, size_t a, const nothrow_tag *t UNUSED) { return cxx_new_aligned_nothrow(n, a); }

/* delete, delete[]: plain, sized, aligned, sized and aligned, nothrow */
EXPORT BE_DIRECT void _ZdlPv(void *p) { be_free(p); }
EXPORT BE_DIRECT void _ZdaPv(void *p) { be_free(p); }
EXPORT void CXX(_ZdlPv, )(void *p, size_t n) { be_free_sized(p, n); }
EXPORT void CXX(_ZdaPv, )(void *p, size_t n) { be_free_sized(p, n); }
EXPORT BE_DIRECT void _ZdlPvSt11align_val_t(void *p, size_t a UNUSED) { be_free(p); }
EXPORT BE_DIRECT void _ZdaPvSt11align_val_t(void *p, size_t a UNUSED) { be_free(p); }
EXPORT void CXX(_ZdlPv, St11align_val_t)(void *p, size_t n, size_t a) { be_free_aligned_sized(p, a, n); }
EXPORT void CXX(_ZdaPv, St11align_val_t)(void *p, size_t n, size_t a) { be_free_aligned_sized(p, a, n); }
EXPORT BE_DIRECT void _ZdlPvRKSt9nothrow_t(void *p, const nothrow_tag *t UNUSED) { be_free(p); }
EXPORT BE_DIRECT void _ZdaPvRKSt9nothrow_t(void *p, const nothrow_tag *t UNUSED) { be_free(p); }
EXPORT BE_DIRECT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a UNUSED, const nothrow_tag *t UNUSED) { be_free(p); }
EXPORT BE_DIRECT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a UNUSED, const nothrow_tag *t UNUSED) { be_free(p); }
/* clang-format on */
