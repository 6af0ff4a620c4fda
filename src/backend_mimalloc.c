/* mimalloc's half of the backend: errors, checked mode, version and statistics.
 * mimalloc has no heap profiler, so the profiling calls report ALLOC_ENOTSUP. */
#define _GNU_SOURCE
#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
/* mimalloc's internal headers describe the copy compiled into the shim only if they
 * see its settings: a release build (types.h adds fields to a page otherwise). */
#define MI_DEBUG 0
#endif
#include "backend.h"
#include "check.h"
#include "internal.h"

#include <allocshim.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
/* The compiled-in mimalloc's internals: its statistics, its segment header's layout
 * and, in checked mode, its page records. */
#include "mimalloc_hooks.h"
#include "mimalloc_internals.h"

/* mimalloc's MIMALLOC_* options come from environ, read through this (its one use of
 * environ is the shim's: src/mimalloc_hooks.h): a setuid or
 * setgid program sees no environment there, as it would through secure_getenv.
 * AT_SECURE is what secure_getenv asks, and is readable before libc has started,
 * which is when mimalloc may first look. */
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

/* ---- The shim's mimalloc defaults ------------------------------------------------------
 * The memory policy the shim sets for mimalloc, each value chosen from measurements in
 * docs/PERFORMANCE.md ("The defaults, and the measurements behind them"); the sections
 * below say how each works.
 * MIMALLOC_DECOMMIT_DELAY, _DECOMMIT_EXTEND_DELAY and _SEGMENT_DECOMMIT_DELAY win over
 * the delays (purge_option), and setting one of the first and last, or
 * MIMALLOC_LARGE_OS_PAGES, or ALLOCSHIM_PURGE, turns holding back off;
 * ALLOCSHIM_PURGE=off turns all of it off. PURGE_THRESHOLD (the mark below which no
 * thread starts) and MIMALLOC_SEGMENT_DELAY_MS are in src/internal.h, for their tests. */
/* s between the purging thread's passes: jemalloc's dirty decay, for the same promise
 * (memory back within about twice that). ALLOCSHIM_PURGE=<seconds> sets it. */
#define PURGE_PERIOD_DEFAULT 10
/* ms mimalloc's owners wait before decommitting freed pages once the purging thread runs
 * (decommit_soon: compiled in, under the default setting) and under
 * ALLOCSHIM_PURGE=<seconds> but 0, against mimalloc's 25. At 0, "large" ran 6x slower. */
#define DECOMMIT_DELAY_MS 1
/* decommit_extend_delay at the same time: pending decommits due by the owner's third
 * free in a segment, not pushed back by each free (decommit_soon says why). */
#if MI_MALLOC_VERSION == 209
#define DECOMMIT_DUE_NOW (-1L)
#else
#define DECOMMIT_DUE_NOW 0L /* another version may read a negative move otherwise */
#endif
/* What may be held back: a share of what mimalloc has committed, at least RETAIN_MIN
 * (retain_budget says what each share cost); no held mapping longer than RETAIN_MIN;
 * RETAIN_SLOTS pieces and windows at most (at 32, hugefill dropped 0.4 GiB only to make
 * room, and faulted it in again). */
#define RETAIN_SHARE_NUM 2
#define RETAIN_SHARE_DEN 3
#define RETAIN_MIN       ((size_t)64 << 20)
#define RETAIN_SLOTS     64

/* ---- Idle return ----------------------------------------------------------------------
 * mimalloc 2.0.9 gives freed memory back on two clocks, both read only when some thread
 * next calls into it, so a program that goes quiet keeps its peak for good:
 *  - a segment left wholly free, or by a thread that ended, waits segment_decommit_delay
 *    ms (500; the shim's default is MIMALLOC_SEGMENT_DELAY_MS) in a cache, or on the
 *    abandoned list, where any thread may purge it. The shim's purging thread does
 *    (mi_collect on its own heap), PURGE_PERIOD_DEFAULT s (or ALLOCSHIM_PURGE s) after
 *    something was freed, and sleeps for good once two passes found nothing new.
 *  - a free page inside a segment is decommitted decommit_delay ms after it became free
 *    (25, pushed back 1 ms by each later free), and only by the thread owning the
 *    segment, which changes those records without locks: no other thread may do it, so
 *    an idle thread keeps what its last burst freed. Compiled in, the shim asks the
 *    owners to decommit within three frees, 1 ms at most, and holds those decommits
 *    back for nothing to fault (decommit_soon, below). An ALLOCSHIM_PURGE setting asks
 *    the same of them (0: at once) and holds nothing, which costs some workloads
 *    hundreds of times their time (docs/PERFORMANCE.md).
 * A thread costs every process, and a second one forbids unshare(CLONE_NEWUSER): it is
 * started only once mimalloc has committed PURGE_THRESHOLD bytes, from mimalloc's
 * deferred-free call (mi_register_deferred_free), which runs at the start of an
 * allocation's slow path, outside every mimalloc lock and not reentered while it runs
 * (a program's own registration of that call is replaced). The compiled-in mimalloc's
 * mmap and mprotect calls (the shim's: src/mimalloc_hooks.h) watch for the mark, and
 * the call is registered only once it is passed, so programs below it pay nothing
 * (bench/ "small" paid 0.8% for a call on each slow path). It is never unregistered
 * while threads run: mimalloc 2.0.9 tests its pointer for NULL and then loads it again
 * to call it, so a thread between the two jumps to address 0 (seen on ppc64le under
 * qemu, one run in ten of map_churn); once the thread is started, a call that returns
 * at once takes its place. What wakes the
 * thread there is every read of the clock, which mimalloc makes exactly when it
 * schedules or runs a delayed decommit (clock_gettime, the shim's too). Through
 * libmimalloc.so none of these reach the shim: the call stays, looks at the mark on one
 * slow path in 256, then wakes the thread, so there memory freed long after the last
 * allocation waits for the next one. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

/* The kernel's futex operations, private to the process (musl ships no linux/futex.h). */
#define PURGE_FUTEX_WAIT 128 /* FUTEX_WAIT | FUTEX_PRIVATE_FLAG */
#define PURGE_FUTEX_WAKE 129 /* FUTEX_WAKE | FUTEX_PRIVATE_FLAG */

enum { PURGE_STATE_IDLE, PURGE_STATE_WANTED, PURGE_STATE_ON, PURGE_STATE_OFF };
static atomic_int purge_state;
static atomic_size_t purge_base; /* committed bytes at fork, in a forked child */
static atomic_int purge_poked;   /* something changed since the purger last looked */
static atomic_int purge_parked;  /* the futex the purger sleeps on when nothing did */
static pthread_t purger_thread;
static unsigned purge_own_reads; /* the purger's own clock reads in a pass: its alone */
static unsigned purge_period = PURGE_PERIOD_DEFAULT;
/* Whether freed memory may be held back (below): only under the default setting, where
 * no ALLOCSHIM_PURGE=<seconds> asks for memory back within that time (0: at once) and no
 * MIMALLOC_ decommit delay says when mimalloc's decommits happen. Set by purge_start. */
static atomic_bool retain_allowed;
/* Held by the purger through a pass and across fork(): a child must not inherit a pass
 * half done, which may hold mimalloc's abandoned list (its readers' count) or a cache
 * slot it claimed, and the child would wait on them for good. */
static pthread_mutex_t purge_pass = PTHREAD_MUTEX_INITIALIZER;
/* Guards the memory held back (below); taken after purge_pass, and across fork() too, so
 * that a child's copy of the table is whole. Like glibc's own arena locks, it makes a
 * fork() from a signal handler that interrupted an allocation wait for good; the child
 * could not have trusted the table anyway. */
