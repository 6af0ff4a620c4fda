/* mimalloc's half of the backend: errors, checked mode, version and statistics.
 * mimalloc has no heap profiler, so the profiling calls report ALLOC_ENOTSUP. */
#define _GNU_SOURCE
#include "backend.h"
#include "check.h"
#include "internal.h"

#include <allocshim.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

/* In .data.rel.ro: the dynamic linker fills it in, then makes it read-only. */
__attribute__((section(".data.rel.ro"))) struct be_mi_frees be_mi = {mi_free, mi_free_size,
                                                                     mi_free_size_aligned};

#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
/* mimalloc's MIMALLOC_* options come from environ, read through this (the build
 * renames mimalloc's one use of environ; cmake/AllocshimBackend.cmake): a setuid or
 * setgid program sees no environment there, as it would through secure_getenv.
 * AT_SECURE is what secure_getenv asks, and is readable before libc has started,
 * which is when mimalloc may first look. */
char ***allocshim_mi_environ(void);
char ***allocshim_mi_environ(void) {
  static char **none = NULL;
  return getauxval(AT_SECURE) ? &none : &environ;
}
#endif

/* mimalloc's out-of-memory and size-overflow reports become errno, as glibc sets it;
 * other reports (a bad free, say) keep mimalloc's default handling, which in a
 * release build is to say nothing. Set when the library loads, before main. */
static void errno_from_mimalloc(int err, void *arg) {
  (void)arg;
  if (err == ENOMEM || err == EOVERFLOW)
    errno = ENOMEM;
}

void be_start(void) { mi_register_error(errno_from_mimalloc, NULL); }

/* ---- Checked mode ---------------------------------------------------------------------
 * mimalloc keeps a map of its segments, safe to ask about any address. On 64-bit
 * targets it leaves out blocks above 1 GiB (mapped without its address hint, beyond
 * the map's reach); those are 64 KiB-aligned, which no glibc or stack pointer is, so
 * such pointers pass, as does anything this thread's heap owns. On 32-bit targets the
 * map misses large blocks of every size, so checked mode is not offered there. */
bool be_owns(const void *p) {
  return mi_is_in_heap_region(p) || (uintptr_t)p % 65536 == 0 || mi_check_owned(p);
}

static void checked_free(void *p) {
  check_pointer("free", p);
  mi_free(p);
}
static void checked_free_size(void *p, size_t n) {
  check_pointer("free", p);
  mi_free_size(p, n);
}
static void checked_free_size_aligned(void *p, size_t n, size_t a) {
  check_pointer("free", p);
  mi_free_size_aligned(p, n, a);
}

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

bool be_check_start(void) {
  if (sizeof(void *) < 8)
    return false;
  struct relro_query q = {(uintptr_t)&be_mi, (uintptr_t)(&be_mi + 1), 0, 0};
  dl_iterate_phdr(find_relro, &q);
  size_t ro = q.ro_hi - q.ro_lo;
  if (ro != 0 && mprotect((void *)q.ro_lo, ro, PROT_READ | PROT_WRITE) != 0)
    return false;
  /* A thread started by an earlier constructor may be freeing: whole-pointer stores. */
  __atomic_store_n(&be_mi.free, checked_free, __ATOMIC_RELEASE);
  __atomic_store_n(&be_mi.free_size, checked_free_size, __ATOMIC_RELEASE);
  __atomic_store_n(&be_mi.free_size_aligned, checked_free_size_aligned, __ATOMIC_RELEASE);
  if (ro != 0)
    mprotect((void *)q.ro_lo, ro, PROT_READ);
  return true;
}

const char *be_version(void) {
  static char text[32];
  int v = mi_version(); /* 209 means 2.0.9 */
  snprintf(text, sizeof text, "%d.%d.%d", v / 100, v / 10 % 10, v % 10);
  return text;
}

int be_profile_status(void) { return ALLOC_ENOTSUP; }

int be_profile_dump(int fd) {
  (void)fd;
  return -1;
}

int be_profile_activate(bool active) {
  (void)active;
  return -1;
}

/* The process's resident set, from /proc without stdio (no allocation). */
static size_t resident_bytes(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
  if (fd >= 0)
    close(fd);
  if (n <= 0)
    return ALLOC_STAT_UNKNOWN;
  buf[n] = '\0';
  char *p = buf;
  strtoull(p, &p, 10); /* total program size; resident comes next */
  return (size_t)strtoull(p, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t committed_bytes(void) {
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  return commit;
}

void be_stats(alloc_stats_t *out) {
  out->allocated = ALLOC_STAT_UNKNOWN; /* release builds keep no live-byte count */
  out->active = committed_bytes();
  out->resident = resident_bytes();
  out->mapped = ALLOC_STAT_UNKNOWN;
  out->retained = ALLOC_STAT_UNKNOWN;
}

bool be_purge(void) {
  size_t before = committed_bytes(), rss = resident_bytes();
  mi_collect(true);
  return committed_bytes() < before || resident_bytes() < rss;
}
