/* Tests for src/backend_mimalloc.c: its version string, the not-supported answers
 * for profiling, which statistics it knows, how its idle-return thread starts, and the
 * huge blocks' mappings it keeps for reuse. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000 /* Linux's, where the C library's headers are older */
#endif

#include "backend.h"
#include "check.h"
#include "internal.h"
#include "mimalloc_hooks.h" /* the hooks' prototypes; mimalloc's calls are not renamed here */
#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
#include "mimalloc_internals.h" /* a segment header's layout, which mimalloc zeroes */
#endif
#include "test_owns.h"
#include "test_util.h"

static void test_version(void **state) {
  (void)state;
  char want[32];
  int v = mi_version();
  snprintf(want, sizeof want, "%d.%d.%d", v / 100, v / 10 % 10, v % 10);
  assert_string_equal(be_version(), want);
  assert_string_equal(alloc_backend_version(), want);
}

static void test_profiling_not_supported(void **state) {
  (void)state;
  assert_int_equal(be_profile_status(), ALLOC_ENOTSUP);
  assert_int_equal(alloc_profile_supported(), ALLOC_ENOTSUP);
  int fd = memfd_create("never-written", MFD_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(be_profile_dump(fd), -1);
  struct stat sb;
  assert_int_equal(fstat(fd, &sb), 0);
  assert_int_equal(sb.st_size, 0);
  close(fd);
  assert_false(be_profile_thread(false)); /* nothing to switch: nothing changed */
}

/* What mimalloc can and cannot say, marked as such. */
static void test_stats_fields(void **state) {
  (void)state;
  alloc_stats_t st;
  be_stats(&st);
  assert_true(st.allocated == ALLOC_STAT_UNKNOWN);
  assert_true(st.mapped == ALLOC_STAT_UNKNOWN);
  assert_true(st.retained == ALLOC_STAT_UNKNOWN);
  assert_true(st.active != ALLOC_STAT_UNKNOWN && st.active > 0);
  assert_true(st.resident != ALLOC_STAT_UNKNOWN && st.resident > 0);
}

/* mimalloc 2.0.9's own committed count gains about a MiB on each huge block of a new
 * size freed. What the shim reads as committed (active here, and idle return's mark,
 * which decides whether a thread starts) stays within what mimalloc has mapped: one
 * block of 17-25 MiB at a time, replaced 400 times, leaves it within 50 MiB of what
 * was mapped before (about 400 MiB over without the bound). Compiled in only. */
static void test_active_bounded(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  const size_t mib = 1 << 20;
  be_purge();
  const size_t mapped = (size_t)__atomic_load_n(&_mi_stats_main.reserved.current, __ATOMIC_RELAXED);
  for (size_t i = 0; i < 400; i++) {
    uint8_t *p = malloc(17 * mib + (i * 7 % 9) * mib + i % 16 * 4096);
    assert_non_null(p);
    p[0] = 1;
    free(opaque_ptr(p));
  }
  alloc_stats_t after;
  be_stats(&after);
  assert_true(after.active <= mapped + 50 * mib);
#endif
}

/* mimalloc answers for itself, checked mode on or off; on 64-bit targets only (its
 * segment map misses large blocks on 32-bit ones, where checked mode is refused). */
static void test_owns(void **state) {
  (void)state;
  if (sizeof(void *) < 8) {
    assert_false(be_check_start());
    skip();
  }
  assert_owns_own_and_only_own();
}

/* mimalloc calls its deferred-free function after testing the pointer and loading it
 * again, so the shim may set it but never clear it while another thread could be
 * between the two loads. Every registration is seen here; crossing the mark then
 * starts the idle-return thread, with none of them a NULL. */
static atomic_int null_registrations, registrations;
void __real_mi_register_deferred_free(mi_deferred_free_fun *fn, void *arg);
void __wrap_mi_register_deferred_free(mi_deferred_free_fun *fn, void *arg) {
  atomic_fetch_add(fn == NULL ? &null_registrations : &registrations, 1);
  __real_mi_register_deferred_free(fn, arg);
}

static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* MiB committed and freed, past the 64 MiB mark; then slow paths, where the thread is
 * started, until it runs (5 s at most): whether it did. */
static bool cross_the_mark(int threads_before, int mib) {
  enum { BLOCKS = 256, BLOCK = 1 << 20 };
  static char *blocks[BLOCKS];
  for (int i = 0; i < mib; i++) {
    blocks[i] = malloc(BLOCK);
    if (blocks[i] == NULL)
      return false;
    memset(blocks[i], 1, BLOCK);
  }
  for (int i = 0; i < mib; i++)
    free(blocks[i]);
  for (int round = 0; round < 500 && thread_count() == threads_before; round++) {
    for (int i = 0; i < 4096; i++)
      free(malloc(16 + (size_t)(i % 64) * 64));
    usleep(10000);
  }
  return thread_count() == threads_before + 1;
}

/* Through libmimalloc.so the mark is read every 256th slow path, from mimalloc's own
 * committed count; under ALLOCSHIM_PURGE=0 mimalloc decommits as it frees, the count
 * drops under the mark before the next read, and what the thread would return is gone. */
static bool mark_unseen(void) {
#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
  return false;
#else
  return allocshim_purge_setting() == 0;
#endif
}

static void test_deferred_free_kept(void **state) {
  (void)state;
  if (mark_unseen())
    skip();
  /* 2 under qemu-user, which has a thread of its own. */
  int before = thread_count();
  assert_true(cross_the_mark(before, 96));
  assert_true(atomic_load(&registrations) >= 1);
  assert_int_equal(atomic_load(&null_registrations), 0);
}

/* After the above: a forked child starts its own thread past its own mark (64 MiB more
 * than it had at the fork, which may still hold the 96 freed), the call never cleared.
 * Not under qemu-user, which aborts when a forked child starts a thread. */
static void test_deferred_free_kept_in_child(void **state) {
  (void)state;
#if defined(ALLOCSHIM_TEST_EMULATED)
  skip();
#endif
  if (mark_unseen())
    skip();
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(cross_the_mark(thread_count(), 192) && atomic_load(&null_registrations) == 0 ? 0 : 1);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The permissions /proc/self/maps gives the mapping holding p ("rw-p"), or "" for an
 * address nothing maps. */
static const char *perms_at(const void *p) {
  static char perms[8];
  perms[0] = '\0';
  FILE *f = fopen("/proc/self/maps", "r");
  assert_non_null(f);
  unsigned long lo, hi;
  char line[512], mode[8];
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, mode) == 3 && (uintptr_t)p >= lo &&
        (uintptr_t)p < hi) {
      snprintf(perms, sizeof perms, "%s", mode);
      break;
    }
  fclose(f);
  return perms;
}