static pthread_mutex_t retain_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t committed_bytes(void);

/* Sequentially consistent on both sides: the purger stores parked then reads poked, a
 * poke stores poked then reads parked, and with weaker orders both could read the old
 * value and the purger sleep through the poke. */
static void purge_poke(void) {
  if (atomic_load_explicit(&purge_state, memory_order_relaxed) != PURGE_STATE_ON)
    return;
  if (pthread_equal(pthread_self(), purger_thread)) {
    purge_own_reads++;
    return;
  }
  if (!atomic_load(&purge_poked))
    atomic_store(&purge_poked, 1);
  if (atomic_load(&purge_parked) && atomic_exchange(&purge_parked, 0)) {
    int saved = errno; /* this runs inside the program's malloc and free */
    syscall(SYS_futex, &purge_parked, PURGE_FUTEX_WAKE, 1, NULL, NULL, 0);
    errno = saved;
  }
}

/* Past the mark, counting what is being committed now; a forked child counts from what
 * it had at the fork. */
static bool purge_past_mark(size_t adding) {
  return committed_bytes() + adding >=
         atomic_load_explicit(&purge_base, memory_order_relaxed) + PURGE_THRESHOLD;
}

static void purge_deferred(bool force, unsigned long long heartbeat, void *arg);

/* Whether the user left mimalloc's decommit_extend_delay to the shim (purge_start). */
static bool decommit_extend_mine;

/* While freed memory is held back (below), mimalloc's owners decommit within three
 * frees of a segment, 1 ms at most (DECOMMIT_DELAY_MS, DECOMMIT_DUE_NOW): the decommit
 * costs no fault then, and a live thread that goes idle keeps little (and the pages
 * mimalloc still counts as in use). Before the purging thread runs, and in a forked
 * child until its own does, mimalloc's own delays stand (on: false), for there a
 * decommit is made at once (docs/PERFORMANCE.md: "large" 500x slower).
 *
 * mimalloc 2.0.9 looks at a segment's pending decommits when its owner next frees a
 * span there: due, they are made; not yet due, their time moves by
 * decommit_extend_delay. Moved back by 1 ms, they are due by the owner's third free in
 * the segment, which makes what the first two freed: a thread that frees and goes idle
 * leaves about two freed spans a segment undecommitted (more where it allocated between
 * its frees: a commit makes pending units near it due 1 ms later, and a span left over
 * from a split is never made pending at all). With a 1 ms delay and no move it left
 * all its last millisecond freed (75 of 192 MiB, tests/integration/idle_return.sh
 * "main"); with no delay at all mimalloc decommits each span as it frees it, whole,
 * never-committed neighbours included, which filled the budget of what is held back
 * (bench/ "large" 6x slower). Only for decommits held back: made for real, they cost
 * "spawn" 5x (ALLOCSHIM_PURGE, below). */
static void decommit_soon(bool on) {
  static long delay = -1, extend; /* as they were before the first change */
  if (!atomic_load(&retain_allowed))
    return;
  if (delay < 0) {
    delay = mi_option_get(mi_option_decommit_delay);
    extend = mi_option_get(mi_option_decommit_extend_delay);
  }
  mi_option_set(mi_option_decommit_delay, on ? DECOMMIT_DELAY_MS : delay);
  if (decommit_extend_mine)
    mi_option_set(mi_option_decommit_extend_delay, on ? DECOMMIT_DUE_NOW : extend);
}

#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
/* ---- Memory held back a while, for the next block ----------------------------------
 * mimalloc 2.0.9 hands freed memory back to the kernel within milliseconds: a block
 * over MI_LARGE_OBJ_SIZE_MAX (16 MiB) has its own mapping, unmapped when it is freed,
 * and the pages of a freed large block are decommitted (MADV_DONTNEED) 25 ms later.
 * A program that keeps replacing big blocks then faults every page of every one in
 * afresh, each zeroed by the kernel (bench/ hugecalloc: 7.9x glibc, whose heap keeps
 * blocks up to 32 MiB and memsets them for calloc). While idle return's thread runs,
 * under the default setting, the shim holds some of that back instead (retain_budget):
 *  - a huge block's mapping, up to RETAIN_MIN, becomes part or all of the next mapping
 *    mimalloc asks for over that size (retained_mapping): moved to a new address, with
 *    its segment headers zeroed, as mimalloc takes a new mapping's to be (blocks it
 *    zeroes itself for calloc). A longer mapping is unmapped at once: alone, it could
 *    take all of the budget. Not made PROT_NONE meanwhile: on this VM each page touched
 *    after the two mprotect calls cost as much as a fault, and a 20 MiB block took 19x
 *    longer;
 *  - pages mimalloc decommits stay, and are dropped only if mimalloc does not commit
 *    them again first (mimalloc never takes recommitted memory to be zero, and never
 *    touches decommitted memory: its debug builds decommit with PROT_NONE). They are
 *    kept by segment-sized window, a bit for each unit mimalloc decommits in, so that a
 *    thread decommitting in small pieces fills no table.
 * Decommits that cost no fault can come early: once the thread runs, mimalloc's owners
 * decommit within three frees of a segment (decommit_soon), and a live thread gone idle
 * keeps little more than its last few freed spans in each segment; the rest goes back
 * with what is held. The purging thread gives back what was held back before its last
 * pass (so within two periods; each window marks which of its units came since that
 * pass), malloc_trim(0) everything at once, a forked child everything it inherited;
 * whatever mimalloc unmaps is forgotten first, so the address can never be reused by
 * another mapping and then dropped. Dropping happens under retain_lock, as forgetting
 * does: a drop done after the lock is let go could zero pages mimalloc has just
 * committed again and written. */
#define HUGE_MIN      MI_LARGE_OBJ_SIZE_MAX
#define PIECES_MAX    4                 /* held mappings one new mapping is made of */
#define PIECE_ALIGN   ((size_t)2 << 20) /* the span of one page-table page (x86_64) */
#define PIECE_MIN     PIECE_ALIGN       /* a held mapping's tail shorter goes at once */
#define SEAMS_MAX     (PIECES_MAX + 1)  /* its pieces, and fresh pages after them */
#define ASSEMBLED_MAX 32                /* live mappings made of pieces, seams known */
#define RETAIN_UNIT   MI_COMMIT_SIZE    /* mimalloc's decommits are whole ones */
#define RETAIN_WINDOW MI_SEGMENT_SIZE
#define RETAIN_UNITS  (RETAIN_WINDOW / RETAIN_UNIT)
static const bool retain_possible = true;

enum { RETAINED_MAPPING = 1, RETAINED_PAGES };
static struct retained {
  uint8_t *addr; /* NULL: a free slot; a mapping's start, or a window's */
  size_t len;    /* the mapping's length, or the bytes held in the window */
  int kind;
  unsigned pass;          /* of a mapping: the purger's pass count when held back */
  unsigned long long seq; /* the order added to in: the oldest goes first for room */
  uint64_t units[(RETAIN_UNITS + 63) / 64]; /* of a window: the units held, */
  uint64_t young[(RETAIN_UNITS + 63) / 64]; /* and those held since the purger's pass */
} retained[RETAIN_SLOTS];
static atomic_size_t retained_bytes; /* read without the lock to skip it when 0 */
static unsigned retain_passes;
static unsigned long long retain_seq;

/* A mapping handed to mimalloc made of pieces moved from several held mappings is
 * several kernel mappings, and before Linux 6.17 mremap moves only within one (and
 * resizes only within one on any): its seams are kept until mimalloc unmaps it, so
 * that each piece is held back as its own. No mapping is made of pieces while the
 * table is full. */
