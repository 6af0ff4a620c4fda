/* The one place in src/ that names a backend: maps the shim's be_*() operations onto
 * jemalloc or mimalloc, as chosen by cmake/AllocshimBackend.cmake. */
#ifndef ALLOCSHIM_BACKEND_H
#define ALLOCSHIM_BACKEND_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALLOC_LIKELY(x)   __builtin_expect(!!(x), 1)
#define ALLOC_UNLIKELY(x) __builtin_expect(!!(x), 0)

static inline bool be_pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

/* The contract every backend meets here, whatever its own documentation says; the
 * tests in tests/test_front.c hold both backends to it:
 *   be_malloc(n)        n may be 0 (unique pointer); NULL + ENOMEM on failure.
 *   be_calloc(c, n)     zeroed; NULL + ENOMEM on failure, also when c * n overflows.
 *   be_realloc(p, n)    p may be NULL; n == 0 only with p == NULL; NULL + ENOMEM on
 *                       failure with p left intact.
 *   be_aligned(a, n)    a is a power of two (any size, even < sizeof(void *));
 *                       NULL + ENOMEM on failure.
 *   be_posix_memalign(out, a, n)
 *                       out non-NULL; 0, or EINVAL unless a is a power-of-two
 *                       multiple of sizeof(void *), or ENOMEM; on failure *out
 *                       and errno are untouched.
 *   be_free(p), be_free_sized(p, n), be_free_aligned_sized(p, a, n)
 *                       p may be NULL; n is the size asked for at allocation time.
 *   be_usable_size(p)   0 for NULL.
 * All of them leave errno alone on success. */

#if defined(ALLOCSHIM_BACKEND_JEMALLOC)

/* jemalloc is linked statically, from a build-time copy of the distribution's
 * libjemalloc_pic.a in which malloc is renamed _malloc, free _free, and so on
 * (src/jemalloc_names.def lists them, cmake/AllocshimBackend.cmake says why); so the
 * forwards below are direct calls into jemalloc's own fast paths, and the entries
 * src/entries.def gives to jemalloc are jemalloc's functions themselves in the shared
 * library. Its dalloc hook runs checked mode's check on every free
 * (src/backend_jemalloc.c), those included. */
#define ALLOCSHIM_BACKEND_NAME "jemalloc"
#define BE_CHECKS_FREES        1

/* Every renamed or internal jemalloc name, declared from src/jemalloc_names.def. The
 * `direct` ones (_malloc, _calloc, _aligned_alloc, _free) are not hidden: a name the
 * link gives to one of these takes its visibility, and must be exported. The version
 * script keeps the underscore names themselves out of sight. */
#include "jemalloc_names.h"

/* jemalloc's flag for "aligned to 2^k" is k itself (MALLOCX_LG_ALIGN). */
#define BE_JE_ALIGN(a) ((int)__builtin_ctzl((unsigned long)(a)))

/* jemalloc 5.3 meets the contract as it is, but for realloc: a request above
 * PTRDIFF_MAX fails there without setting errno. */
#define be_malloc(n)    _malloc(n)
#define be_calloc(c, n) _calloc((c), (n))
static inline void *be_realloc(void *p, size_t n) {
  void *q = _realloc(p, n);
  if (ALLOC_UNLIKELY(q == NULL))
    errno = ENOMEM;
  return q;
}
#define be_aligned(a, n)             _aligned_alloc((a), (n))
#define be_posix_memalign(out, a, n) _posix_memalign((out), (a), (n))
#define be_free(p)                   _free(p)
#define be_usable_size(p)            _malloc_usable_size(p)

/* sdallocx() has no NULL check of its own, and with an alignment it must be told the
 * size jemalloc used: a zero-byte request was served as one byte, which matters once
 * alignment rounds it up (aligned_alloc(256, 0) is a 256-byte block; sdallocx(p, 0,
 * 256) would free an 8-byte one and corrupt the heap). Unaligned, size 0 already
 * names the smallest class, which is what malloc(0) got. */
