/* Checked mode (ALLOCSHIM_CHECK=1): free, realloc and malloc_usable_size make sure a
 * pointer is the backend's before the backend touches it, and abort naming the cause. */
#define _GNU_SOURCE
#include "check.h"

#include "backend.h"
#include "glue.h"
#include "internal.h"

#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool check_on;

bool check_enabled(void) {
  /* Asked first from inside the backend's start-up, before any constructor. */
  static atomic_int mode = -1;
  int m = atomic_load_explicit(&mode, memory_order_relaxed);
  if (m < 0) {
    m = allocshim_env_flag("CHECK");
    atomic_store_explicit(&mode, m, memory_order_relaxed);
  }
  return m != 0;
}

void check_pointer(const char *op, const void *p) {
  if (p == NULL)
    return;
  if (!be_owns(p)) {
    allocshim_say("%s(%p): this pointer was not allocated by %s, the allocator behind "
                  "allocshim (ALLOCSHIM_CHECK=1). Likely causes: it came from another allocator "
                  "in the process (glibc's malloc reached directly, a statically linked copy "
                  "of libc, or a library dlopen()ed with RTLD_DEEPBIND while "
                  "ALLOCSHIM_DEEPBIND=1), or it never came from malloc (a stack or static "
                  "address, a pointer into the middle of a block, a double free of a block "
                  "whose memory was returned to the system). Aborting.",
                  op, p, ALLOCSHIM_BACKEND_NAME);
    abort();
  }
  const void *start = NULL;
  switch (be_check_block(p, &start)) {
  case CHECK_BLOCK_OK:
    return;
  case CHECK_BLOCK_INTERIOR:
    allocshim_say("%s(%p): a pointer into the middle of a block: the block %s handed out "
                  "starts at %p, %td bytes before it (ALLOCSHIM_CHECK=1). Aborting.",
                  op, p, ALLOCSHIM_BACKEND_NAME, start, (const char *)p - (const char *)start);
    break;
  case CHECK_BLOCK_FREED:
    allocshim_say("%s(%p): double free: this block was already freed (a second free, or a "
                  "use after free) (ALLOCSHIM_CHECK=1). Aborting.",
                  op, p);
    break;
  case CHECK_BLOCK_NONE:
    allocshim_say("%s(%p): this pointer is in memory %s mapped but at no block it handed "
                  "out. Likely causes: a double free (the block's memory was freed and "
                  "reused), a pointer into the middle of a block, or a wild pointer into the "
                  "allocator's own bookkeeping (ALLOCSHIM_CHECK=1). Aborting.",
                  op, p, ALLOCSHIM_BACKEND_NAME);
    break;
  }
  abort();
}

/* A fork child has one thread; a lookup another thread was doing holds the lock no
 * more. A change another thread was making may be half done (jemalloc maps some memory
 * with none of its locks held): then the child trusts every pointer rather than call a
 * valid one foreign. */
static void ranges_after_fork(void);

/* The checking versions of glue.h's table: the check, then the plain operation. */
static void *checked_realloc(void *p, size_t n) {
  check_pointer("realloc", p);
  return glue_realloc_plain(p, n);
}
static size_t checked_usable_size(void *p) {
  check_pointer("malloc_usable_size", p);
  return glue_usable_size_plain(p);
}
#if !BE_CHECKS_FREES
static const struct glue_ops plain_ops = {NULL, NULL, BE_FREE_FUNCTIONS};
static void checked_free(void *p) {
  check_pointer("free", p);
  plain_ops.free(p);
}
static void checked_free_sized(void *p, size_t n) {
  check_pointer("free", p);
  plain_ops.free_sized(p, n);
}
static void checked_free_aligned_sized(void *p, size_t n, size_t align) {
  check_pointer("free", p);
  plain_ops.free_aligned_sized(p, n, align);
}
#endif

/* The part of [lo, hi) the dynamic linker made read-only (RELRO), as it computes it:
 * whole pages only, so a partial last page stays writable. */
struct relro_query {
  uintptr_t lo, hi;       /* in: the table */
  uintptr_t ro_lo, ro_hi; /* out: read-only pages overlapping it, or empty */
};

static int find_relro(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct relro_query *q = arg;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_GNU_RELRO)
      continue;
    uintptr_t start = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
    uintptr_t end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(page - 1);
    if (q->lo < end && start < q->hi) {
      q->ro_lo = q->lo > start ? q->lo & ~(page - 1) : start;
      q->ro_hi = q->hi < end ? (q->hi + page - 1) & ~(page - 1) : end;
      return 1;
    }
  }
  return 0;
}

/* Points glue.h's table at the checking versions. A thread started by an earlier
 * constructor may be calling through it: whole-pointer stores. */
static bool ops_check(void) {
  struct relro_query q = {(uintptr_t)&glue_ops, (uintptr_t)(&glue_ops + 1), 0, 0};
  dl_iterate_phdr(find_relro, &q);
  size_t ro = q.ro_hi - q.ro_lo;
  if (ro != 0 && mprotect((void *)q.ro_lo, ro, PROT_READ | PROT_WRITE) != 0)
    return false;
  __atomic_store_n(&glue_ops.realloc, checked_realloc, __ATOMIC_RELEASE);
  __atomic_store_n(&glue_ops.usable_size, checked_usable_size, __ATOMIC_RELEASE);
#if !BE_CHECKS_FREES
  __atomic_store_n(&glue_ops.free, checked_free, __ATOMIC_RELEASE);
  __atomic_store_n(&glue_ops.free_sized, checked_free_sized, __ATOMIC_RELEASE);
  __atomic_store_n(&glue_ops.free_aligned_sized, checked_free_aligned_sized, __ATOMIC_RELEASE);
#endif
  if (ro != 0)
    mprotect((void *)q.ro_lo, ro, PROT_READ);
  return true;
}