static struct assembled {
  uint8_t *addr; /* NULL: a free record */
  int pieces;
  size_t len[SEAMS_MAX];
} assembled[ASSEMBLED_MAX];
static atomic_int assembled_count; /* read without the lock to skip it when 0 */

/* What mimalloc has mapped: counted exactly, unlike what it has committed
 * (committed_bytes). What the shim holds is not in it. */
static size_t mapped_bytes(void) {
  int64_t mapped = __atomic_load_n(&_mi_stats_main.reserved.current, __ATOMIC_RELAXED);
  return mapped > 0 ? (size_t)mapped : 0;
}

/* What may be held back: two thirds of what mimalloc has committed (committed_bytes: at
 * most what it has mapped), and at least what glibc's heap keeps free at its top at most
 * (its trim threshold rises to 64 MiB). It was an eighth of mimalloc's own committed
 * count, which drifts up, and so let the share grow unseen. Measured on hugecalloc,
 * hugefill and frag (docs/PERFORMANCE.md): half kept glibc's time on one machine and
 * took 1.20-1.37x on one whose page faults cost more, where two thirds takes 0.91-1.00x
 * (frag 0.26x) for 2-4% more peak RSS; a quarter or an eighth take 1.5-2.5x. */
static size_t retain_budget(void) {
  size_t share = committed_bytes() / RETAIN_SHARE_DEN * RETAIN_SHARE_NUM;
  return share > RETAIN_MIN ? share : RETAIN_MIN;
}

static bool retaining(void) {
  return atomic_load_explicit(&purge_state, memory_order_relaxed) == PURGE_STATE_ON &&
         atomic_load_explicit(&retain_allowed, memory_order_relaxed);
}

static bool bit_get(const uint64_t *bits, size_t i) { return bits[i / 64] >> (i % 64) & 1; }

static void bit_put(uint64_t *bits, size_t i, bool on) {
  bits[i / 64] = (bits[i / 64] & ~((uint64_t)1 << (i % 64))) | (uint64_t)on << (i % 64);
}

static bool unit_held(const struct retained *r, size_t i) { return bit_get(r->units, i); }

/* A slot no longer held: its memory dropped, forgotten or handed out. */
static void retain_free_slot(struct retained *r) {
  atomic_fetch_sub(&retained_bytes, r->len);
  r->addr = NULL;
}

enum { FORGET, DROP, DROP_OLD };

/* Whether unit i of a window goes: held, and for DROP_OLD held since before the
 * purger's last pass. */
static bool unit_goes(const struct retained *r, size_t i, int how) {
  return unit_held(r, i) && (how != DROP_OLD || !bit_get(r->young, i));
}

/* Units [first, end) of a window no longer held, up to `most` bytes of them: forgotten
 * (mimalloc committed them again, or unmapped them), or dropped (decommitted now, as
 * mimalloc asked). */
static void window_clear(struct retained *r, size_t first, size_t end, int how, size_t most) {
  for (size_t i = first, j; i < end && most > 0; i = j) {
    for (j = i; j < end && (j - i) * RETAIN_UNIT < most && unit_goes(r, j, how); j++) {
      bit_put(r->units, j, false);
      bit_put(r->young, j, false);
    }
    if (j == i) {
      j++;
      continue;
    }
    size_t bytes = (j - i) * RETAIN_UNIT;
    if (how != FORGET)
      madvise(r->addr + i * RETAIN_UNIT, bytes, MADV_DONTNEED);
    r->len -= bytes;
    atomic_fetch_sub(&retained_bytes, bytes);
    most -= bytes < most ? bytes : most;
  }
  if (r->len == 0)
    r->addr = NULL;
}

/* What mimalloc asked for, done now: unmapped or decommitted. */
static void retain_drop(struct retained *r) {
  if (r->kind == RETAINED_MAPPING) {
    munmap(r->addr, r->len);
    retain_free_slot(r);
  } else {
    window_clear(r, 0, RETAIN_UNITS, DROP, SIZE_MAX);
  }
}

static struct retained *retain_oldest(void) {
  struct retained *oldest = NULL;
  for (int i = 0; i < RETAIN_SLOTS; i++)
    if (retained[i].addr != NULL && (oldest == NULL || retained[i].seq < oldest->seq))
      oldest = &retained[i];
  return oldest;
}

/* A slot for `addr`: its window's if it has one, else a free one, made by dropping the
 * oldest if need be. */
static struct retained *retain_slot(uint8_t *addr, int kind) {
  struct retained *free_slot = NULL;
  for (int i = 0; i < RETAIN_SLOTS; i++) {
    struct retained *r = &retained[i];
    if (r->addr == NULL)
      free_slot = free_slot ? free_slot : r;
    else if (kind == RETAINED_PAGES && r->kind == kind && r->addr == addr)
      return r;
  }
  if (free_slot == NULL) {
    free_slot = retain_oldest();
    retain_drop(free_slot);
  }
  *free_slot = (struct retained){.addr = addr, .kind = kind};
  return free_slot;
}

/* The lengths of record a's pieces within [lo, hi), in out; how many. */
static int pieces_within(const struct assembled *a, const uint8_t *lo, const uint8_t *hi,
                         size_t out[SEAMS_MAX]) {
  int n = 0;
  const uint8_t *at = a->addr;
  for (int k = 0; k < a->pieces; at += a->len[k++]) {
    const uint8_t *from = at > lo ? at : lo, *to = at + a->len[k] < hi ? at + a->len[k] : hi;
    if (from < to)
      out[n++] = (size_t)(to - from);
  }
  return n;
}

/* Records a mapping of more than one piece, if there is room. Under retain_lock. */
static void assembled_put(uint8_t *addr, const size_t lens[SEAMS_MAX], int pieces) {
  for (int i = 0; pieces > 1 && i < ASSEMBLED_MAX; i++)
    if (assembled[i].addr == NULL) {
      assembled[i] = (struct assembled){.addr = addr, .pieces = pieces};
      memcpy(assembled[i].len, lens, sizeof assembled[i].len);
      atomic_fetch_add(&assembled_count, 1);
      return;
    }
}

/* mimalloc unmaps [addr, addr+len): the lengths of its pieces in seams, if a record
 * holds all of it (else seams is left as it was); a record it cuts keeps the pieces
 * left on either side, as mimalloc trims a mapping it got unaligned. Under
 * retain_lock. */
static void assembled_take(uint8_t *addr, size_t len, size_t seams[SEAMS_MAX]) {
  if (atomic_load_explicit(&assembled_count, memory_order_relaxed) == 0)
    return;
  for (int i = 0; i < ASSEMBLED_MAX; i++) {
    struct assembled a = assembled[i];
    const uint8_t *end = a.addr;
    for (int k = 0; a.addr != NULL && k < a.pieces; k++)
      end += a.len[k];
    if (a.addr == NULL || a.addr >= addr + len || end <= addr)
      continue;
    if (addr >= a.addr && addr + len <= end) {
      memset(seams, 0, SEAMS_MAX * sizeof *seams);
      pieces_within(&a, addr, addr + len, seams);
    }
    assembled[i].addr = NULL;
    atomic_fetch_sub(&assembled_count, 1);
    size_t side[SEAMS_MAX] = {0};
    assembled_put(a.addr, side, pieces_within(&a, a.addr, addr, side));
    memset(side, 0, sizeof side);
    assembled_put(addr + len, side, pieces_within(&a, addr + len, end, side));
  }
}

