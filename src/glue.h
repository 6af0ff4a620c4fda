/* The C and glibc rules that hold whatever the backend: zero sizes, overflow,
 * alignment checks and errno. front.c calls these; backend.h supplies be_*(). */
#ifndef ALLOCSHIM_GLUE_H
#define ALLOCSHIM_GLUE_H

#include "backend.h"
#include "check.h"

#include <stdbool.h>

/* glibc: realloc(p, 0) frees p and returns NULL, errno untouched. */
static inline void *glue_realloc(void *p, size_t n) {
  if (ALLOC_UNLIKELY(check_on))
    check_pointer("realloc", p);
  if (ALLOC_UNLIKELY(n == 0 && p != NULL)) {
    be_free(p);
    return NULL;
  }
  return be_realloc(p, n);
}

/* Whose malloc the process uses (src/foreign.c). Only the extra entry points that
 * another allocator may lack (reallocarray, free_sized, free_aligned_sized) ask:
 * malloc, free and the rest are never reached when another allocator wins. cfree
 * stays free itself, as in glibc: an allocator that defines free but not cfree
 * breaks it under glibc too (tcmalloc defines both). */
enum { GLUE_MALLOC_UNKNOWN, GLUE_MALLOC_OURS, GLUE_MALLOC_OTHER };
extern int glue_malloc_owner __attribute__((visibility("hidden")));
bool glue_malloc_owner_slow(void);
void *glue_other_realloc(void *p, size_t n);
void glue_other_free(void *p);
static inline bool glue_malloc_is_ours(void) {
  return ALLOC_LIKELY(__atomic_load_n(&glue_malloc_owner, __ATOMIC_ACQUIRE) == GLUE_MALLOC_OURS) ||
         glue_malloc_owner_slow();
}

/* As glibc's: the overflow check, then whichever realloc the process uses. */
static inline void *glue_reallocarray(void *p, size_t count, size_t size) {
  size_t total;
  if (ALLOC_UNLIKELY(__builtin_mul_overflow(count, size, &total))) {
    errno = ENOMEM;
    return NULL;
  }
  if (ALLOC_UNLIKELY(!glue_malloc_is_ours()))
    return glue_other_realloc(p, total);
  return glue_realloc(p, total);
}

static inline void glue_free_sized(void *p, size_t size) {
  if (ALLOC_UNLIKELY(!glue_malloc_is_ours()))
    glue_other_free(p);
  else
    be_free_sized(p, size);
}

/* POSIX: the error is the return value; *out and errno are left alone on failure.
 * The backend checks the alignment (see be_posix_memalign); a NULL out is ours. */
static inline int glue_posix_memalign(void **out, size_t align, size_t size) {
  /* glibc declares `out` nonnull, which lets the compiler delete the check below;
   * the empty asm hides where the pointer came from, at no cost. */
  __asm__("" : "+r"(out));
  if (ALLOC_UNLIKELY(out == NULL))
    return EINVAL;
  return be_posix_memalign(out, align, size);
}

/* C11/C17: the alignment must be a power of two; glibc 2.38 and later say EINVAL. */
static inline void *glue_aligned_alloc(size_t align, size_t size) {
  if (ALLOC_UNLIKELY(!be_pow2(align))) {
    errno = EINVAL;
    return NULL;
  }
  return be_aligned(align, size);
}

static inline size_t glue_usable_size(void *p) {
  if (ALLOC_UNLIKELY(check_on))
    check_pointer("malloc_usable_size", p);
  return be_usable_size(p);
}

/* Less common entry points, kept out of line in glue.c. */
void *glue_memalign(size_t align, size_t size);
void *glue_valloc(size_t size);
void *glue_pvalloc(size_t size);
void glue_free_aligned_sized(void *p, size_t align, size_t size);
/* operator new's answer to a failed allocation: the new-handler loop, then
 * std::bad_alloc (or NULL for the nothrow forms). align 0 means unaligned. */
void *glue_cxx_new_failed(size_t size, size_t align, bool nothrow);

#endif /* ALLOCSHIM_GLUE_H */
