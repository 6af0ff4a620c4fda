/* The libc calls of the compiled-in mimalloc that land in the shim instead: this header
 * is forced into mimalloc's one translation unit, and src/backend_mimalloc.c defines them.
 *   environ        a setuid program's MIMALLOC_ options are not read (secure_getenv's rule)
 *   mmap, mprotect what mimalloc commits: idle return's thread starts past a mark
 *   munmap,madvise what mimalloc gives back is held back a while for the next block: a
 *                  huge block's mapping (a later mmap takes it), a large block's
 *                  decommitted pages (a later mprotect, mimalloc's commit, keeps them);
 *                  madvise is told its caller, for only a decommit may be held back
 *   clock_gettime  read exactly when mimalloc schedules or runs a delayed decommit: it
 *                  wakes that thread
 *   access         mimalloc counts NUMA nodes, in the program's first allocation, until
 *                  one is missing: that call's errno is not the program's to see
 * and one of mimalloc's own functions is renamed, for the shim's to take its name:
 *   mi_collect     a forced collect gives back what the shim holds back too
 * The macros take arguments, so the C library's own declarations above keep their names
 * (large-file mmap stays mmap64's alias) and these prototypes hold on both sides. */
#ifndef ALLOCSHIM_MIMALLOC_HOOKS_H
#define ALLOCSHIM_MIMALLOC_HOOKS_H

#include <stdbool.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

char ***allocshim_mi_environ(void);
void *allocshim_mi_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int allocshim_mi_mprotect(void *addr, size_t len, int prot);
int allocshim_mi_munmap(void *addr, size_t len);
int allocshim_mi_madvise(void *addr, size_t len, int advice, const char *caller);
int allocshim_mi_clock_gettime(clockid_t clock, struct timespec *ts);
int allocshim_mi_access(const char *path, int mode);
void allocshim_mi_collect_inner(bool force);

#if defined(ALLOCSHIM_MIMALLOC_HOOKED) /* mimalloc's translation unit only */
#define environ                 (*allocshim_mi_environ())
#define mmap(a, n, p, f, fd, o) allocshim_mi_mmap((a), (n), (p), (f), (fd), (o))
#define mprotect(a, n, p)       allocshim_mi_mprotect((a), (n), (p))
#define munmap(a, n)            allocshim_mi_munmap((a), (n))
#define madvise(a, n, adv)      allocshim_mi_madvise((a), (n), (adv), __func__)
#define clock_gettime(c, ts)    allocshim_mi_clock_gettime((c), (ts))
#define access(path, mode)      allocshim_mi_access((path), (mode))
#define mi_collect(force)       allocshim_mi_collect_inner(force)
#endif

#endif