/* Holds [addr, addr+len) back (whole units, for pages), then drops the oldest until
 * what is held fits the budget. */
static void retain(uint8_t *addr, size_t len, int kind, size_t budget) {
  int saved = errno; /* as for every call here: this runs inside malloc and free */
  pthread_mutex_lock(&retain_lock);
  size_t seams[SEAMS_MAX] = {len};
  int piece = 0;
  if (kind == RETAINED_MAPPING)
    assembled_take(addr, len, seams);
  if (!retaining()) { /* the purger ended since the hook looked: it gives back no more */
    if (kind == RETAINED_MAPPING)
      munmap(addr, len);
    else
      madvise(addr, len, MADV_DONTNEED);
    len = 0;
  }
  for (uint8_t *p = addr, *end = addr + len; p < end;) {
    uint8_t *base =
        kind == RETAINED_MAPPING ? p : (uint8_t *)((uintptr_t)p & ~(uintptr_t)(RETAIN_WINDOW - 1));
    uint8_t *stop = kind == RETAINED_MAPPING                ? p + seams[piece++]
                    : end - base < (ptrdiff_t)RETAIN_WINDOW ? end
                                                            : base + RETAIN_WINDOW;
    if (kind == RETAINED_MAPPING && stop - p < (ptrdiff_t)PIECE_MIN) {
      munmap(p, (size_t)(stop - p)); /* a piece too short to be worth a slot */
      p = stop;
      continue;
    }
    struct retained *r = retain_slot(base, kind);
    size_t added = (size_t)(stop - p);
    if (kind == RETAINED_PAGES) {
      added = 0;
      for (size_t i = (size_t)(p - base) / RETAIN_UNIT; i < (size_t)(stop - base) / RETAIN_UNIT;
           i++)
        if (!unit_held(r, i)) {
          bit_put(r->units, i, true);
          bit_put(r->young, i, true);
          added += RETAIN_UNIT;
        }
    }
    r->len += added;
    atomic_fetch_add(&retained_bytes, added);
    r->pass = retain_passes;
    r->seq = ++retain_seq;
    p = stop;
  }
  /* Over the budget: the oldest mapping goes, or of the oldest window what is over. */
  for (size_t held; (held = atomic_load(&retained_bytes)) > budget;) {
    struct retained *oldest = retain_oldest();
    if (oldest->kind == RETAINED_MAPPING)
      retain_drop(oldest);
    else
      window_clear(oldest, 0, RETAIN_UNITS, DROP, held - budget);
  }
  pthread_mutex_unlock(&retain_lock);
  purge_poke(); /* the purger must not sleep while something is held back */
  errno = saved;
}

/* mimalloc takes [addr, addr+len) back: committing it again (`unmapping` false), or
 * unmapping it. Held units there are forgotten; of a unit the range covers only in
 * part, a recommit drops the rest at once. */
static void retain_forget(const void *addr, size_t len, bool unmapping) {
  if (atomic_load_explicit(&retained_bytes, memory_order_relaxed) == 0)
    return;
  const uint8_t *lo = addr, *hi = lo + len;
  int saved = errno;
  pthread_mutex_lock(&retain_lock);
  for (int i = 0; i < RETAIN_SLOTS; i++) {
    struct retained *r = &retained[i];
    if (r->addr == NULL || r->kind != RETAINED_PAGES || r->addr >= hi ||
        r->addr + RETAIN_WINDOW <= lo)
      continue;
    size_t from = lo > r->addr ? (size_t)(lo - r->addr) : 0;
    size_t to = hi < r->addr + RETAIN_WINDOW ? (size_t)(hi - r->addr) : RETAIN_WINDOW;
    size_t first = from / RETAIN_UNIT, end = (to + RETAIN_UNIT - 1) / RETAIN_UNIT;
    if (!unmapping && from % RETAIN_UNIT != 0 && unit_held(r, first))
      madvise(r->addr + first * RETAIN_UNIT, from % RETAIN_UNIT, MADV_DONTNEED);
    if (!unmapping && to % RETAIN_UNIT != 0 && unit_held(r, end - 1))
      madvise(r->addr + to, RETAIN_UNIT - to % RETAIN_UNIT, MADV_DONTNEED);
    window_clear(r, first, end, FORGET, SIZE_MAX);
  }
  pthread_mutex_unlock(&retain_lock);
  errno = saved;
}

/* A fresh MI_SEGMENT_SIZE-aligned range of len bytes, reserved PROT_NONE; NULL if none. */
static uint8_t *segment_reserve(size_t len) {
  const size_t align = MI_SEGMENT_SIZE;
  uint8_t *area =
      mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED)
    return NULL;
  uint8_t *at = (uint8_t *)(((uintptr_t)area + align - 1) & ~(uintptr_t)(align - 1));
  if (at > area)
    munmap(area, (size_t)(at - area));
  munmap(at + len, (size_t)(area + align - at));
  return at;
}

/* Zeroes, in the first `written` bytes of a mapping of len (the rest is the kernel's
 * zero pages), what of a fresh mapping mimalloc 2.0.9 relies on being zero: the header
 * of each segment in it (mi_segment_init skips zeroing its fields and its slice table,
 * as long as the segment's slice count; an arena's segments start every
 * MI_SEGMENT_SIZE). Block memory it never takes to be zero: no page is ever marked
 * zero-initialised (is_zero_init), so calloc memsets every block, a huge one included.
 * Its other OS allocations that rely on zero (thread data, an arena's bitmaps) are far
 * below HUGE_MIN, so never a held mapping. Another version may trust a new mapping's
 * blocks to be zero (2.1 does): all of it is zeroed there. */
static void zero_segment_headers(uint8_t *p, size_t len, size_t written) {
#if MI_MALLOC_VERSION == 209
  size_t header =
      offsetof(mi_segment_t, slices) + sizeof(mi_slice_t) * (len / MI_SEGMENT_SLICE_SIZE + 2);
  for (size_t at = 0; at < written; at += MI_SEGMENT_SIZE)
    memset(p + at, 0, written - at < header ? written - at : header);
#else
  (void)len;
  memset(p, 0, written);
#endif
}

/* The held mapping to take want bytes from, none of those taken: the closest one at
 * least that long, else the longest. Under retain_lock. */
static struct retained *piece_for(size_t want, struct retained *const *taken, int n) {
  struct retained *best = NULL;
  for (int i = 0; i < RETAIN_SLOTS; i++) {
    struct retained *r = &retained[i];
    bool free_to_take = r->addr != NULL && r->kind == RETAINED_MAPPING;
    for (int k = 0; k < n; k++)
      free_to_take &= taken[k] != r;
    if (free_to_take && (best == NULL || (best->len < want ? r->len > best->len
                                                           : r->len >= want && r->len < best->len)))
      best = r;
  }
  return best;
}

/* The first `took` bytes of a held mapping have moved away: its tail stays held, where
 * it is and as old as it was, from the next PIECE_ALIGN boundary on (what is before it
 * is unmapped), unless too short to be worth a piece. */
static void piece_taken(struct retained *r, size_t took) {
  uintptr_t from = (uintptr_t)r->addr + took;
  size_t tail =
      (size_t)(((from + PIECE_ALIGN - 1) & ~(uintptr_t)(PIECE_ALIGN - 1)) - (uintptr_t)r->addr);
  if (tail >= r->len || r->len - tail < PIECE_MIN) {
    if (r->len > took)
      munmap(r->addr + took, r->len - took);
    retain_free_slot(r);
    return;
  }
  if (tail > took)
    munmap(r->addr + took, tail - took);
  r->addr += tail;
  r->len -= tail;
  atomic_fetch_sub(&retained_bytes, tail);
}