static inline void be_free_sized(void *p, size_t n) {
  if (ALLOC_LIKELY(p != NULL))
    je_je_sdallocx_noflags(p, n);
}
static inline void be_free_aligned_sized(void *p, size_t a, size_t n) {
  if (ALLOC_LIKELY(p != NULL))
    _sdallocx(p, n + (n == 0), BE_JE_ALIGN(a));
}

#elif defined(ALLOCSHIM_BACKEND_MIMALLOC)

#include <mimalloc.h>
#define ALLOCSHIM_BACKEND_NAME         "mimalloc"
#define BE_CHECKS_FREES                0 /* no hook: the frees go through glue.h's table */

/* mimalloc 2.0.9 returns NULL without setting errno for requests above PTRDIFF_MAX
 * and for failed aligned requests. It reports them to its error handler, which
 * src/backend_mimalloc.c points at errno = ENOMEM, so malloc and realloc are plain
 * calls. calloc's overflow it reports only in debug builds: checked here. */
static inline void *be_enomem(void) {
  errno = ENOMEM;
  return NULL;
}
#define be_malloc(n)                   mi_malloc(n)
static inline void *be_calloc(size_t c, size_t n) {
  size_t total;
  if (ALLOC_UNLIKELY(__builtin_mul_overflow(c, n, &total)))
    return be_enomem();
  return mi_calloc(c, n);
}
#define be_realloc(p, n)               mi_realloc((p), (n))
/* mimalloc 2.0.9 serves an aligned request whose size is a multiple of the alignment
 * from its plain size classes, taking those blocks to be aligned; they are not always
 * (mi_malloc_aligned(256, 256) can end in 0x80). One byte more takes its aligned path. */
static inline void *be_aligned(size_t a, size_t n) {
  size_t ask = (a > 16 && n != 0 && (n & (a - 1)) == 0) ? n + 1 : n;
  return ask > PTRDIFF_MAX ? be_enomem() : mi_malloc_aligned(ask, a);
}
/* mimalloc's own posix_memalign has the alignment bug above and sets errno. */
static inline int be_posix_memalign(void **out, size_t a, size_t n) {
  if (!be_pow2(a) || a % sizeof(void *) != 0)
    return EINVAL;
  int saved = errno;
  void *p = be_aligned(a, n);
  if (ALLOC_UNLIKELY(p == NULL)) {
    errno = saved;
    return ENOMEM;
  }
  *out = p;
  return 0;
}
/* The frees as functions, for checked mode's table (glue.h), in mimalloc's order. */
#define BE_FREE_FUNCTIONS              mi_free, mi_free_size, mi_free_size_aligned
#define be_free(p)                     mi_free(p)
#define be_free_sized(p, n)            mi_free_size((p), (n))
#define be_free_aligned_sized(p, a, n) mi_free_size_aligned((p), (n), (a))
#define be_usable_size(p)              mi_usable_size(p)

#else
#error "cmake/AllocshimBackend.cmake must define ALLOCSHIM_BACKEND_JEMALLOC or _MIMALLOC"
#endif

/* Implemented once per backend, in src/backend_<name>.c. */
struct alloc_stats;
void be_start(void);                    /* once, from the library's constructor */
bool be_owns(const void *p);            /* false only if p is surely not the backend's */
bool be_check_start(void);              /* checked mode starting: false if it cannot check */
const char *be_version(void);           /* the backend's own version string */
int be_profile_status(void);            /* ALLOC_OK, ALLOC_EPROFOFF or ALLOC_ENOTSUP */
int be_profile_dump(int fd);            /* the whole profile into fd: 0, or -1 */
int be_profile_activate(bool active);   /* 0, or -1 */
bool be_profile_thread(bool on);        /* sampling in the calling thread: true if changed */
void be_stats(struct alloc_stats *out); /* every field, ALLOC_STAT_UNKNOWN where unknown */
bool be_purge(void);                    /* return free memory; true if any went back */
size_t be_returned_bytes(void);         /* given back to the OS so far, or ALLOC_STAT_UNKNOWN */
/* The one frame of a sample the profiler could not unwind (taken in the main thread
 * before the library's constructor ran), while it can unwind the rest; 0 where it cannot
 * unwind at all. */
uintptr_t be_profile_early_frame(void);

#endif /* ALLOCSHIM_BACKEND_H */