void check_start(void) {
  if (!check_enabled())
    return;
  if (!be_check_start() || !ops_check()) {
    allocshim_say("ALLOCSHIM_CHECK=1: %s cannot check pointers in this build; running unchecked",
                  ALLOCSHIM_BACKEND_NAME);
    return;
  }
  pthread_atfork(NULL, NULL, ranges_after_fork);
  __atomic_store_n(&check_on, true, __ATOMIC_RELEASE);
}

/* ---- The address ranges a backend mapped ---------------------------------------------
 * Sorted and disjoint. Mappings are rare (jemalloc grows its reserve geometrically), so
 * a lock and a linear shift cost nothing that matters; lookups binary-search. */
enum { RANGES_MAX = 8192 };
static struct range { uintptr_t lo, hi; } ranges[RANGES_MAX];
static size_t nranges;
static bool ranges_overflowed; /* then nothing can be called foreign */
/* Every checked free reads the table, from every thread at once: a reader-writer lock,
 * and one where a waiting mapping is not starved by a stream of frees. */
#if defined(PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP)
#define RANGES_LOCK_INIT PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
#else
#define RANGES_LOCK_INIT PTHREAD_RWLOCK_INITIALIZER
#endif
static pthread_rwlock_t ranges_lock = RANGES_LOCK_INIT;
static atomic_bool ranges_changing; /* set under the write lock; read after fork */

/* The first range whose end reaches lo. */
static size_t ranges_find(uintptr_t lo) {
  size_t a = 0, b = nranges;
  while (a < b) {
    size_t mid = a + (b - a) / 2;
    if (ranges[mid].hi < lo)
      a = mid + 1;
    else
      b = mid;
  }
  return a;
}

static void ranges_insert_at(size_t i, uintptr_t lo, uintptr_t hi) {
  if (nranges == RANGES_MAX) {
    ranges_overflowed = true;
    return;
  }
  memmove(&ranges[i + 1], &ranges[i], (nranges - i) * sizeof ranges[0]);
  ranges[i] = (struct range){lo, hi};
  nranges++;
}

void check_ranges_add(const void *p, size_t len) {
  uintptr_t lo = (uintptr_t)p, hi = lo + len;
  pthread_rwlock_wrlock(&ranges_lock);
  atomic_store(&ranges_changing, true);
  size_t i = ranges_find(lo), j = i;
  /* Merge every range this one overlaps or touches. */
  while (j < nranges && ranges[j].lo <= hi) {
    lo = ranges[j].lo < lo ? ranges[j].lo : lo;
    hi = ranges[j].hi > hi ? ranges[j].hi : hi;
    j++;
  }
  if (j == i) {
    ranges_insert_at(i, lo, hi);
  } else {
    ranges[i] = (struct range){lo, hi};
    memmove(&ranges[i + 1], &ranges[j], (nranges - j) * sizeof ranges[0]);
    nranges -= j - i - 1;
  }
  atomic_store(&ranges_changing, false);
  pthread_rwlock_unlock(&ranges_lock);
}

void check_ranges_remove(const void *p, size_t len) {
  uintptr_t lo = (uintptr_t)p, hi = lo + len;
  pthread_rwlock_wrlock(&ranges_lock);
  atomic_store(&ranges_changing, true);
  for (size_t i = ranges_find(lo + 1); i < nranges && ranges[i].lo < hi;) {
    struct range r = ranges[i];
    if (r.lo < lo && r.hi > hi) { /* a hole in the middle: split */
      ranges[i].hi = lo;
      ranges_insert_at(i + 1, hi, r.hi);
      break;
    }
    if (r.lo < lo) {
      ranges[i++].hi = lo;
    } else if (r.hi > hi) {
      ranges[i].lo = hi;
      break;
    } else {
      memmove(&ranges[i], &ranges[i + 1], (nranges - i - 1) * sizeof ranges[0]);
      nranges--;
    }
  }
  atomic_store(&ranges_changing, false);
  pthread_rwlock_unlock(&ranges_lock);
}

bool check_ranges_hold(const void *p) {
  uintptr_t a = (uintptr_t)p;
  pthread_rwlock_rdlock(&ranges_lock);
  size_t i = ranges_find(a + 1);
  bool held = ranges_overflowed || (i < nranges && ranges[i].lo <= a && a < ranges[i].hi);
  pthread_rwlock_unlock(&ranges_lock);
  return held;
}

bool check_ranges_start(const void *p, const void **lo) {
  uintptr_t a = (uintptr_t)p;
  pthread_rwlock_rdlock(&ranges_lock);
  size_t i = ranges_find(a + 1);
  bool found = !ranges_overflowed && i < nranges && ranges[i].lo <= a && a < ranges[i].hi;
  if (found)
    *lo = (const void *)ranges[i].lo;
  pthread_rwlock_unlock(&ranges_lock);
  return found;
}

static void ranges_after_fork(void) {
  pthread_rwlock_t fresh = RANGES_LOCK_INIT;
  ranges_lock = fresh;
  if (atomic_load(&ranges_changing)) {
    ranges_overflowed = true;
    atomic_store(&ranges_changing, false);
  }
}