/* After a failed mremap to [d, d+len): whether that range is still the shim's. Linux
 * before 6.16 or so unmaps the destination before it checks the source, and another
 * thread may map something there at once: the range is taken back only if it is free
 * (MAP_FIXED_NOREPLACE). Else it is left alone, the shim's or not: where the kernel
 * checked first, that much address space stays reserved, with no memory behind it.
 * Only a kernel's own error (no memory, too many mappings) or a seam not known (a
 * record lost for room when mimalloc cut a mapping in the middle, which 2.0.9 never
 * does) leads here. */
static bool reclaimed(uint8_t *d, size_t len) {
  void *r = mmap(d, len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (r != MAP_FAILED && r != d)
    munmap(r, len); /* a kernel that took the address as a hint only */
  return r == d;
}

/* A held-back mapping as a new one of len bytes, read-write and zero where mimalloc
 * needs it to be (zero_segment_headers); MAP_FAILED if none. It is made of up to
 * PIECES_MAX held mappings (piece_for), each moved by mremap without resizing to its
 * place in a fresh segment-aligned range, pages resident; one longer than what is
 * still wanted gives its head and keeps its tail held, and if the pieces fall short
 * the rest of the range is opened, the kernel's zero pages. Before, one mapping was
 * cut or grown: in hugefill, 0.6 GiB of cut tails were unmapped and as much faulted in
 * to grow others. The freed block's start stays unmapped, so a late free of it faults
 * as it did before, rather than reaching the new block. */
static void *retained_mapping(size_t len) {
  if (len <= HUGE_MIN || atomic_load_explicit(&retained_bytes, memory_order_relaxed) == 0)
    return MAP_FAILED;
  int saved = errno; /* a refused mmap, mprotect or mremap is no failure of the caller's */
  pthread_mutex_lock(&retain_lock);
  /* Else only one piece, and one long enough: no seam at all. */
  bool can_record = atomic_load_explicit(&assembled_count, memory_order_relaxed) < ASSEMBLED_MAX;
  struct retained *plan[PIECES_MAX];
  size_t take[PIECES_MAX], want = len, lens[SEAMS_MAX] = {0};
  int n = 0;
  /* Pieces are moved in whole page-table pages where they can be: on this VM a block
   * moved page by page took 1.5x the time to write (hugefill 8.3-8.8 s against 5.4). */
  for (int most = can_record ? PIECES_MAX : 1; want > 0 && n < most; n++) {
    if ((plan[n] = piece_for(want, plan, n)) == NULL || (!can_record && plan[n]->len < want)) {
      if (n > 0 && take[n - 1] < plan[n - 1]->len) { /* no more: the last one goes whole */
        want -= plan[n - 1]->len - take[n - 1];
        take[n - 1] = plan[n - 1]->len;
      }
      break;
    }
    size_t whole = plan[n]->len, aligned = whole & ~(PIECE_ALIGN - 1);
    /* The last piece: it has enough, or the rest is short enough to be opened fresh. */
    bool last = whole >= want || n == most - 1 || want - whole < PIECE_MIN || aligned == 0;
    take[n] = whole >= want ? want : last ? whole : aligned;
    want -= take[n];
    if (last) {
      n++;
      break;
    }
  }
  uint8_t *to = n > 0 ? segment_reserve(len) : NULL, *p = MAP_FAILED;
  size_t at = 0, lost = 0; /* lost: a destination the kernel may have given away */
  int moved = 0;
  /* Read-write all through first, one mapping for mremap to move: mimalloc maps a segment
   * it commits lazily PROT_NONE and opens it piecewise. A piece the kernel will not move
   * is dropped, not tried again. */
  for (; to != NULL && moved < n; moved++) {
    struct retained *r = plan[moved];
    bool opened = mprotect(r->addr, take[moved], PROT_READ | PROT_WRITE) == 0;
    if (!opened || mremap(r->addr, take[moved], take[moved], MREMAP_MAYMOVE | MREMAP_FIXED,
                          to + at) == MAP_FAILED) {
      lost = !opened || reclaimed(to + at, take[moved]) ? 0 : take[moved];
      retain_drop(r);
      break;
    }
    piece_taken(r, take[moved]);
    lens[moved] = take[moved];
    at += take[moved];
  }
  if (to != NULL && moved == n &&
      (at == len || mprotect(to + at, len - at, PROT_READ | PROT_WRITE) == 0)) {
    p = to;
    if (at < len)
      lens[moved++] = len - at;
    assembled_put(p, lens, moved);
  }
  pthread_mutex_unlock(&retain_lock);
  if (p != MAP_FAILED) {
    zero_segment_headers(p, len, at); /* past what pieces held: the kernel's zeros */
  } else if (to != NULL) {            /* a kernel's error: what was moved goes too */
    if (at > 0)
      munmap(to, at);
    munmap(to + at + lost, len - at - lost);
  }
  errno = saved;
  return p;
}

/* Drops what was held back before the purger's last pass (everything if `all`); true
 * if something is still held. Asked for everything, it waits for a hold under way: once
 * holding is off, that one's memory may be the last held, with nobody to drop it. */
static bool retain_expire(bool all) {
  if (!all && atomic_load(&retained_bytes) == 0)
    return false;
  int saved = errno;
  pthread_mutex_lock(&retain_lock);
  for (int i = 0; i < RETAIN_SLOTS; i++) {
    struct retained *r = &retained[i];
    if (r->addr == NULL)
      continue;
    if (all || (r->kind == RETAINED_MAPPING && r->pass != retain_passes)) {
      retain_drop(r);
    } else if (r->kind == RETAINED_PAGES) {
      window_clear(r, 0, RETAIN_UNITS, DROP_OLD, SIZE_MAX);
      memset(r->young, 0, sizeof r->young); /* what is left is old at the next pass */
    }
  }
  retain_passes++;
  bool left = atomic_load(&retained_bytes) != 0;
  pthread_mutex_unlock(&retain_lock);
  errno = saved;
  return left;
}

/* Whether p lies in a held-back mapping: a block freed, whatever the memory says. */
static bool retained_holds(const void *p) {
  if (atomic_load(&retained_bytes) == 0)
    return false;
  bool in = false;
  pthread_mutex_lock(&retain_lock);
  for (int i = 0; i < RETAIN_SLOTS; i++)
    in |= retained[i].addr != NULL && retained[i].kind == RETAINED_MAPPING &&
          (const uint8_t *)p >= retained[i].addr &&
          (const uint8_t *)p < retained[i].addr + retained[i].len;
  pthread_mutex_unlock(&retain_lock);
  return in;
}

static void purge_watch(size_t adding) {
  int idle = PURGE_STATE_IDLE;
  if (atomic_load_explicit(&purge_state, memory_order_relaxed) == PURGE_STATE_IDLE &&
      purge_past_mark(adding) &&
      atomic_compare_exchange_strong(&purge_state, &idle, PURGE_STATE_WANTED))
    mi_register_deferred_free(purge_deferred, NULL);
}

/* A plain read-write anonymous mapping may be a held-back one; mimalloc's hint is only
 * a hint, and a held-back mapping comes on the segment boundary mimalloc wants. */
void *allocshim_mi_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  void *p = MAP_FAILED;
  if (prot == (PROT_READ | PROT_WRITE) && fd == -1 &&
      (flags & ~MAP_NORESERVE) == (MAP_PRIVATE | MAP_ANONYMOUS))
    p = retained_mapping(len);
  if (p == MAP_FAILED)
    p = mmap(addr, len, prot, flags, fd, off);
  purge_watch(p != MAP_FAILED && (prot & PROT_WRITE) ? len : 0);
  return p;
}

