/* The C and glibc rules that hold whatever the backend: zero sizes, overflow,
 * alignment checks and errno. front.c calls these; backend.h supplies be_*(). */
#ifndef ALLOCSHIM_GLUE_H
#define ALLOCSHIM_GLUE_H

#include "backend.h"
#include "check.h"

#include <stdbool.h>

/* ---- Checked mode (ALLOCSHIM_CHECK=1, src/check.c) ------------------------------------
 * One mechanism, chosen once before main: every entry point that hands the backend a
 * pointer calls through this table, which holds the plain operations, or, in checked
 * mode, versions that run check_pointer() first. check_start() makes the choice; the
 * table then sits in RELRO, read-only like the GOT, since a writable function pointer
 * on the free path is a gift to an attacker. The jump through it is the one cost the
 * mode adds when it is off (docs/PERFORMANCE.md: a flag test instead cost 2.5% more on
 * mimalloc's free). On a backend that checks its own frees (BE_CHECKS_FREES), the frees
 * are not in the table: jemalloc's free is given straight to the name by the link, with
 * no shim code in front of it, so the same check runs from jemalloc's dalloc hook. */
struct glue_ops {
  void *(*realloc)(void *p, size_t n);
  size_t (*usable_size)(void *p);
#if !BE_CHECKS_FREES
  void (*free)(void *p);
  void (*free_sized)(void *p, size_t n);
  void (*free_aligned_sized)(void *p, size_t n, size_t align); /* BE_FREE_FUNCTIONS' order */
#endif
};
extern struct glue_ops glue_ops __attribute__((visibility("hidden")));

/* The plain operations behind the table's first two slots (glue.c). */
void *glue_realloc_plain(void *p, size_t n);
size_t glue_usable_size_plain(void *p);

#define glue_realloc(p, n)  glue_ops.realloc((p), (n))
#define glue_usable_size(p) glue_ops.usable_size(p)
/* Sized operator delete is glue_delete_sized itself: C++ code is never built against
 * another allocator's malloc, so unlike free_sized it does not ask whose malloc the
 * process uses. */
#if BE_CHECKS_FREES
#define glue_free(p)                           be_free(p)
#define glue_delete_sized(p, n)                be_free_sized((p), (n))
#define glue_delete_aligned_sized(p, align, n) be_free_aligned_sized((p), (align), (n))
#else
#define glue_free(p)                           glue_ops.free(p)
#define glue_delete_sized(p, n)                glue_ops.free_sized((p), (n))
#define glue_delete_aligned_sized(p, align, n) glue_ops.free_aligned_sized((p), (n), (align))
#endif

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
    glue_delete_sized(p, size);
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

/* Less common entry points, kept out of line in glue.c. */
void *glue_memalign(size_t align, size_t size);
void *glue_valloc(size_t size);
void *glue_pvalloc(size_t size);
void glue_free_aligned_sized(void *p, size_t align, size_t size);
/* operator new's answer to a failed allocation: the new-handler loop, then
 * std::bad_alloc (or NULL for the nothrow forms). align 0 means unaligned. */
void *glue_cxx_new_failed(size_t size, size_t align, bool nothrow);

#endif /* ALLOCSHIM_GLUE_H */