#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
/* A mapping of the test's own, aligned as mimalloc's segments are (every segment size
 * divides 64 MiB). */
static uint8_t *aligned_map(size_t len, int prot) {
  const size_t align = 64 << 20;
  uint8_t *area = mmap(NULL, len + align, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  assert_true(area != MAP_FAILED);
  uint8_t *at = (uint8_t *)(((uintptr_t)area + align - 1) & ~(uintptr_t)(align - 1));
  if (at > area)
    assert_int_equal(munmap(area, (size_t)(at - area)), 0);
  assert_int_equal(munmap(at + len, (size_t)(area + align - at)), 0);
  return at;
}

/* A read-write mapping of the test's own, every byte `fill`, handed to the shim as
 * mimalloc unmaps one: held back, where the shim holds anything. */
static uint8_t *held_mapping(size_t len, int fill) {
  uint8_t *m = aligned_map(len, PROT_READ | PROT_WRITE);
  memset(m, fill, len);
  assert_int_equal(allocshim_mi_munmap(m, len), 0);
  return m;
}

/* Whether holes and PROT_NONE mappings behave as on Linux: not for a 32-bit guest of
 * qemu-user, which keeps the guest's whole address space reserved in the host
 * (reserved_va). Its mprotect takes a hole as mapped, MAP_FIXED_NOREPLACE takes its
 * address as a hint only, and its /proc/self/maps shows no PROT_NONE mapping. */
static bool holes_as_linux(void) {
#if defined(ALLOCSHIM_TEST_EMULATED)
  return sizeof(void *) == 8;
#else
  return true;
#endif
}

/* Skips the test where nothing is held back; else starts it with nothing held. */
static void from_nothing_held(void) {
  if (holding_off())
    skip();
  be_purge();
}

/* Nothing maps [at, at+len), but where [but, but+but_len) does, checked each MiB. */
static void unmapped_but_for(const uint8_t *at, size_t len, const uint8_t *but, size_t but_len) {
  for (const uint8_t *q = at; q < at + len; q += 1 << 20)
    if (q < but || q >= but + but_len)
      assert_string_equal(perms_at(q), "");
}
#endif

/* Page faults this process has taken so far. */
static long faults(void) {
  struct rusage ru;
  assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
  return ru.ru_minflt;
}

/* Natively, fewer than `limit` page faults taken since `before`; under an emulator,
 * whose faults are its own, nothing is checked. */
static void faults_below(long before, long limit) {
#if !defined(ALLOCSHIM_TEST_EMULATED)
  assert_true(faults() - before < limit);
#else
  (void)before;
  (void)limit;
#endif
}

/* The pages of the system's size in len bytes. */
static long pages(size_t len) { return (long)(len / (size_t)sysconf(_SC_PAGESIZE)); }

/* After test_deferred_free_kept (idle return running), and from nothing held back: a
 * huge block's mapping (over 16 MiB, each mapped alone) is held back when the block is
 * freed, called freed by checked mode, and becomes the next huge block's, its pages
 * resident (natively, a fraction of the faults a fresh mapping takes): its head for a
 * smaller block, with its tail left held, and with another held piece for a larger
 * one. calloc's block is zero (mimalloc zeroes it); malloc's keeps what the freed block
 * held, as glibc's recycled chunks do: the shim zeroes only mimalloc's segment header,
 * not megabytes it would zero again. What is taken moves to a new address: the freed
 * block's start is unmapped, so a late free of it faults as it would have without the
 * shim, and no address of a freed block ever reaches a new one. malloc_trim(0)
 * (be_purge) unmaps what is held. In the runs where holding_off() nothing is held; nor
 * through libmimalloc.so. */
static void test_retained_mapping(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#endif
  const size_t mib = 1 << 20, big = 40 * mib, small = 20 * mib, grown = 28 * mib;
  be_purge();
  /* Over 64 MiB: unmapped at once, though the budget, two thirds of what mimalloc
   * has committed, has room for it beside a 720 MiB block (mapped, never touched). */
  uint8_t *room = malloc(720 * mib), *huge = malloc(80 * mib);
  assert_non_null(huge);
  const uintptr_t huge_at = (uintptr_t)huge;
  free(opaque_ptr(huge));
  assert_string_equal(perms_at((void *)huge_at), "");
  free(room); /* NULL where the address space or the commit limit has no room */
  be_purge();
  uint8_t *p = malloc(big);
  assert_non_null(p);
  const uintptr_t at = (uintptr_t)p; /* compared after the free, not used */
  memset(p, 0xa5, big);
  free(opaque_ptr(p));
  if (holding_off()) { /* memory asked back in its own time: nothing held */
    assert_string_equal(perms_at((void *)at), "");
    return;
  }
  assert_string_equal(perms_at((void *)at), "rw-p");
  const void *start = NULL;
  assert_int_equal(be_check_block((void *)at, &start), CHECK_BLOCK_FREED);
  const long before = faults();
  uint8_t *q = calloc(1, big);
  assert_non_null(q);
  assert_true(all_zero(q, big));
  faults_below(before, pages(big) / 4);
  assert_true((uintptr_t)q != at);
  assert_string_equal(perms_at((void *)at), ""); /* moved away: a late free faults */
  memset(q, 0x5a, big);
  const uintptr_t second = (uintptr_t)q;
  free(opaque_ptr(q));
  /* The head: the block fits, not rewritten on the way; the tail stays held. */
  q = malloc(small);
  assert_non_null(q);
  assert_int_equal(q[small / 2], 0x5a);
  assert_int_equal(q[small - 1], 0x5a);
  assert_true((uintptr_t)q != second);
  assert_string_equal(perms_at((void *)second), "");
  assert_string_equal(perms_at((void *)second + big - mib), "rw-p");
  memset(q, 0x3c, small);
  free(opaque_ptr(q));
  /* Larger: the block just freed and that tail, each as it was, and resident where it
   * was written (a segment is longer than its block: the rest reads as zero). */
  const long held_faults = faults();
  q = malloc(grown);
  assert_non_null(q);
  int seen = 0;
  long zero_pages = 0;
  for (size_t i = 64 << 10; i < grown; i += 4096) { /* past mimalloc's header */
    seen |= q[i] == 0x3c ? 1 : q[i] == 0x5a ? 2 : 0;
    zero_pages += q[i] == 0;
  }
  assert_int_equal(seen, 3);
  faults_below(held_faults, zero_pages + pages(grown) / 8);
  /* calloc on both paths: zero all through, whatever the held mapping kept. */
  memset(q, 0x77, grown);
  uintptr_t freed = (uintptr_t)q;
  free(opaque_ptr(q));
  q = calloc(1, small); /* the head of the 28 MiB just freed */
  assert_non_null(q);
  assert_string_equal(perms_at((void *)freed), ""); /* taken, not left held */
  assert_true(all_zero(q, small));
  memset(q, 0x66, small);
  freed = (uintptr_t)q;
  free(opaque_ptr(q));
  q = calloc(1, grown); /* the 20 MiB just freed, and another piece */
  assert_non_null(q);
  assert_string_equal(perms_at((void *)freed), "");
  assert_true(all_zero(q, grown));
  const uintptr_t last = (uintptr_t)q;
  free(opaque_ptr(q));
  assert_string_equal(perms_at((void *)last), "rw-p");
  be_purge();
  assert_string_equal(perms_at((void *)last), "");
}

/* A mapping mimalloc made PROT_NONE and opened only in part (a segment it commits
 * lazily), held back when it is unmapped: handed back, moved to a new address, it is
 * read-write all through (the hook's zeroing crashed on it before), with each
 * segment's header zero, as mimalloc takes a new mapping's to be, and the rest as it
 * was. Called here as mimalloc's hooks are, on mappings of the test's own, 64 MiB-aligned
 * as every segment size divides. */
static void test_retained_mapping_opened(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  from_nothing_held();
  const size_t mib = 1 << 20, len = 24 * mib, seg_size = (sizeof(void *) == 8 ? 32 : 4) * mib;
  const size_t header = 8 << 10; /* at most this much of a header is checked */
  const int anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  uint8_t *seg = aligned_map(len, PROT_NONE);
  assert_int_equal(mprotect(seg, mib, PROT_READ | PROT_WRITE), 0);
  memset(seg, 0x11, mib);
  assert_int_equal(allocshim_mi_munmap(seg, len), 0);
  assert_string_equal(perms_at(seg), "rw-p"); /* held back, not unmapped */
  uint8_t *p = allocshim_mi_mmap(NULL, len, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(p != MAP_FAILED && p != seg);
  assert_int_equal((uintptr_t)p % seg_size, 0); /* a segment's boundary */
  assert_string_equal(perms_at(seg), "");       /* moved, not copied */
  assert_string_equal(perms_at(p), "rw-p");
  assert_string_equal(perms_at(p + len - 1), "rw-p");
  assert_true(all_zero(p, header));
  assert_int_equal(p[mib - 1], 0x11);
  assert_true(all_zero(p + mib, len - mib)); /* never opened: the kernel's zero pages */
  assert_int_equal(allocshim_mi_munmap(p, len), 0);
  be_purge();
  assert_string_equal(perms_at(p), "");

  /* One and a half segments, written all through (an arena's memory has a segment at
   * each boundary): both headers zeroed, nothing else. */
  const size_t two = seg_size + seg_size / 2;
  seg = held_mapping(two, 0x22);
  p = allocshim_mi_mmap(NULL, two, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(p != MAP_FAILED && p != seg);
  assert_true(all_zero(p, header));
  assert_true(all_zero(p + seg_size, header));
  assert_int_equal(p[seg_size - 1], 0x22);
  assert_int_equal(p[two - 1], 0x22);
  assert_int_equal(allocshim_mi_munmap(p, two), 0);
  be_purge();
  assert_string_equal(perms_at(p), "");

  /* 28 MiB from a 20 MiB piece and fresh pages: zero as far as mi_segment_init leaves a
   * 28 MiB segment's header (its slice table, one record per slice of the new size, and
   * one more), though only 20 MiB held data. */
  const size_t from = 20 * mib, grown = 28 * mib;
  seg = held_mapping(from, 0x33);
  p = allocshim_mi_mmap(NULL, grown, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(p != MAP_FAILED && p != seg);
  assert_true(all_zero(p, offsetof(mi_segment_t, slices) +
                              sizeof(mi_slice_t) * (grown / MI_SEGMENT_SLICE_SIZE + 1)));
  assert_int_equal(p[from - 1], 0x33);
  assert_int_equal(allocshim_mi_munmap(p, grown), 0);
  be_purge();
#endif
}

/* A mapping longer than any held is made of several: 20 MiB of one, then the head of
 * another (to the 2 MiB after it, so that the tail left held starts where page-table
 * pages do), each as it was but for the header, and resident. Unmapped, it is held
 * back piece by piece: mremap moves nothing across the seam between two pieces before
 * Linux 6.17, and resizes nothing across one on any. Pieces that fall short are made
 * up with the kernel's zero pages. Called as mimalloc's hooks are, on mappings of the
 * test's own. */
static void test_retained_assembled(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  from_nothing_held();
  const size_t mib = 1 << 20, a_len = 20 * mib, b_len = 18 * mib, len = 30 * mib + (64 << 10);
  const int anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  uint8_t *a = held_mapping(a_len, 0x11), *b = held_mapping(b_len, 0x22);
  uint8_t *p = allocshim_mi_mmap(NULL, len, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(p != MAP_FAILED);
  assert_int_equal(p[a_len - 1], 0x11);
  assert_int_equal(p[a_len + mib], 0x22);
  assert_int_equal(p[len - 1], 0x22);
  assert_string_equal(perms_at(a), "");
  assert_string_equal(perms_at(b), "");
  assert_string_equal(perms_at(b + 11 * mib), "");     /* past the head, to 2 MiB */
  assert_string_equal(perms_at(b + 12 * mib), "rw-p"); /* the tail, 6 MiB, held */
  assert_int_equal(b[b_len - 1], 0x22);
  memset(p + a_len, 0x33, len - a_len);
  assert_int_equal(allocshim_mi_munmap(p, len), 0);

  /* 26 MiB: the 20 MiB piece and the 6 MiB tail; p's other piece stays where it is. */
  const long before = faults();
  const size_t q_len = 26 * mib;
  uint8_t *q = allocshim_mi_mmap(NULL, q_len, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(q != MAP_FAILED);
  assert_int_equal(q[a_len / 2], 0x11);
  assert_int_equal(q[a_len + mib], 0x22);
  assert_string_equal(perms_at(p + a_len), "rw-p");
  assert_string_equal(perms_at(b + 12 * mib), "");
  for (size_t i = 0; i < q_len; i += 4096)
    q[i] = 1;
  faults_below(before, pages(q_len) / 4);
  assert_int_equal(allocshim_mi_munmap(q, q_len), 0);

  /* 40 MiB: every piece held (20, then 10 of p's 10.06, then 6), and 4 MiB fresh. */
  const size_t r_len = 40 * mib;
  uint8_t *r = allocshim_mi_mmap(NULL, r_len, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(r != MAP_FAILED);
  assert_int_equal(r[a_len / 2], 1); /* what q wrote */
  assert_int_equal(r[a_len + mib], 0x33);
  assert_int_equal(r[31 * mib + 1], 0x22); /* q wrote only the first byte of a page */
  assert_true(all_zero(r + 36 * mib, 4 * mib));
  assert_string_equal(perms_at(p + a_len), "");
  assert_string_equal(perms_at(q), "");
  assert_int_equal(allocshim_mi_munmap(r, r_len), 0);
  assert_string_equal(perms_at(r + 36 * mib), "rw-p"); /* held, fresh part too */
  be_purge();
  assert_string_equal(perms_at(r), "");
  assert_string_equal(perms_at(r + 36 * mib), "");
#endif
}

/* A held mapping that cannot be moved (here mprotect refuses it for a hole the shim was
 * not told of) is dropped, not tried again by every later request, and the request gets
 * a fresh mapping. */
static void test_retained_move_refused(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  if (!holes_as_linux())
    skip();
  from_nothing_held();
  const size_t mib = 1 << 20, len = 20 * mib, want = 18 * mib;
  const int anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  uint8_t *m = held_mapping(len, 0x44);
  assert_string_equal(perms_at(m), "rw-p"); /* held */
  assert_int_equal(munmap(m + 8 * mib, 2 * mib), 0);
  uint8_t *p = allocshim_mi_mmap(NULL, want, PROT_READ | PROT_WRITE, anon, -1, 0);
  assert_true(p != MAP_FAILED);
  assert_true(all_zero(p, want));
  /* Dropped, so unmapped, but for where the fresh mapping may have taken its place;
   * held, it would keep the fresh one out of its range. */
  for (uint8_t *at = m; at < m + len; at += 6 * mib)
    if (at < p || at >= p + want)
      assert_string_equal(perms_at(at), "");
  assert_int_equal(allocshim_mi_munmap(p, want), 0);
  be_purge();
#endif
}

/* mremap as the kernel does it, but for the call numbered mremap_fail_at (from 1; 0:
 * none), which fails as a kernel's move may: with the destination left alone (a kernel
 * that checks first), unmapped (Linux before about 6.16 unmaps it before it checks the
 * source), or unmapped and at once mapped by another thread (here the mock itself). It
 * aborts rather than fail through cmocka, which would leave the shim's lock held. */
enum move_failure { DEST_LEFT, DEST_UNMAPPED, DEST_TAKEN };
static int mremap_calls, mremap_fail_at;
static enum move_failure mremap_failure;
static uint8_t *mremap_dest;
void *__real_mremap(void *old, size_t old_len, size_t new_len, int flags, ...);
void *__wrap_mremap(void *old, size_t old_len, size_t new_len, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  uint8_t *to = flags & MREMAP_FIXED ? va_arg(ap, uint8_t *) : NULL;
  va_end(ap);
  if (++mremap_calls != mremap_fail_at)
    return __real_mremap(old, old_len, new_len, flags, to);
  mremap_dest = to;
  if (mremap_failure != DEST_LEFT && munmap(to, new_len) != 0)
    abort();
  if (mremap_failure == DEST_TAKEN) {
    if (mmap(to, new_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
        to)
      abort();
    to[0] = to[new_len - 1] = 0x99;
  }
  errno = ENOMEM;
  return MAP_FAILED;
}

/* A held piece the kernel fails to move, after another piece moved: the request gets a
 * fresh mapping, the piece is dropped, what moved is unmapped, and the destination only
 * where it is still the shim's. One the kernel left alone, MAP_FIXED_NOREPLACE cannot
 * tell from another thread's and stays reserved; one another thread mapped after the
 * kernel unmapped it keeps that thread's mapping and data. mremap is mocked for the
 * failures. */
static void test_retained_move_failed(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  from_nothing_held();
  const size_t mib = 1 << 20, a_len = 20 * mib, b_len = 18 * mib, len = 30 * mib;
  const size_t dest_len = len - a_len; /* b's head, after all of a */
  const int anon = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  for (int how = DEST_LEFT; how <= DEST_TAKEN; how++) {
    uint8_t *a = held_mapping(a_len, 0x11), *b = held_mapping(b_len, 0x22);
    mremap_calls = 0;
    mremap_fail_at = 2;
    mremap_failure = (enum move_failure)how;
    mremap_dest = NULL;
    errno = 0;
    uint8_t *p = allocshim_mi_mmap(NULL, len, PROT_READ | PROT_WRITE, anon, -1, 0);
    mremap_fail_at = 0;
    assert_true(p != MAP_FAILED);
    assert_int_equal(errno, 0);
    assert_int_equal(mremap_calls, 2);
    assert_true(all_zero(p, len)); /* fresh, not the piece that moved */
    uint8_t *dest = mremap_dest, *to = dest - a_len;
    unmapped_but_for(a, a_len, p, len);
    unmapped_but_for(b, b_len, p, len); /* dropped, not held for the next request */
    unmapped_but_for(to, a_len, p, len);
    if (how == DEST_UNMAPPED) {
      unmapped_but_for(dest, dest_len, p, len);
    } else if (how == DEST_LEFT) {
      if (holes_as_linux()) {
        assert_string_equal(perms_at(dest), "---p");
        assert_string_equal(perms_at(dest + dest_len - 1), "---p");
      }
      assert_int_equal(munmap(dest, dest_len), 0);
    } else {
      assert_string_equal(perms_at(dest), "rw-p");
      assert_int_equal(dest[0], 0x99);
      assert_int_equal(dest[dest_len - 1], 0x99);
      assert_int_equal(munmap(dest, dest_len), 0);
    }
    assert_int_equal(allocshim_mi_munmap(p, len), 0);
    be_purge();
  }
#endif
}

/* The function of mimalloc 2.0.9's whose madvise is a decommit, as the hook is told. */
#define DECOMMIT "mi_os_commitx"

/* The unit mimalloc 2.0.9 commits and decommits in (MI_COMMIT_SIZE). */
#define UNIT ((size_t)(sizeof(void *) == 8 ? 64 : 32) << 10)

/* Pages mimalloc decommits (its madvise, here called as mimalloc's hook is) are held
 * back, contents and all, until dropped: the part mimalloc commits again (its mprotect)
 * is kept, and a program's mi_collect(true) drops the rest. A reset (any other caller's
 * madvise) is done at once. What mimalloc unmaps is forgotten first: a mapping later
 * made at the same address keeps its data through every drop. */
static void test_retained_pages(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  from_nothing_held();
  /* 2 MiB: no huge block's mapping on any target (over 2 MiB on 32-bit ones), and
   * quarters of whole units. */
  const size_t len = 2 << 20, mib = len / 4;
  uint8_t *p = aligned_map(len, PROT_READ | PROT_WRITE);
  memset(p, 0xaa, len);
  assert_int_equal(allocshim_mi_madvise(p, len, MADV_DONTNEED, DECOMMIT), 0);
  assert_int_equal(p[0], 0xaa);
  assert_int_equal(p[len - 1], 0xaa); /* held back: not dropped yet */
  assert_int_equal(allocshim_mi_mprotect(p, mib, PROT_READ | PROT_WRITE), 0);
  mi_collect(true);                   /* a program's own, on musl too */
  assert_int_equal(p[mib - 1], 0xaa); /* committed again: kept as it was */
  assert_int_equal(p[mib], 0);        /* the rest: dropped */
  assert_int_equal(p[len - 1], 0);
  memset(p, 0xbb, len);
  assert_int_equal(allocshim_mi_madvise(p, mib, MADV_DONTNEED, "mi_madvise"), 0);
  assert_int_equal(p[0], 0); /* mimalloc reuses reset memory without a commit */
  /* Held back, then unmapped, and the address mapped again by someone else. */
  memset(p, 0xcc, len);
  assert_int_equal(allocshim_mi_madvise(p, len, MADV_DONTNEED, DECOMMIT), 0);
  assert_int_equal(allocshim_mi_munmap(p, len), 0);
  assert_string_equal(perms_at(p), "");
  uint8_t *again = mmap(p, len, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  assert_true(again == p);
  memset(again, 0xdd, len);
  mi_collect(true);
  assert_int_equal(again[0], 0xdd);
  assert_int_equal(again[len - 1], 0xdd);
  munmap(again, len);
#endif
}

/* What is held back is at most two thirds of what mimalloc has committed (C): with 144
 * MiB live, decommits of 7/12 of C are all held; at 3/4 of C the oldest go first, and
 * what stays is the newest two thirds of C. Half held hugefill and hugecalloc at
 * 1.20-1.37x glibc's time on a machine whose page faults cost more
 * (docs/PERFORMANCE.md). 144 MiB keeps 3/4 of C within the windows the table has room
 * for on 32-bit targets (4 MiB segments), where a full table drops the oldest whatever
 * the budget. */
static void test_retain_budget(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  from_nothing_held();
  const size_t live_len = (size_t)144 << 20, slack = 16; /* units C may move by meanwhile */
  uint8_t *live = malloc(live_len);
  assert_non_null(live);
  memset(live, 1, live_len);
  struct alloc_stats st;
  be_stats(&st);
  const size_t within = st.active / 12 * 7 / UNIT, over = st.active / 4 * 3 / UNIT,
               kept = st.active / 3 * 2 / UNIT;
  uint8_t *p = aligned_map(over * UNIT, PROT_READ | PROT_WRITE);
  memset(p, 0xaa, over * UNIT);
  for (size_t i = 0; i < within; i++)
    assert_int_equal(allocshim_mi_madvise(p + i * UNIT, UNIT, MADV_DONTNEED, DECOMMIT), 0);
  assert_int_equal(p[0], 0xaa); /* the oldest, still held */
  assert_int_equal(p[(within - 1) * UNIT], 0xaa);
  for (size_t i = within; i < over; i++)
    assert_int_equal(allocshim_mi_madvise(p + i * UNIT, UNIT, MADV_DONTNEED, DECOMMIT), 0);
  assert_int_equal(p[0], 0); /* past the budget: the oldest went */
  assert_int_equal(p[(over - kept - slack) * UNIT], 0);
  assert_int_equal(p[(over - kept + slack) * UNIT], 0xaa);
  free(live);
  mi_collect(true);
  munmap(p, over * UNIT);
#endif
}

/* A thread that decommits in pieces (once the purging thread runs, 1 ms after it frees)
 * fills no table: 96 pieces, every other unit of 192, are all held back, and a commit
 * over some of them and the gaps between keeps those. A decommit that is not in whole
 * units is not mimalloc's: done at once. */
static void test_retained_pieces(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#else
  from_nothing_held();
  enum { UNITS = 192 };
  const size_t len = UNITS * UNIT;
  uint8_t *p = aligned_map(len, PROT_READ | PROT_WRITE);
  memset(p, 0xaa, len);
  for (size_t i = 0; i < UNITS; i += 2)
    assert_int_equal(allocshim_mi_madvise(p + i * UNIT, UNIT, MADV_DONTNEED, DECOMMIT), 0);
  for (size_t i = 0; i < UNITS; i += 2)
    assert_int_equal(p[i * UNIT], 0xaa);
  assert_int_equal(allocshim_mi_mprotect(p + 10 * UNIT, 20 * UNIT, PROT_READ | PROT_WRITE), 0);
  mi_collect(true);
  for (size_t i = 0; i < UNITS; i++)
    assert_int_equal(p[i * UNIT], i % 2 == 1 || (i >= 10 && i < 30) ? 0xaa : 0);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (page < UNIT) {
    /* A commit that starts inside a held unit: the unit's part before it goes at once,
     * the part committed again stays. */
    memset(p + 40 * UNIT, 0xcc, UNIT);
    assert_int_equal(allocshim_mi_madvise(p + 40 * UNIT, UNIT, MADV_DONTNEED, DECOMMIT), 0);
    assert_int_equal(allocshim_mi_mprotect(p + 40 * UNIT + page, UNIT, PROT_READ | PROT_WRITE), 0);
    assert_int_equal(p[40 * UNIT], 0);
    assert_int_equal(p[40 * UNIT + page], 0xcc);
    mi_collect(true);
    assert_int_equal(p[41 * UNIT - 1], 0xcc);
    memset(p, 0xbb, UNIT);
    assert_int_equal(allocshim_mi_madvise(p, UNIT - page, MADV_DONTNEED, DECOMMIT), 0);
    assert_int_equal(p[0], 0);
    assert_int_equal(p[UNIT - page], 0xbb);
  }
  munmap(p, len);
#endif
}

/* Once the purging thread runs, mimalloc's owners decommit within three frees of a
 * segment (a 1 ms delay, moved back 1 ms by a free before it is due): held back, those
 * decommits cost no fault. A forked child, with no such thread until its own mark, has
 * mimalloc's own delays back (25 ms, pushed back 1 ms). */
static void test_decommit_soon(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  skip();
#endif
  if (holding_off())
    skip();
  assert_int_equal(mi_option_get(mi_option_decommit_delay), 1);
  assert_int_equal(mi_option_get(mi_option_decommit_extend_delay),
                   MI_MALLOC_VERSION == 209 ? -1 : 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(mi_option_get(mi_option_decommit_delay) == 25 &&
                  mi_option_get(mi_option_decommit_extend_delay) == 1
              ? 0
              : 1);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A thread that frees a run of blocks within a millisecond and goes idle leaves at most
 * its last two undecommitted in a segment: mimalloc 2.0.9 reads the move back as the
 * shim means it. With no move all eight stayed pending, and an idle thread never came
 * back to decommit them. */
static void test_decommit_due_now(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE) || MI_MALLOC_VERSION != 209
  skip(); /* the pending mask is 2.0.9's */
#else
  if (holding_off())
    skip();
  enum { BLOCKS = 8, BLOCK = 2 * MI_MEDIUM_OBJ_SIZE_MAX }; /* large: a span each */
  uint8_t *keep = malloc(BLOCK), *b[BLOCKS];               /* keep: the segment stays in use */
  assert_non_null(keep);
  for (int i = 0; i < BLOCKS; i++) {
    b[i] = malloc(BLOCK);
    assert_non_null(b[i]);
    memset(b[i], 1, BLOCK);
  }
  uintptr_t middle[BLOCKS]; /* a unit inside each block, looked up after the frees */
  for (int i = 0; i < BLOCKS; i++)
    middle[i] = (uintptr_t)b[i] + BLOCK / 2;
  for (int i = 0; i < BLOCKS; i++)
    free(opaque_ptr(b[i]));
  int pending = 0, segs = 0; /* blocks whose decommit is still to come; their segments */
  for (int i = 0; i < BLOCKS; i++) {
    const mi_segment_t *seg = _mi_ptr_segment((void *)middle[i]);
    int j = 0;
    while (j < i && _mi_ptr_segment((void *)middle[j]) != seg)
      j++;
    segs += j == i;
    size_t unit = (middle[i] - (uintptr_t)seg) / MI_COMMIT_SIZE;
    pending += seg->decommit_mask.mask[unit / MI_COMMIT_MASK_FIELD_BITS] >>
                   (unit % MI_COMMIT_MASK_FIELD_BITS) &
               1;
  }
  assert_true(segs <= 3); /* else the bound below would not tell the two apart */
  assert_true(pending <= 2 * segs);
  free(keep);
#endif
}

/* Last, natively (an emulator's run would wait as long for nothing new): what is held
 * back goes back within two of the purging thread's 10 s periods, without a call; a
 * held decommit too, though its window keeps getting new ones (a live thread freeing
 * more of the same segment), which are still held when it goes. */
static void test_retained_expire(void **state) {
  (void)state;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE) || defined(ALLOCSHIM_TEST_EMULATED)
  skip();
#else
  if (holding_off())
    skip();
  uint8_t *p = malloc(40 << 20);
  assert_non_null(p);
  const uintptr_t at = (uintptr_t)p;
  memset(p, 1, 40 << 20);
  free(opaque_ptr(p));
  assert_string_equal(perms_at((void *)at), "rw-p");
  enum { UNITS = 64 };
  uint8_t *pages = aligned_map(UNITS * UNIT, PROT_READ | PROT_WRITE);
  memset(pages, 0xaa, UNITS * UNIT);
  size_t added = 0;
  for (int i = 0; i < 250 && (perms_at((void *)at)[0] != '\0' || pages[0] != 0); i++) {
    if (i % 5 == 0 && added < UNITS) /* every half second */
      assert_int_equal(allocshim_mi_madvise(pages + added++ * UNIT, UNIT, MADV_DONTNEED, DECOMMIT),
                       0);
    usleep(100000); /* 25 s: two periods and room to spare */
  }
  assert_string_equal(perms_at((void *)at), "");
  assert_int_equal(pages[0], 0);
  assert_int_equal(pages[(added - 1) * UNIT], 0xaa);
  munmap(pages, UNITS * UNIT);
#endif
}

/* A wholly free segment waits MIMALLOC_SEGMENT_DELAY_MS in mimalloc's cache, not
 * mimalloc's 500 ms (churn's peak stayed near 3x glibc's), and none under
 * ALLOCSHIM_PURGE=0 (the _purge_now run); the user's MIMALLOC_SEGMENT_DECOMMIT_DELAY has
 * the last word (the _segment_delay run, with a value that is neither default). */
static void test_segment_delay(void **state) {
  (void)state;
  const char *given = getenv("MIMALLOC_SEGMENT_DECOMMIT_DELAY");
  long want = MIMALLOC_SEGMENT_DELAY_MS;
  if (given != NULL)
    want = atol(given);
  else if (allocshim_purge_setting() == 0)
    want = 0;
  assert_int_equal(mi_option_get(mi_option_segment_decommit_delay), want);
}

/* A MIMALLOC_ option the user set has the last word over the shim's default, found as
 * mimalloc finds it, case aside (the _user_options run sets it in lower case, with
 * ALLOCSHIM_PURGE=1, whose defaults are a 1 ms delay and no extension). */
static void test_user_option_wins(void **state) {
  (void)state;
  const char *given = getenv("mimalloc_decommit_delay");
  if (given == NULL)
    skip();
  assert_int_equal(mi_option_get(mi_option_decommit_delay), atol(given));
  assert_int_equal(mi_option_get(mi_option_decommit_extend_delay), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* First: the others cross the mark, and the thread starts only once. */
      cmocka_unit_test(test_deferred_free_kept),
      cmocka_unit_test(test_deferred_free_kept_in_child),
      cmocka_unit_test(test_retained_mapping),
      cmocka_unit_test(test_retained_mapping_opened),
      cmocka_unit_test(test_retained_assembled),
      cmocka_unit_test(test_retained_move_refused),
      cmocka_unit_test(test_retained_move_failed),
      cmocka_unit_test(test_retained_pages),
      cmocka_unit_test(test_retained_pieces),
      cmocka_unit_test(test_retain_budget),
      cmocka_unit_test(test_decommit_soon),
      cmocka_unit_test(test_decommit_due_now),
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_profiling_not_supported),
      cmocka_unit_test(test_stats_fields),
      cmocka_unit_test(test_active_bounded),
      cmocka_unit_test(test_owns),
      cmocka_unit_test(test_user_option_wins),
      cmocka_unit_test(test_segment_delay),
      cmocka_unit_test(test_retained_expire),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