/* mimalloc commits with mprotect (read-write), and with nothing else. */
int allocshim_mi_mprotect(void *addr, size_t len, int prot) {
  if (prot & PROT_WRITE)
    retain_forget(addr, len, false);
  int r = mprotect(addr, len, prot);
  purge_watch(r == 0 && (prot & PROT_WRITE) ? len : 0);
  return r;
}

/* Only whole huge segments are held back (they start on a segment boundary), and only
 * up to RETAIN_MIN, which every budget allows. */
int allocshim_mi_munmap(void *addr, size_t len) {
  retain_forget(addr, len, true);
  if (len > HUGE_MIN && len <= RETAIN_MIN && (uintptr_t)addr % MI_SEGMENT_SIZE == 0 &&
      retaining()) {
    retain(addr, len, RETAINED_MAPPING, retain_budget());
    return 0;
  }
  if (atomic_load_explicit(&assembled_count, memory_order_relaxed) != 0) {
    size_t seams[SEAMS_MAX];
    pthread_mutex_lock(&retain_lock);
    assembled_take(addr, len, seams);
    pthread_mutex_unlock(&retain_lock);
  }
  return munmap(addr, len);
}

/* mimalloc 2.0.9 decommits with MADV_DONTNEED in mi_os_commitx, and that alone is held
 * back. It also resets (MADV_FREE, or DONTNEED where that is refused) memory it keeps
 * committed and reuses without a commit, so a reset held back could be dropped under
 * reused data: from any other caller (a later mimalloc's included) madvise goes through. */
int allocshim_mi_madvise(void *addr, size_t len, int advice, const char *caller) {
  if (advice == MADV_DONTNEED && strcmp(caller, "mi_os_commitx") == 0 &&
      (uintptr_t)addr % RETAIN_UNIT == 0 && len % RETAIN_UNIT == 0 && retaining()) {
    size_t budget = retain_budget();
    if (len <= budget) {
      retain(addr, len, RETAINED_PAGES, budget);
      return 0;
    }
  }
  return madvise(addr, len, advice);
}

/* mimalloc's mi_collect is allocshim_mi_collect_inner (src/mimalloc_hooks.h), and this
 * one is exported in its place, as the rest of mimalloc's API is: asked to force, a
 * program wants the memory back now, the shim's share included. */
__attribute__((visibility("default"))) void mi_collect(bool force) mi_attr_noexcept {
  allocshim_mi_collect_inner(force);
  if (force)
    retain_expire(true);
}

int allocshim_mi_clock_gettime(clockid_t clock, struct timespec *ts) {
  int r = clock_gettime(clock, ts);
  purge_poke();
  return r;
}

/* mimalloc reads only access's result; a missing node's ENOENT would reach the program
 * as the errno of a malloc that succeeded (glibc's leaves errno alone). */
int allocshim_mi_access(const char *path, int mode) {
  int saved = errno, r = access(path, mode);
  errno = saved;
  return r;
}
#else
/* Through libmimalloc.so the shim sees none of mimalloc's mappings: nothing is held. */
static const bool retain_possible = false;
static bool retain_expire(bool all) {
  (void)all;
  return false;
}
static bool retained_holds(const void *p) {
  (void)p;
  return false;
}
#endif

/* No purger from here on: so nothing is held back either, and mimalloc's own delays
 * stand again. */
static void purge_off(void) {
  atomic_store(&purge_state, PURGE_STATE_OFF);
  decommit_soon(false);
  retain_expire(true);
}

/* The purger: a pass once the period has passed since a poke, and more while pokes keep
 * coming. A pass that followed no poke is made once more (through libmimalloc.so, frees
 * made just after the last poke are seen only by it), then the thread sleeps until the
 * next poke. The period outlasts the segment cache's delay, so a pass finds everything
 * freed before its sleep began expired. A pass that scheduled work of its own (a segment
 * other threads emptied, taken back and cached: no other clock read tells of it) counts
 * as a poke; one with nothing to do reads the clock once, for the cache. A sleep or
 * wait the kernel refuses (a seccomp filter installed since) ends the thread rather
 * than spin. */
static void *purger(void *arg) {
  (void)arg;
  /* Its own clock reads are told apart from the first pass on, whenever pthread_create
   * stores the id; and mi_collect acts on the calling thread's heap, so it needs one. */
  purger_thread = pthread_self();
  mi_thread_init();
  long cache_ms = mi_option_get(mi_option_segment_decommit_delay);
  if (cache_ms < 0 || cache_ms > 86400000L)
    cache_ms = 86400000L;
  long long ns = (long long)purge_period * 1000000000LL;
  if (ns < (cache_ms + 100) * 1000000LL)
    ns = (cache_ms + 100) * 1000000LL;
  for (int quiet = 0;;) {
    atomic_store(&purge_parked, 1);
    if (atomic_exchange(&purge_poked, 0)) {
      quiet = 0;
    } else if (quiet++ == 1) {
      while (atomic_load(&purge_parked))
        if (syscall(SYS_futex, &purge_parked, PURGE_FUTEX_WAIT, 1, NULL, NULL, 0) != 0 &&
            errno != EINTR && errno != EAGAIN)
          goto refused;
      atomic_store(&purge_poked, 0);
      quiet = 0;
    }
    atomic_store(&purge_parked, 0);
    struct timespec t = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    while (nanosleep(&t, &t) != 0)
      if (errno != EINTR)
        goto refused;
    pthread_mutex_lock(&purge_pass);
    purge_own_reads = 0;
    mi_collect(false);
    bool held = retain_expire(false); /* every pass, whatever mi_collect found */
    if (purge_own_reads > 1 || held)
      quiet = 0;
    pthread_mutex_unlock(&purge_pass);
  }
refused:
  purge_off();
  return NULL;
}

/* The thread takes none of the program's signals, and needs little stack. The setting
 * is read again here: mimalloc may pass the mark before the shim's constructor ran. */
static void purge_begin(void) {
  int wanted = PURGE_STATE_WANTED;
  if (!atomic_compare_exchange_strong(&purge_state, &wanted, PURGE_STATE_ON))
    return;
  int saved = errno; /* this runs inside an allocation that succeeds */
  if (allocshim_purge_setting() == PURGE_OFF || allocshim_under_seccomp()) {
    purge_off();
    errno = saved;
    return;
  }
  pthread_attr_t attr;
  sigset_t all, old;
  sigfillset(&all);
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 << 10);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  decommit_soon(true); /* before the thread, which may end at once and undo it */
  if (pthread_create(&purger_thread, &attr, purger, NULL) != 0) {
    allocshim_say("idle return off: no thread for it");
    purge_off();
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  errno = saved;
}

#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
/* The deferred-free call once the purging thread is started: nothing left to do. */
static void purge_deferred_done(bool force, unsigned long long heartbeat, void *arg) {
  (void)force, (void)heartbeat, (void)arg;
}
#endif

/* mimalloc's deferred-free call; heartbeat counts this thread's slow paths. */
static void purge_deferred(bool force, unsigned long long heartbeat, void *arg) {
  (void)force, (void)arg;
  int state = atomic_load_explicit(&purge_state, memory_order_relaxed);
#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
  (void)heartbeat;
  /* Started (or refused), the call has nothing left to do: one that returns at once
   * costs every slow path less (about 0.2% of an allocation past the mark), and is
   * never NULL (above). A forked child registers this one again at its own mark
   * (purge_watch). */
  if (state == PURGE_STATE_WANTED) {
    purge_begin();
    mi_register_deferred_free(purge_deferred_done, NULL);
  }
#else
  int idle = PURGE_STATE_IDLE;
  if (state == PURGE_STATE_ON)
    purge_poke();
  else if (state == PURGE_STATE_IDLE && heartbeat % 256 == 0 && purge_past_mark(0) &&
           atomic_compare_exchange_strong(&purge_state, &idle, PURGE_STATE_WANTED))
    purge_begin();
#endif
}

static void purge_before_fork(void) {
  pthread_mutex_lock(&purge_pass);
  pthread_mutex_lock(&retain_lock);
}

static void purge_after_fork_parent(void) {
  pthread_mutex_unlock(&retain_lock);
  pthread_mutex_unlock(&purge_pass);
}

/* A forked child has no purger: it starts its own once it has committed another
 * PURGE_THRESHOLD bytes itself, so a child that allocates a little and execs, or enters
 * a user namespace, stays single-threaded. mimalloc's deferred-free call stays
 * registered (never cleared: see above); until the mark it does nothing. */
static void purge_after_fork(void) {
  pthread_mutex_unlock(&retain_lock);
  pthread_mutex_unlock(&purge_pass);
  retain_expire(true); /* the parent's held-back memory: no purger here to give it back */
  int state = atomic_load(&purge_state);
  if (state == PURGE_STATE_ON || state == PURGE_STATE_WANTED) {
    decommit_soon(false);
    purger_thread = (pthread_t)0; /* the parent's; its id may be a new thread's here */
    atomic_store(&purge_base, committed_bytes());
    atomic_store(&purge_poked, 0);
    atomic_store(&purge_parked, 0);
    atomic_store(&purge_state, PURGE_STATE_IDLE);
  }
}

/* The defaults, in this one place. A MIMALLOC_ variable a user set for the option (any
 * of its names: decommit_delay was reset_delay before 2.0 and is purge_delay from 2.1)
 * has the last word, as every MIMALLOC_ option. */
static bool user_set(const char *const *names) {
  /* Found as mimalloc finds it: case aside, among the first 256 entries. A setuid or
   * setgid program's are the attacker's, and the shim's default stands. */
  static const char prefix[] = "MIMALLOC_";
  char **env = getauxval(AT_SECURE) ? NULL : environ;
  for (; *names != NULL; names++) {
    size_t len = strlen(*names);
    for (int i = 0; env != NULL && i < 256 && env[i] != NULL; i++)
      if (strncasecmp(env[i], prefix, sizeof prefix - 1) == 0 &&
          strncasecmp(env[i] + sizeof prefix - 1, *names, len) == 0 &&
          env[i][sizeof prefix - 1 + len] == '=')
        return true;
  }
  return false;
}

static void purge_option(mi_option_t option, long value, const char *const *names) {
  if (!user_set(names))
    mi_option_set(option, value);
}

static void purge_start(void) {
  int purge = allocshim_purge_setting();
  if (purge == PURGE_INVALID)
    allocshim_say("ALLOCSHIM_PURGE=%s refused: it is off or whole seconds from 0 to %d; "
                  "the default is kept",
                  allocshim_env("PURGE"), PURGE_MAX_SECONDS);
  if (purge == PURGE_OFF) {
    atomic_store(&purge_state, PURGE_STATE_OFF);
    return;
  }
  /* The names this mimalloc reads: a 2.1 name set for 2.0, which ignores it, would
   * leave mimalloc's own 25 ms and hold nothing (30 MiB more stayed idle). */
#if MI_MALLOC_VERSION < 210
  static const char *const delay[] = {"DECOMMIT_DELAY", "RESET_DELAY", NULL};
  static const char *const extend[] = {"DECOMMIT_EXTEND_DELAY", NULL};
#else
  static const char *const delay[] = {"DECOMMIT_DELAY", "RESET_DELAY", "PURGE_DELAY", NULL};
  static const char *const extend[] = {"DECOMMIT_EXTEND_DELAY", "PURGE_EXTEND_DELAY", NULL};
#endif
  static const char *const cache[] = {"SEGMENT_DECOMMIT_DELAY", NULL};
  /* Asked for: the owners decommit as they free, at a measured cost, in 1 ms batches:
   * made for real, decommits due by the third free cost spawn 5x and prodcons 5x more. */
  if (purge >= 0) {
    purge_option(mi_option_decommit_delay, purge == 0 ? 0 : DECOMMIT_DELAY_MS, delay);
    purge_option(mi_option_decommit_extend_delay, 0, extend);
  }
  purge_option(mi_option_segment_decommit_delay, purge == 0 ? 0 : MIMALLOC_SEGMENT_DELAY_MS, cache);
  /* Memory is held back under the default setting only (retain_allowed), and not where
   * mimalloc's period for wholly free segments, which the purger waits out, would
   * stretch how long it is held, nor with huge OS pages, cut only at their own
   * boundaries. */
  atomic_store(&retain_allowed, retain_possible && purge < 0 && !user_set(delay) &&
                                    !user_set(cache) &&
                                    !mi_option_is_enabled(mi_option_large_os_pages));
  decommit_extend_mine = !user_set(extend);
  if (atomic_load(&purge_state) == PURGE_STATE_ON) /* started before this constructor */
    decommit_soon(true);
  purge_period = purge > 0 ? (unsigned)purge : purge == 0 ? 1 : PURGE_PERIOD_DEFAULT;
#if !defined(ALLOCSHIM_MIMALLOC_INSIDE)
  mi_register_deferred_free(purge_deferred, NULL);
#endif
  pthread_atfork(purge_before_fork, purge_after_fork_parent, purge_after_fork);
}

void be_start(void) {
  mi_register_error(errno_from_mimalloc, NULL);
  purge_start();
}

/* ---- Checked mode ---------------------------------------------------------------------
 * mimalloc keeps a map of its segments, safe to ask about any address. On 64-bit
 * targets it leaves out blocks above 1 GiB (mapped without its address hint, beyond
 * the map's reach); those are 64 KiB-aligned, which no glibc or stack pointer is, so
 * such pointers pass, as does anything this thread's heap owns. On 32-bit targets the
 * map misses large blocks of every size, so checked mode is not offered there. */
bool be_owns(const void *p) {
  return mi_is_in_heap_region(p) || (uintptr_t)p % 65536 == 0 || mi_check_owned(p);
}

/* Where the shim reads mimalloc's page records itself: compiled in, and on the CPUs
 * where that reading was verified (x86_64, aarch64 at 4-64 KiB pages). Under qemu at
 * ppc64el's 64 KiB pages it missed freed small blocks, and the i686 layout was never
 * read; there, as through libmimalloc.so, only foreign pointers are told. */
#if defined(ALLOCSHIM_MIMALLOC_INSIDE) && (defined(__x86_64__) || defined(__aarch64__))

/* The segment holding p, or NULL: the one p's address rounds down to, unless p lies
 * deep in a huge block, whose segment starts lower. mimalloc's own search down its
 * segment map (mi_is_in_heap_region) misses a huge block's segment when the two sit in
 * different words of the map (1 pointer in 40 into a 64 MiB block here), so the walk
 * down is the shim's, one segment size at a time. A candidate is read only once the
 * map says it lies inside some segment, so it is mapped; it is the one if it starts
 * with the cookie mimalloc derives from a segment's address (inside a huge block what
 * is read is user data: a match by chance is 1 in 2^64). */
static const mi_segment_t *mi_segment_holding(const void *p) {
  const mi_segment_t *s = _mi_ptr_segment(p);
  for (int step = 0; step < (1 << 16);
       step++, s = (const mi_segment_t *)((uintptr_t)s - MI_SEGMENT_SIZE)) {
    if (!mi_is_in_heap_region((const uint8_t *)s + 1) || _mi_ptr_cookie(s) != s->cookie)
      continue;
    return (const uint8_t *)p < (const uint8_t *)s + mi_segment_size((mi_segment_t *)s) ? s : NULL;
  }
  return NULL;
}

static bool mi_list_holds(const mi_page_t *page, const mi_block_t *list, const mi_block_t *b) {
  for (size_t n = 0; list != NULL && n < ((size_t)1 << 24); n++, list = mi_block_next(page, list))
    if (list == b)
      return true;
  return false;
}

/* Whether block b of a page this thread owns is on one of mimalloc's free lists: the
 * page's own two, the one other threads push their frees to, and the heap's list for
 * full pages. Only the owner takes blocks off them, and it is here, in a free: the
 * lists hold still while they are walked. Most blocks are settled by their first word,
 * which on a free list is the next free block (in the heap) or NULL. */
static bool mi_block_is_free(const mi_page_t *page, const mi_block_t *b) {
  const mi_block_t *next = (const mi_block_t *)__atomic_load_n(&b->next, __ATOMIC_RELAXED);
  if (next != NULL && ((uintptr_t)next % sizeof(void *) != 0 || !mi_is_in_heap_region(next)))
    return false;
  mi_heap_t *heap = mi_page_heap(page);
  return mi_list_holds(page, page->free, b) || mi_list_holds(page, page->local_free, b) ||
         mi_list_holds(page, mi_page_thread_free(page), b) ||
         (heap != NULL &&
          mi_list_holds(page, mi_atomic_load_ptr_relaxed(mi_block_t, &heap->thread_delayed_free),
                        b));
}

/* mimalloc 2.0.9 puts a page's blocks back to back from the page's start, so a pointer
 * is at a block's start or inside one. Whether that block is free is known for sure on
 * the thread that owns the page (mi_block_is_free), and on any thread once the page
 * has no live block left or has been given back; another thread's free lists change
 * under a reader, so they are not walked. A page that also holds aligned blocks hands
 * some out at an offset into a block, so there an offset is not called interior. */
enum check_block be_check_block(const void *p, const void **start) {
  const mi_segment_t *segment = mi_segment_holding(p);
  if (segment == NULL) {
    /* In no segment: a huge block above 1 GiB, beyond the map (see be_owns), or a huge
     * block already freed, whose memory went back to the system. The kernel tells. */
    if (retained_holds(p))
      return CHECK_BLOCK_FREED; /* its mapping held back for the next huge block */
    unsigned char resident;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (mincore((void *)((uintptr_t)p & ~(page - 1)), 1, &resident) != 0 && errno == ENOMEM)
      return CHECK_BLOCK_FREED;
    return CHECK_BLOCK_OK;
  }
  /* A huge segment is one page, after the segment's own slices; past its first 16 MiB
   * its slice records say nothing (mimalloc fills in only that many). */
  const mi_page_t *page =
      segment->kind == MI_SEGMENT_HUGE
          ? mi_slice_to_page((mi_slice_t *)&segment->slices[segment->segment_info_slices])
          : _mi_segment_page_of(segment, p);
  if (page->xblock_size == 0 || page->slice_count == 0)
    return CHECK_BLOCK_FREED; /* the page itself was given back to its segment */
  size_t psize, bsize = mi_page_block_size(page);
  const uint8_t *pstart = _mi_segment_page_start(segment, page, &psize), *a = p;
  if (a < pstart || a >= pstart + psize)
    return CHECK_BLOCK_NONE;
  size_t i = (size_t)(a - pstart) / bsize;
  const mi_block_t *b = (const mi_block_t *)(pstart + i * bsize);
  *start = b;
  if (i >= page->capacity)
    return CHECK_BLOCK_NONE; /* never handed out */
  if (a != (const uint8_t *)b && !page->flags.x.has_aligned)
    return CHECK_BLOCK_INTERIOR;
  if (__atomic_load_n(&page->used, __ATOMIC_RELAXED) == 0)
    return CHECK_BLOCK_FREED;
  if (mi_atomic_load_relaxed(&((mi_segment_t *)segment)->thread_id) == _mi_thread_id() &&
      mi_block_is_free(page, b))
    return CHECK_BLOCK_FREED;
  return CHECK_BLOCK_OK;
}
#else
enum check_block be_check_block(const void *p, const void **start) {
  (void)start;
  return retained_holds(p) ? CHECK_BLOCK_FREED : CHECK_BLOCK_OK;
}
#endif

/* glue.h runs the check in front of every free; mimalloc needs nothing started. */
bool be_check_start(void) { return sizeof(void *) >= 8; }

const char *be_version(void) {
  static char text[32];
  int v = mi_version(); /* 209 means 2.0.9 */
  snprintf(text, sizeof text, "%d.%d.%d", v / 100, v / 10 % 10, v % 10);
  return text;
}

int be_profile_status(void) { return ALLOC_ENOTSUP; }
uintptr_t be_profile_early_frame(void) { return 0; }

int be_profile_dump(int fd) {
  (void)fd;
  return -1;
}

int be_profile_activate(bool active) {
  (void)active;
  return -1;
}

bool be_profile_thread(bool on) {
  (void)on;
  return false;
}

/* The process's resident set, from /proc without stdio (no allocation). */
static size_t resident_bytes(void) {
  char buf[128];
  if (allocshim_read_file("/proc/self/statm", buf, sizeof buf) <= 0)
    return ALLOC_STAT_UNKNOWN;
  char *p = buf;
  strtoull(p, &p, 10); /* total program size; resident comes next */
  return (size_t)strtoull(p, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

/* Compiled in, the counts themselves (loads only: idle return reads them on allocation
 * slow paths); through libmimalloc.so, the public call, which also asks the kernel for
 * the process's times. mimalloc 2.0.9's committed count gains about a MiB on every
 * huge block of a new size freed (a program replacing 2 blocks of 17-25 MiB reads 969
 * MiB after 1000 replacements, raw libmimalloc too), while what it has mapped is
 * counted exactly: compiled in, no more than that is reported. */
static size_t committed_bytes(void) {
#if defined(ALLOCSHIM_MIMALLOC_INSIDE)
  int64_t commit = __atomic_load_n(&_mi_stats_main.committed.current, __ATOMIC_RELAXED);
  size_t mapped = mapped_bytes();
  return commit <= 0 ? 0 : (size_t)commit < mapped ? (size_t)commit : mapped;
#else
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  return commit;
#endif
}

void be_stats(alloc_stats_t *out) {
  out->allocated = ALLOC_STAT_UNKNOWN; /* release builds keep no live-byte count */
  out->active = committed_bytes();
  out->resident = resident_bytes();
  out->mapped = ALLOC_STAT_UNKNOWN;
  out->retained = ALLOC_STAT_UNKNOWN;
}

/* mimalloc 2.0.9 counts what it resets and decommits in internal statistics that only
 * its printed report shows: no figure to read, so none is made up. */
size_t be_returned_bytes(void) { return ALLOC_STAT_UNKNOWN; }

bool be_purge(void) {
  mi_thread_init(); /* mi_collect acts on this thread's heap, which it may not have yet */
  size_t before = committed_bytes(), rss = resident_bytes();
  mi_collect(true); /* what the shim holds back too */
  return committed_bytes() < before || resident_bytes() < rss;
}
