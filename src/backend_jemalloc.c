/* jemalloc's half of the backend: version, heap-profile control, start-up options,
 * checked mode, and jemalloc's extended API re-exported for programs built against it. */
#define _GNU_SOURCE
#include "backend.h"
#include "check.h"
#include "internal.h"

#include <allocshim.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT ALLOC_API

/* A program linked against libjemalloc that calls mallocx() or sdallocx() while the
 * shim is preloaded must reach this copy of jemalloc, or its pointers would cross
 * allocators. So jemalloc's own extended API is part of the shim's ABI. */
EXPORT void *mallocx(size_t n, int f) { return _mallocx(n, f); }
EXPORT void *rallocx(void *p, size_t n, int f) { return _rallocx(p, n, f); }
EXPORT size_t xallocx(void *p, size_t n, size_t x, int f) { return _xallocx(p, n, x, f); }
EXPORT size_t sallocx(const void *p, int f) { return _sallocx(p, f); }
EXPORT void dallocx(void *p, int f) { _dallocx(p, f); }
EXPORT void sdallocx(void *p, size_t n, int f) { _sdallocx(p, n, f); }
EXPORT size_t nallocx(size_t n, int f) { return _nallocx(n, f); }
EXPORT int mallctl(const char *name, void *o, size_t *ol, void *n, size_t nl) {
  return _mallctl(name, o, ol, n, nl);
}
EXPORT int mallctlnametomib(const char *name, size_t *m, size_t *ml) {
  return _mallctlnametomib(name, m, ml);
}
EXPORT int mallctlbymib(const size_t *m, size_t ml, void *o, size_t *ol, void *n, size_t nl) {
  return _mallctlbymib(m, ml, o, ol, n, nl);
}
EXPORT void malloc_stats_print(void (*cb)(void *, const char *), void *o, const char *opts) {
  _malloc_stats_print(cb, o, opts);
}

/* ---- The shim's jemalloc defaults --------------------------------------------------
 * All that the shim changes in jemalloc's configuration is here, in two steps:
 *  1. ALLOCSHIM_JEMALLOC_DEFAULTS, ordinary options, which _secure_getenv (below) puts
 *     first of jemalloc's sources, so each later one overrides them in libjemalloc's
 *     documented order: the program's malloc_conf, /etc/malloc.conf, then ALLOCSHIM_
 *     settings and MALLOC_CONF;
 *  2. _pac_init(), what jemalloc 5.3 fails to do with those options itself;
 *  3. _arena_decay(), no purge of a whole arena at a thread's end below idle return's
 *     mark (below, with idle return), which EXTENT_FIT makes safe.
 * Every other option the shim passes on was asked for (ALLOCSHIM_PROF*), or is not a
 * default but a need: checked mode's tcache:false, last so that nothing overrides it.
 *
 * jemalloc 5.3 purges a free extent of 8 MiB or more (after coalescing) at once, and
 * serves such requests from an arena that keeps nothing: a program cycling through
 * blocks of a few MiB page-faults on every reuse (bench/ "large": 2x glibc's time).
 * At 16 MiB that workload ran 13x faster with the same peak RSS, and 32 MiB (glibc's
 * largest mmap threshold) costs it 4% more RSS; 32 MiB it is, because blocks of 16-32
 * MiB are then recycled too, which the zeroing below needs ("hugecalloc": 9.6 s -> 0.5
 * s at a tenth of its size). The 10 s decay still returns the memory. jemalloc also
 * purges a coalesced free extent at once at the threshold: the shim moves that to
 * PURGE_AT_ONCE (_pac_init, below). HUGE_BLOCK is also where zeroing stops using
 * memset (below): one number. */
#define HUGE_BLOCK 33554432
/* jemalloc 5.3 takes a page run for a slab or a small large block out of a free extent
 * only if the extent is at most 64 times (2^6) its size: a thread's freed pages, once
 * coalesced past that, stay unused until the decay returns them, and new pages are
 * mapped meanwhile. With its background thread on (idle return, past the mark) nothing
 * else returns them: short-lived threads grew a process by 250 MiB a second (bench/
 * "spawn": 1 GiB peak against glibc's 3 MiB; docs/PERFORMANCE.md). At 2^10 the pages are
 * reused: 10 MiB, a fiftieth of the page faults, and no workload of bench/ moved. */
#define EXTENT_FIT 10
#define STR_OF(x)  #x
#define STR(x)     STR_OF(x)
#define ALLOCSHIM_JEMALLOC_DEFAULTS                                                                \
  "oversize_threshold:" STR(HUGE_BLOCK) ",lg_extent_max_active_fit:" STR(EXTENT_FIT)

/* Idle return's state (below): the options can switch it off before it could start. */
enum { PURGE_STATE_IDLE, PURGE_STATE_CHILD, PURGE_STATE_WANTED, PURGE_STATE_ON, PURGE_STATE_OFF };
static atomic_int purge_state;
static void purge_after_fork(void);

/* jemalloc 5.3 gives the threshold a second meaning: a freed extent that, coalesced
 * with its free neighbours, reaches it is purged at once, whatever the decay
 * (extent_record). Blocks of a few MiB reach 32 MiB as soon as two neighbours are
 * free, so most frees purged, and each reuse faulted its pages in again (bench/
 * hugecalloc: 2.5 million faults, 1.7x glibc's time; docs/PERFORMANCE.md). Each arena
 * takes its copy of that threshold from pac_init, and under the shim's default gets
 * PURGE_AT_ONCE: smaller free extents decay on the 10 s clock (idle return's thread
 * gives them back). Blocks of HUGE_BLOCK and more still go to the oversize arena, which
 * decays at once; one that reaches a normal arena anyway (realloc grown in place, a
 * thread bound to an arena) is purged when freed from PURGE_AT_ONCE up. A threshold the
 * user sets, the shim's own value included, keeps both meanings, in arena 0 too: jemalloc
 * creates arena 0 with the built-in 8 MiB before it puts the option into effect
 * (arena_init_huge), so the copy is made here, with jemalloc's range check, for every
 * arena. (mallctl could set arena 0 after the fact, but its first use costs every
 * process 30 KiB of statistics per arena.) */
#define PURGE_AT_ONCE ((size_t)8 * HUGE_BLOCK)

/* jemalloc's start, inside the program's first allocation, changes errno: its option
 * parser sets it to 0 before each number (and the shim's defaults are numbers), and the
 * CPU count ENOENT where /sys is missing. glibc's first allocation leaves errno alone.
 * _secure_getenv keeps the program's errno as jemalloc starts reading options, and the
 * last step of every start (malloc_tsd_boot1, after profiling's and the CPUs') puts it
 * back. A start that fails after the options (no thread-specific key left, say) is tried
 * again at the next allocation without reading them: malloc_tsd_boot0, first of what is
 * tried again, keeps that allocation's errno instead, for none of the first try's to
 * come back. */
static int conf_errno;
static bool conf_errno_kept, conf_errno_fresh;
void *_malloc_tsd_boot0(void) {
  if (!conf_errno_fresh)
    conf_errno = errno, conf_errno_kept = true;
  conf_errno_fresh = false;
  return je_malloc_tsd_boot0();
}
void _malloc_tsd_boot1(void) {
  je_malloc_tsd_boot1();
  if (conf_errno_kept) {
    conf_errno_kept = false;
    errno = conf_errno;
  }
}
static bool oversize_named; /* some option of the user's names it (_secure_getenv) */
bool _pac_init(void *tsdn, void *pac, void *base, void *emap, void *edata_cache, void *cur_time,
               size_t oversize_threshold, ssize_t dirty_decay_ms, ssize_t muzzy_decay_ms,
               void *pac_stats, void *stats_mtx) {
  size_t opt = je_opt_oversize_threshold;
  if (opt == HUGE_BLOCK && !oversize_named)
    oversize_threshold = PURGE_AT_ONCE;
  else if (opt >= ((size_t)16 << 10) && opt <= PTRDIFF_MAX) /* jemalloc's large classes */
    oversize_threshold = opt;
  return je_pac_init(tsdn, pac, base, emap, edata_cache, cur_time, oversize_threshold,
                     dirty_decay_ms, muzzy_decay_ms, pac_stats, stats_mtx);
}

/* A program's own options, the way libjemalloc documents them: a global
 * `const char *malloc_conf` in the program. The build renamed jemalloc's definition, so
 * the name is free for this weak reference, which the dynamic linker binds when it
 * loads the shim (to the program's symbol, or to libjemalloc's NULL one, or to nothing):
 * no lookup at run time, where dlsym could allocate inside jemalloc's first allocation.
 * A program exports the symbol when it links libjemalloc or the shim, which define or
 * refer to it; linked with the static archive, it binds at link time. */
extern const char *const malloc_conf __attribute__((weak));

/* How much of an options string jemalloc takes in. It reads "key:value" pairs, a key
 * of [A-Za-z0-9_] and a value up to the next comma, and stops at the first that is not
 * one, with a warning (malloc_conf_next). Returned: the length of the pairs before that
 * point, without their last comma; what follows is the source's malformed rest. */
static bool conf_key_char(char c) {
  return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static size_t conf_readable(const char *conf) {
  size_t good = 0, i = 0;
  for (;;) {
    while (conf_key_char(conf[i]))
      i++;
    if (conf[i] != ':')
      return good;
    good = i += strcspn(conf + i, ",");
    if (conf[i] == '\0' || conf[++i] == '\0')
      return good;
  }
}

/* The next value the first n bytes of an options string give `key` (as a key, not
 * inside some other option's value), from byte *at on, and its length; *at moves past
 * it. NULL when they give no more. */
static const char *conf_next_value(const char *conf, size_t n, const char *key, size_t *at,
                                   size_t *len) {
  size_t k = strlen(key);
  for (size_t i = *at; i < n; i += strcspn(conf + i, ",") + 1)
    if (k < n - i && strncmp(conf + i, key, k) == 0 && conf[i + k] == ':') {
      const char *value = conf + i + k + 1;
      *len = strcspn(value, ",");
      *at = i + k + 1 + *len + 1;
      return value;
    }
  return NULL;
}
static bool conf_names(const char *conf, size_t n, const char *key) {
  size_t at = 0, len;
  return conf_next_value(conf, n, key, &at, &len) != NULL;
}
/* abort_conf as jemalloc has it after the first n bytes of a string, from `value`
 * before them: "true" and "false" set it, any other value is an error that leaves it. */
static bool conf_abort(const char *conf, size_t n, bool value) {
  size_t at = 0, len;
  for (const char *v; (v = conf_next_value(conf, n, "abort_conf", &at, &len)) != NULL;)
    if (len == 4 && strncmp(v, "true", 4) == 0)
      value = true;
    else if (len == 5 && strncmp(v, "false", 5) == 0)
      value = false;
  return value;
}

/* One piece of the assembled options: n bytes of text, after a comma unless glued (a
 * malformed rest that begins with the comma its source had); user: from a user's
 * source, not the shim's own. */
struct conf_part {
  const char *text;
  size_t n;
  bool glued, user;
};

static struct conf_part conf_text(const char *text) {
  return (struct conf_part){.text = text, .n = strlen(text)};
}

/* Joins the pieces, into conf[size] when they fit, else into a mapping of their own
 * (never unmapped: jemalloc asks once). Where no memory can be mapped, the pieces that
 * fit, in order, a user's only where it leaves room for all of the shim's own after it:
 * a user's long source is left out rather than the shim's needs (checked mode's
 * tcache:false last of all). */
static char *conf_join(char *conf, size_t size, const struct conf_part *part, size_t parts) {
  size_t need = 1, own = 0;
  for (size_t i = 0; i < parts; i++) {
    need += part[i].n > 0 ? part[i].n + 1 : 0;
    own += part[i].n > 0 && !part[i].user ? part[i].n + 1 : 0;
  }
  if (need > size) {
    char *mapped = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped != MAP_FAILED)
      conf = mapped, size = need;
  }
  size_t len = 0;
  for (size_t i = 0; i < parts; i++) {
    bool comma = len > 0 && !part[i].glued;
    own -= part[i].n > 0 && !part[i].user ? part[i].n + 1 : 0;
    if (part[i].n == 0 || len + comma + part[i].n + (part[i].user ? own : 0) >= size)
      continue;
    if (comma)
      conf[len++] = ',';
    memcpy(conf + len, part[i].text, part[i].n);
    len += part[i].n;
  }
  conf[len] = '\0';
  return conf;
}

/* jemalloc reads /etc/malloc.conf's link itself, as a source of its own ahead of the
 * shim's string, which repeats it after the program's options. Read twice, an invalid
 * value in it was warned about twice, and its error came before the program's
 * abort_conf:true was checked (an abort where libjemalloc has none: fourth review). So
 * jemalloc finds the link empty, and the shim's string is where it is read. */
ssize_t _readlink(const char *path, char *buf, size_t size) {
  return strcmp(path, "/etc/malloc.conf") == 0 ? 0 : readlink(path, buf, size);
}

/* jemalloc reads its options with secure_getenv("MALLOC_CONF") during its first
 * allocation, which can come before any constructor of ours. The build renames that
 * call to this function, so the shim's options are in place however early that is.
 * jemalloc lets later options win; this string comes after its other sources (but
 * malloc_conf_2_conf_harder, the shim's too), so it repeats the earlier ones in
 * libjemalloc's order, the shim's defaults first:
 * defaults, the program's malloc_conf, /etc/malloc.conf, ALLOCSHIM_ settings,
 * MALLOC_CONF, then checked mode's need. jemalloc stops reading a string at its first
 * malformed pair, which in one joined string would silently drop every later source
 * (a MALLOC_CONF ending in a comma would switch checked mode's tcache:false off): each
 * source gives only the pairs jemalloc reads of it, and the first malformed rest goes
 * last, where it costs nothing but jemalloc's warning (for that source only: a second
 * malformed one goes unmentioned). No allocation is allowed here. */
char *_secure_getenv(const char *name) {
  if (strcmp(name, "MALLOC_CONF") != 0)
    return secure_getenv(name);
  /* This runs inside some caller's first allocation, whose errno must not change: it
   * is put back on the way out (the link below is missing on most systems), and again
   * once jemalloc has started (_malloc_tsd_boot1). */
  conf_errno = errno, conf_errno_kept = conf_errno_fresh = true;
  static char conf[4096];
  const char *user = secure_getenv("MALLOC_CONF");
  /* jemalloc's third source: the name a symbolic link /etc/malloc.conf points to. The
   * shim reads it here, in its place among the others (_readlink). */
  char link[PATH_MAX + 1]; /* jemalloc reads up to PATH_MAX bytes of it, and so do we */
  ssize_t n = readlink("/etc/malloc.conf", link, PATH_MAX);
  link[n > 0 ? n : 0] = '\0';
  /* The user's sources, and what jemalloc reads of each. */
  enum { PROGRAM, LINK, USER, SOURCES };
  const char *source[SOURCES] = {&malloc_conf ? malloc_conf : NULL, link, user};
  struct conf_part read[SOURCES] = {{0}}, rest = {0};
  /* jemalloc aborts at the end of a source if abort_conf is true there and some source
   * so far had an error: joined, the sources would be judged only by abort_conf's last
   * value. The last source that leaves it true (after which a later one says false)
   * ends the string, and the others go to jemalloc's next source, malloc_conf_2_conf_
   * harder: the check at the end of each gives libjemalloc's answer, for an error in
   * any source is one at or before the last that leaves abort_conf true. */
  bool abort_conf = false;
  int last_true = -1, rest_of_source = SOURCES;
  /* What they name. The threshold is named rather than compared: a user's 32 MiB is a
   * choice, the shim's default is not (a value jemalloc refuses leaves 32 MiB, and is
   * taken as that choice). */
  bool background_named = false;
  for (int i = 0; i < SOURCES; i++) {
    if (source[i] == NULL)
      continue;
    read[i] = (struct conf_part){.text = source[i], .n = conf_readable(source[i]), .user = true};
    if ((abort_conf = conf_abort(source[i], read[i].n, abort_conf)))
      last_true = i;
    const char *rest_of = source[i] + read[i].n;
    if (rest.n == 0 && *rest_of != '\0') {
      /* glued: jemalloc then sees the rest as written */
      rest = (struct conf_part){
          .text = rest_of, .n = strlen(rest_of), .glued = read[i].n > 0, .user = true};
      rest_of_source = i;
    }
    oversize_named |= conf_names(source[i], read[i].n, "oversize_threshold");
    background_named |= conf_names(source[i], read[i].n, "background_thread");
  }
  /* ALLOCSHIM_PURGE=<seconds>: how long freed memory stays before it goes back. */
  int purge = allocshim_purge_setting();
  char decay[64] = "";
  if (purge >= 0)
    snprintf(decay, sizeof decay, "dirty_decay_ms:%d", purge * 1000);
  /* ALLOCSHIM_PROF_LEAKS: profiling with every allocation sampled (lg_prof_sample:0,
   * after any ALLOCSHIM_PROF_SAMPLE), so that the check at exit (src/leaks.c) sees
   * every block still live. Not jemalloc's prof_leak_error: 5.3 calls _exit(1) before
   * it writes the final profile (left empty) and before stdio is flushed (the program's
   * last output is lost), and it counts the C library's stdio buffers as leaks. */
  bool leaks = allocshim_env_flag("PROF_LEAKS");
  char prof[96] = "";
  if (allocshim_env_flag("PROF") || leaks) {
    /* ALLOCSHIM_PROF_SAMPLE: mean bytes between samples; jemalloc wants its log2.
     * A value profile_parse_sample refuses keeps jemalloc's default; profile_start says
     * so, once, from the constructor. */
    const char *sample = allocshim_env("PROF_SAMPLE");
    unsigned long long bytes = 0;
    snprintf(prof, sizeof prof, "prof:true,prof_active:true");
    if (sample != NULL && profile_parse_sample(sample, &bytes))
      snprintf(prof + strlen(prof), sizeof prof - strlen(prof), ",lg_prof_sample:%d",
               63 - __builtin_clzll(bytes));
    if (leaks)
      snprintf(prof + strlen(prof), sizeof prof - strlen(prof), ",lg_prof_sample:0");
  }
  /* Idle return leaves jemalloc's background thread alone if any source names it, and
   * stays out of the leak gate's way: a second thread would keep it from freeing the C
   * library's caches at exit (src/leaks.c). */
  if (purge == PURGE_OFF || leaks || background_named)
    atomic_store(&purge_state, PURGE_STATE_OFF);
  /* Checked mode reads a block's state from jemalloc's own records (be_check_block); a
   * block parked in a thread cache still looks allocated there, so there is none. After
   * every source, so that none brings one back. */
  const char *check = "";
#if defined(__x86_64__)
  if (check_enabled())
    check = "tcache:false";
#endif
  /* The rest's error now comes last, where abort_conf has its last value: libjemalloc
   * aborts for it if some source from the rest's own on leaves abort_conf true. */
  bool abort_at_rest = rest.n > 0 && last_true >= rest_of_source;
  const struct conf_part part[] = {
      conf_text(ALLOCSHIM_JEMALLOC_DEFAULTS),
      read[PROGRAM],
      read[LINK],
      conf_text(decay),
      conf_text(prof),
      read[USER],
      conf_text(check),
      conf_text(abort_at_rest ? "abort_conf:true" : ""),
      rest,
  };
  /* Where each user source's part ends in part[], for the split. */
  const size_t parts = sizeof part / sizeof *part, ends[SOURCES] = {2, 3, 6};
  size_t split = last_true >= 0 && !abort_conf ? ends[last_true] : parts;
  static char next[4096];
  _malloc_conf_2_conf_harder =
      split < parts ? conf_join(next, sizeof next, part + split, parts - split) : NULL;
  char *joined = conf_join(conf, sizeof conf, part, split);
  errno = conf_errno;
  return joined;
}

/* jemalloc's options are in place from its first allocation (above), and every arena's
 * threshold from its creation (_pac_init); the constructor only says what it could not
 * do then, arms idle return for forked children, and opens the profiler's unwinder. */
HIDDEN bool unwinder_open(const char *soname); /* the profiler's unwinder, below */

void be_start(void) {
  if (allocshim_purge_setting() == PURGE_INVALID)
    allocshim_say("ALLOCSHIM_PURGE=%s refused: it is off or whole seconds from 0 to %d; "
                  "jemalloc's 10 s decay is kept",
                  allocshim_env("PURGE"), PURGE_MAX_SECONDS);
  pthread_atfork(NULL, NULL, purge_after_fork);
  if (be_profile_status() != ALLOC_OK)
    return;
  /* What the loader allocates for libgcc_s is the runtime's, and lives to the end:
   * sampled here, before the unwinder is open, it would sit in every profile as an early
   * sample (below). So this thread takes no samples meanwhile. */
  bool was = be_profile_thread(false);
  if (!unwinder_open("libgcc_s.so.1"))
    allocshim_say("libgcc_s.so.1 could not be opened: heap profiles will have no stacks");
  if (was)
    be_profile_thread(true);
}

/* ---- Idle return ----------------------------------------------------------------------
 * jemalloc gives freed memory back as it decays (dirty_decay_ms, 10 s), but only when
 * some thread calls into it: a server that goes quiet keeps its peak for good. Its
 * background thread purges on its own clock, and sleeps while nothing is left to purge,
 * but costs every process a thread from its first allocation, and a process with a
 * second thread can no longer unshare(CLONE_NEWUSER). So the shim starts it only once
 * jemalloc has mapped PURGE_THRESHOLD bytes: _mmap counts them, and the next thread-cache
 * garbage-collection event switches the thread on (one thread for every arena). That
 * event is the safe moment: jemalloc runs it every 64 KiB a thread allocates or frees,
 * at the end of the call, holding no lock, with its state consistent and nothing in
 * progress, so pthread_create's own allocations go through as any other. The events
 * reach the shim through the renamed calls of src/jemalloc_names.def ("hook"); the fast
 * paths never see them, and each event costs one load. */

/* A forked child of a process past the mark waits for this many allocation events of
 * its own (64 KiB each: 64 MiB) before it starts a thread: one that allocates a little
 * and execs, or that enters a user namespace, must stay single-threaded. */
#define PURGE_CHILD_EVENTS 1024

static atomic_size_t mapped_bytes;
static atomic_int child_events;

/* MAP_FIXED calls are jemalloc committing or decommitting what it mapped already. */
static void purge_count(size_t len, bool mapped) {
  if (!mapped) {
    size_t now = atomic_load_explicit(&mapped_bytes, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(&mapped_bytes, &now, now > len ? now - len : 0))
      ;
    return;
  }
  size_t total = atomic_fetch_add_explicit(&mapped_bytes, len, memory_order_relaxed) + len;
  int idle = PURGE_STATE_IDLE;
  if (total >= PURGE_THRESHOLD)
    atomic_compare_exchange_strong(&purge_state, &idle, PURGE_STATE_WANTED);
}

static void purge_begin(void) {
  int wanted = PURGE_STATE_WANTED;
  if (!atomic_compare_exchange_strong(&purge_state, &wanted, PURGE_STATE_ON))
    return; /* another thread's event got here first */
  /* This runs inside an allocation that succeeds: errno is the program's. */
  int saved = errno;
  /* The program may have switched the threads on itself (mallctl) with its own count. */
  bool on = false;
  size_t len = sizeof on;
  if (allocshim_under_seccomp() || _mallctl("background_thread", &on, &len, NULL, 0) != 0 || on) {
    atomic_store(&purge_state, PURGE_STATE_OFF);
  } else {
    size_t one = 1;
    on = true;
    /* jemalloc says on stderr itself when it cannot create the thread. */
    if (_mallctl("max_background_threads", NULL, NULL, &one, sizeof one) != 0 ||
        _mallctl("background_thread", NULL, NULL, &on, sizeof on) != 0)
      atomic_store(&purge_state, PURGE_STATE_OFF);
  }
  errno = saved;
}

/* A forked child has no background thread (jemalloc stops them in the child). If the
 * parent had one, or wanted one, the child starts its own only after allocating
 * PURGE_CHILD_EVENTS x 64 KiB itself. */
static void purge_after_fork(void) {
  int state = atomic_load(&purge_state);
  if (state == PURGE_STATE_ON || state == PURGE_STATE_WANTED || state == PURGE_STATE_CHILD) {
    atomic_store(&child_events, PURGE_CHILD_EVENTS);
    atomic_store(&purge_state, PURGE_STATE_CHILD);
  }
}

/* jemalloc 5.3 purges every dirty page of an arena when the last thread bound to it
 * ends, unless its background thread runs (tcache_destroy). Before idle return's mark
 * that is each time: a program that starts short-lived threads (bench/ "spawn", "churn")
 * gave back and faulted in each thread's pages again, twice glibc's page faults and up
 * to 1.5x its time. Below the mark (idle return armed, its thread not started yet) the
 * shim makes that purge an ordinary decay step: the next thread given the arena reuses
 * the pages (EXTENT_FIT, above, lets it), what stays is under the mark, and past it the
 * background thread returns it on the decay clock. Anywhere else (the thread started,
 * a forked child waiting for its own mark, ALLOCSHIM_PURGE=off, a user's
 * background_thread option) jemalloc decides as it does alone, but for one case: with
 * the thread started jemalloc no longer purges at a thread's end at all, and an arena
 * the program made itself (arenas.create) that its last thread left is purged as it
 * would be without that thread. The next thread is given an automatic arena, never that
 * one unless the program binds it again: short-lived threads each on an arena of its
 * own grew a process to 5 GiB where glibc took 25 MiB (found by an attacker review). */
static _Thread_local bool thread_ending __attribute__((tls_model("initial-exec")));
/* The arena of the last decay while the thread ends: jemalloc's last one there is the
 * ending thread's own arena (tcache_destroy). The ones before it come from its cache's
 * flush, for whatever arena each cached block came from, such as one the program uses
 * only through MALLOCX_ARENA (no thread bound, yet in use): not this thread's to purge. */
static _Thread_local void *ending_arena __attribute__((tls_model("initial-exec")));
static bool arena_is_manual(const void *arena) {
  unsigned base = __atomic_load_n(&je_manual_arena_base, __ATOMIC_RELAXED);
  for (unsigned i = 0; i < base && i < sizeof je_arenas.slot / sizeof *je_arenas.slot; i++)
    if (__atomic_load_n(&je_arenas.slot[i], __ATOMIC_ACQUIRE) == arena)
      return false;
  return true;
}
void _tcache_cleanup(void *tsd) {
  thread_ending = true;
  ending_arena = NULL;
  je_tcache_cleanup(tsd);
  thread_ending = false;
  void *arena = ending_arena;
  if (arena != NULL && atomic_load_explicit(&purge_state, memory_order_relaxed) == PURGE_STATE_ON &&
      je_arena_nthreads_get(arena, false) == 0 && arena_is_manual(arena))
    je_arena_decay(tsd, arena, false, true);
}
void _arena_decay(void *tsdn, void *arena, bool is_background_thread, bool all) {
  if (thread_ending) {
    int state = atomic_load_explicit(&purge_state, memory_order_relaxed);
    if (all && (state == PURGE_STATE_IDLE || state == PURGE_STATE_WANTED))
      all = false;
    ending_arena = arena;
  }
  je_arena_decay(tsdn, arena, is_background_thread, all);
}

void _tcache_gc_event(void *tsd, uint64_t elapsed) {
  je_tcache_gc_event_handler(tsd, elapsed);
  int state = atomic_load_explicit(&purge_state, memory_order_relaxed);
  if (state == PURGE_STATE_CHILD && atomic_fetch_sub(&child_events, 1) == 1) {
    atomic_compare_exchange_strong(&purge_state, &state, PURGE_STATE_WANTED);
    state = PURGE_STATE_WANTED;
  }
  if (state == PURGE_STATE_WANTED)
    purge_begin();
}

void _tcache_gc_dalloc_event(void *tsd, uint64_t elapsed) {
  je_tcache_gc_dalloc_event_handler(tsd, elapsed);
  if (atomic_load_explicit(&purge_state, memory_order_relaxed) == PURGE_STATE_WANTED)
    purge_begin();
}

/* ---- Zeroing ---------------------------------------------------------------------------
 * calloc served from a recycled extent needs it zeroed, and jemalloc 5.3 does that by
 * purging it (MADV_DONTNEED), unless thp:always: then it memsets. Purged, every page of
 * the block faults a fresh zero page in at its first touch, which costs more than
 * writing the zeros to pages still resident (bench/ "hugecalloc", blocks of 5-25 MiB
 * replaced 2000 times: docs/PERFORMANCE.md). Below HUGE_BLOCK the shim memsets, as
 * glibc does for a recycled chunk below its largest mmap threshold; a larger calloc'd
 * block may be touched sparsely, and purging keeps the untouched part out of memory,
 * so jemalloc's way stays there. */
void _ehooks_zero(void *addr, size_t size) {
  if (size < HUGE_BLOCK)
    memset(addr, 0, size);
  else
    je_ehooks_default_zero_impl(addr, size);
}

/* ---- Checked mode ---------------------------------------------------------------------
 * jemalloc 5.3 has no lookup that is safe on a pointer it never mapped (arenas.lookup
 * and free itself walk its radix tree assuming the pointer is known, and fault). So the
 * build renames jemalloc's mmap, munmap and sbrk to the three functions below, which
 * record its mappings; and a dalloc hook, which jemalloc runs before it touches the
 * pointer, checks every free against them. Without the hook jemalloc's fast paths run
 * untouched: checked mode costs nothing when it is off. */
/* A failed mmap or sbrk leaves errno as it was. jemalloc never reads their errno: the
 * calls that report failure through errno (malloc, aligned_alloc) set ENOMEM
 * themselves, and posix_memalign must leave errno untouched (src/backend.h). Restoring
 * it here, on the failure path only, keeps the cost off posix_memalign's fast path.
 * A new mapping is recorded after the kernel made it and before jemalloc hands any of
 * it out, so no pointer into it can reach a free before it is in the table. */
void *_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  int saved = errno;
  void *p = mmap(addr, len, prot, flags, fd, off);
  if (p == MAP_FAILED) {
    errno = saved;
    return p;
  }
  if (check_enabled())
    check_ranges_add(p, len);
  if ((flags & MAP_FIXED) == 0)
    purge_count(len, true);
  return p;
}

/* The range leaves the table before the kernel takes it back, never after: once it is
 * unmapped another thread's mmap may get it back and record it, and a removal coming
 * later would delete that thread's range (a false alarm on its next free). Before the
 * munmap nothing in the range is live, since jemalloc is giving it up, so the early
 * removal cannot make a valid pointer look foreign. If the kernel refuses (ENOMEM when
 * a split would pass vm.max_map_count), the range is still mapped, nobody else can
 * have been given it, and it goes back in. */
int _munmap(void *addr, size_t len) {
  bool checked = check_enabled();
  if (checked)
    check_ranges_remove(addr, len);
  int r = munmap(addr, len);
  if (r != 0 && checked)
    check_ranges_add(addr, len);
  if (r == 0)
    purge_count(len, false);
  return r;
}

void *_sbrk(intptr_t increment) {
  int saved = errno;
  void *old = sbrk(increment);
  if (old == (void *)-1)
    errno = saved;
  else if (increment > 0 && check_enabled())
    check_ranges_add(old, (size_t)increment);
  return old;
}

bool be_owns(const void *p) { return check_ranges_hold(p); }

/* jemalloc's experimental hook interface (internal hook.h of 5.3; not in its public
 * header). Only the dalloc hook is used. */
typedef struct {
  void *alloc_hook;
  void (*dalloc_hook)(void *extra, int type, void *address, uintptr_t args_raw[3]);
  void *expand_hook;
  void *extra;
} je_hooks;

/* jemalloc runs the hook before free, dallocx and sdallocx touch the pointer (types 0-2),
 * and after realloc and rallocx have moved a block (3, 4): by then the old block is gone,
 * and realloc's pointer was checked on the way in (glue.h). */
enum { JE_HOOK_DALLOC_REALLOC = 3 };
static void check_dalloc(void *extra, int type, void *address, uintptr_t args_raw[3]) {
  (void)extra, (void)args_raw;
  if (type < JE_HOOK_DALLOC_REALLOC)
    check_pointer("free", address);
}

/* ---- Is it a live block, and its start? -----------------------------------------------
 * jemalloc 5.3's radix tree maps every page of an extent (a slab of small regions, or
 * one large block) to the extent's record, edata_t; for a large block only its first
 * and last pages. jemalloc's own lookup assumes the page is in the tree; its slow path,
 * rtree_leaf_elm_lookup_hard, asked with dependent=false, says NULL instead, so it is
 * safe on any address. Layouts below are jemalloc 5.3's for x86_64 (48-bit addresses,
 * the only target the jemalloc build is for), from its rtree.h and edata.h. */

/* A tree leaf: the edata_t's address in bits 7-47 (it is 128-byte aligned), the size
 * class index above them, the extent state in bits 2-4 (0 active, then dirty, muzzy,
 * retained and two transitional ones), 1 in bit 0 for a slab. */
#define JE_LEAF_EDATA(b) ((const struct je_edata *)((b) & (((uintptr_t)1 << 48) - 128)))
#define JE_LEAF_SZIND(b) ((unsigned)((b) >> 48))
#define JE_LEAF_STATE(b) ((unsigned)((b) >> 2) & 7)
#define JE_LEAF_SLAB(b)  ((b)&1)

/* edata_t's head: the block's (or slab's) address, for a large block offset into its
 * first page by up to a page (jemalloc's cache-oblivious placement); the extent's
 * size in whole pages (low bits hold a serial number); and, for a slab, one bit per
 * region, set while the region is free. */
struct je_edata {
  uint64_t bits;
  uintptr_t addr;
  size_t size_esn;
  void *ps;
  uint64_t sn;
  void *links[3];
  uint64_t slab_free[8];
};
_Static_assert(offsetof(struct je_edata, slab_free) == 64, "jemalloc 5.3's edata_t layout");

/* In edata_t's bits, above the arena index (12 bits) and five flags: the state (3
 * bits), then the size class index (8 bits). */
#define JE_EDATA_STATE(b) ((unsigned)((b) >> 17) & 7)
#define JE_EDATA_SZIND(b) ((unsigned)((b) >> 20) & 0xff)

/* The size classes, read once when checked mode starts. */
enum { JE_MAX_BINS = 64 };
static struct {
  size_t page, nbins, nsizes;
  size_t reg_size[JE_MAX_BINS];
  uint32_t nregs[JE_MAX_BINS];
} je_classes;

/* The tree leaf for the page holding a, or 0 where the tree has none. The lookup keeps
 * a cache of recent leaves in the context it is given; a scratch one leaves each
 * thread's own alone. A leaf jemalloc cleared (a freed large block's page once its
 * extent coalesced with a free neighbour, rtree_clear) keeps an invalid size class but
 * no record: it counts as none, so the walk goes on down (it was read through, and a
 * double free of a lone large block crashed). */
static uintptr_t je_leaf(uintptr_t a) {
  _Alignas(64) unsigned char scratch[1024];
  uintptr_t *elm =
      je_rtree_leaf_elm_lookup_hard(NULL, &je_arena_emap_global, scratch, a, false, false);
  uintptr_t leaf = elm ? __atomic_load_n(elm, __ATOMIC_ACQUIRE) : 0;
  return JE_LEAF_EDATA(leaf) != NULL ? leaf : 0;
}

static enum check_block je_classify(uintptr_t a, uintptr_t leaf, const void **start) {
  const struct je_edata *e = JE_LEAF_EDATA(leaf);
  uintptr_t addr = e->addr, base = addr & ~(je_classes.page - 1);
  if (a >= base + (e->size_esn & ~(je_classes.page - 1)))
    return CHECK_BLOCK_NONE; /* past the nearest extent below it: in no extent */
  /* Freed, the extent leaves the active state, or (held in a cache of the page
   * allocator, hpa:true) stays active with its size class cleared in edata_t only. */
  unsigned szind = JE_LEAF_SZIND(leaf);
  uint64_t bits = __atomic_load_n(&e->bits, __ATOMIC_RELAXED);
  if (JE_LEAF_STATE(leaf) != 0 || szind >= je_classes.nsizes || JE_EDATA_STATE(bits) != 0 ||
      JE_EDATA_SZIND(bits) != szind)
    return CHECK_BLOCK_FREED;
  if (!JE_LEAF_SLAB(leaf)) {
    *start = (const void *)addr;
    return a == addr ? CHECK_BLOCK_OK : CHECK_BLOCK_INTERIOR;
  }
  if (szind >= je_classes.nbins)
    return CHECK_BLOCK_OK; /* not a slab's class: nothing known to check */
  size_t reg = je_classes.reg_size[szind], i = (a - addr) / reg;
  *start = (const void *)(addr + i * reg);
  if (i >= je_classes.nregs[szind])
    return CHECK_BLOCK_NONE; /* the slab's unused tail */
  if ((a - addr) % reg != 0)
    return CHECK_BLOCK_INTERIOR;
  uint64_t free_bits = __atomic_load_n(&e->slab_free[i / 64], __ATOMIC_RELAXED);
  return (free_bits >> (i % 64)) & 1 ? CHECK_BLOCK_FREED : CHECK_BLOCK_OK;
}

/* Every page of a live block's slab is in the tree, and so is a large block's first
 * page, where its pointer is; a valid pointer is settled by its own page. Any other
 * pointer walks down to the nearest page in the tree, within the mapping that holds it
 * (a large block's middle, or an extent given back, has only its ends there). */
enum check_block be_check_block(const void *p, const void **start) {
#if !defined(__x86_64__)
  /* Layouts read on x86_64 only; elsewhere only foreign pointers are told. */
  (void)p, (void)start;
  return CHECK_BLOCK_OK;
#endif
  uintptr_t a = (uintptr_t)p, page = je_classes.page;
  const void *lo_p;
  if (page == 0 || !check_ranges_start(p, &lo_p))
    return CHECK_BLOCK_OK;
  uintptr_t lo = (uintptr_t)lo_p;
  for (uintptr_t pg = a & ~(page - 1);; pg -= page) {
    uintptr_t leaf = je_leaf(pg);
    if (leaf != 0)
      return je_classify(a, leaf, start);
    if (pg < lo + page)
      return CHECK_BLOCK_NONE;
  }
}

static bool je_read(const char *name, void *out, size_t len) {
  return _mallctl(name, out, &len, NULL, 0) == 0;
}

static bool je_classes_read(void) {
  unsigned nbins = 0, nlextents = 0;
  if (!je_read("arenas.nbins", &nbins, sizeof nbins) || nbins > JE_MAX_BINS ||
      !je_read("arenas.nlextents", &nlextents, sizeof nlextents))
    return false;
  for (unsigned i = 0; i < nbins; i++) {
    char size[48], nregs[48];
    snprintf(size, sizeof size, "arenas.bin.%u.size", i);
    snprintf(nregs, sizeof nregs, "arenas.bin.%u.nregs", i);
    if (!je_read(size, &je_classes.reg_size[i], sizeof je_classes.reg_size[i]) ||
        !je_read(nregs, &je_classes.nregs[i], sizeof je_classes.nregs[i]) ||
        je_classes.reg_size[i] == 0 || je_classes.nregs[i] > 512)
      return false;
  }
  je_classes.nbins = nbins;
  je_classes.nsizes = (size_t)nbins + nlextents;
  return je_read("arenas.page", &je_classes.page, sizeof je_classes.page);
}

bool be_check_start(void) {
  /* Without the size classes, freed and interior pointers go unseen; foreign ones
   * are still stopped. */
  if (!je_classes_read())
    je_classes.page = 0;
  je_hooks hooks = {NULL, check_dalloc, NULL, NULL};
  void *handle = NULL;
  size_t len = sizeof handle;
  return _mallctl("experimental.hooks.install", &handle, &len, &hooks, sizeof hooks) == 0;
}

const char *be_version(void) {
  const char *v = NULL;
  size_t len = sizeof v;
  return _mallctl("version", &v, &len, NULL, 0) == 0 && v ? v : "unknown";
}

int be_profile_status(void) {
  bool on = false;
  size_t len = sizeof on;
  if (_mallctl("opt.prof", &on, &len, NULL, 0) != 0)
    return ALLOC_ENOTSUP; /* a jemalloc built without --enable-prof */
  return on ? ALLOC_OK : ALLOC_EPROFOFF;
}

/* ---- Heap profile files -----------------------------------------------------------
 * jemalloc 5.3 opens every profile file with creat(name, 0644), which follows a symlink
 * and truncates whatever the name reaches, and it writes with no check for short
 * writes. The build renames that creat to _creat below, so jemalloc never opens a file
 * of the shim's by name: for alloc_profile_dump(), src/profile.c hands over a
 * descriptor it prepared, and jemalloc is given a token path that _creat knows by its
 * address (jemalloc passes the caller's pointer through). The descriptor is armed per
 * thread, because jemalloc calls creat() in the thread that asked for the dump: there is
 * no lock of ours to order against jemalloc's, or to leave held across fork(). The token
 * names a file nobody can create (under /dev/null), so a dump that ever reached the
 * unarmed branch fails instead of writing somewhere. */
static const char profile_token[] = "/dev/null/allocshim-profile";
static _Thread_local int profile_fd __attribute__((tls_model("initial-exec"))) = -1;

/* Unarmed, this serves jemalloc's own dumps (prof_final, gdump and idump under
 * MALLOC_CONF's prof_prefix, prof.log): a new file only, in a trusted directory, never
 * a symlink's target, and 0600 rather than 0644, since a profile shows the program's
 * insides (profile_create_new). */
int _creat(const char *name, mode_t mode) {
  (void)mode;
  if (name == profile_token && profile_fd >= 0)
    return fcntl(profile_fd, F_DUPFD_CLOEXEC, 0);
  return profile_create_new(name);
}

int be_profile_dump(int fd) {
  const char *token = profile_token;
  profile_fd = fd;
  int r = _mallctl("prof.dump", NULL, NULL, &token, sizeof token);
  profile_fd = -1;
  return r == 0 ? 0 : -1;
}

int be_profile_activate(bool active) {
  return _mallctl("prof.active", NULL, NULL, &active, sizeof active) == 0 ? 0 : -1;
}

/* jemalloc's per-thread switch, under prof.active: a thread switched off takes no new
 * samples; blocks it sampled before stay in the profile until freed. jemalloc reads
 * the old value out only once the new one is set, so 0 means both happened. */
bool be_profile_thread(bool on) {
  bool was = on;
  size_t len = sizeof was;
  return _mallctl("thread.prof.active", &was, &len, &on, sizeof on) == 0 && was != on;
}

/* ---- What the profiler takes from libm and libgcc_s ---------------------------------
 * Only jemalloc's heap profiler calls libm (exp, log, round: sampling intervals and
 * unbiased counts) and libgcc_s (the unwinder), and only in a process started with
 * profiling on. Linked, both were loaded into every process under the shim at start:
 * 410 KiB of resident pages, which the loader touches mapping and relocating them
 * (docs/PERFORMANCE.md, "Peak memory against glibc"). The build renames jemalloc's calls
 * to these (src/jemalloc_names.def). The math is done here, within 1 unit in the last
 * place of libm's (tests/test_backend_jemalloc.c holds it to that), more than a random
 * interval or an estimate needs; errno, which jemalloc never reads, is left alone. */
static double from_bits(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

static uint64_t to_bits(double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  return bits;
}

/* ln 2 split so that k * LN2_HI is exact for any exponent k a double has. */
#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10

double _round(double x) {
  /* From 2^52 up every double is a whole number; NaN and the infinities fail too. */
  if (!(__builtin_fabs(x) < 0x1p52))
    return x;
  double whole = (double)(long long)x, rest = x - whole; /* both exact */
  if (rest >= 0.5)
    whole += 1.0;
  else if (rest <= -0.5)
    whole -= 1.0;
  return __builtin_copysign(whole, x); /* round(-0.25) is -0.0 */
}

double _log(double x) {
  if (!(x > 0.0)) /* NaN, a negative, zero */
    return x == 0.0 ? -__builtin_inf() : __builtin_nan("");
  if (x == __builtin_inf())
    return x;
  int k = 0;
  if (x < 0x1p-1022) { /* subnormal: make it normal first */
    x *= 0x1p54;
    k = -54;
  }
  /* x = m * 2^k with m in [sqrt(1/2), sqrt(2)) */
  uint64_t bits = to_bits(x);
  k += (int)(bits >> 52) - 1023;
  double m = from_bits((bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1023) << 52));
  if (m >= 1.4142135623730951) {
    m *= 0.5;
    k++;
  }
  /* log m = 2 atanh z with z = f / (2 + f), f = m - 1, |z| < 0.172; as 2z = f - zf, that
   * is f - z (f - R) with R = 2 (z^3/3 + z^5/5 + ...) / z, f (exact) added last. The
   * terms past z^25/25 are below 2^-56 of the sum. */
  double f = m - 1.0, z = f / (2.0 + f), z2 = z * z, r = 2.0 / 25;
  for (int odd = 23; odd >= 3; odd -= 2)
    r = r * z2 + 2.0 / odd;
  r *= z2;
  return k * LN2_HI + (f - (z * (f - r) - k * LN2_LO));
}

double _exp(double x) {
  if (x != x)
    return x;
  if (x > 709.782712893384) /* past DBL_MAX */
    return __builtin_inf();
  if (x < -745.1332191019412) /* under half the least subnormal */
    return 0.0;
  /* e^x = 2^k e^r with k the nearest whole number to x / ln 2, so |r| <= ln 2 / 2. */
  double kd = (double)(long long)(x * 1.4426950408889634 + (x < 0 ? -0.5 : 0.5));
  double r = (x - kd * LN2_HI) - kd * LN2_LO;
  /* e^r = 1 + r (1 + r/2 (1 + r/3 (...))): the terms past r^13/13! are below 2^-56. */
  double e_r = 1.0;
  for (int n = 13; n >= 1; n--)
    e_r = 1.0 + r * e_r / n;
  /* 2^k in two halves, each a normal power of two, for k from -1075 to 1024. */
  int k = (int)kd, half = k / 2;
  return e_r * from_bits((uint64_t)(half + 1023) << 52) *
         from_bits((uint64_t)(k - half + 1023) << 52);
}

/* libgcc_s is opened once, by the library's constructor when profiling is on (be_start),
 * never from inside an allocation: jemalloc unwinds first while it starts, holding its
 * start lock, which the loader's own allocations would wait on for good, and an open
 * from a sampled allocation could come while the loader is in the middle of its own work
 * (a dlopen, thread-local storage) or from a forked child of a process that was. */
typedef _Unwind_Reason_Code unwind_walk(_Unwind_Trace_Fn fn, void *arg);
typedef _Unwind_Ptr unwind_ip(struct _Unwind_Context *context);
static _Atomic(unwind_walk *) walk_fn;
static _Atomic(unwind_ip *) ip_fn;

HIDDEN bool unwinder_open(const char *soname) {
  if (atomic_load_explicit(&walk_fn, memory_order_acquire) != NULL)
    return true;
  void *lib = deepbind_dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  unwind_ip *ip = lib != NULL ? (unwind_ip *)dlsym(lib, "_Unwind_GetIP") : NULL;
  unwind_walk *walk = ip != NULL ? (unwind_walk *)dlsym(lib, "_Unwind_Backtrace") : NULL;
  if (walk == NULL)
    return false;
  atomic_store_explicit(&ip_fn, ip, memory_order_relaxed);
  atomic_store_explicit(&walk_fn, walk, memory_order_release); /* after ip_fn */
  return true;
}

/* A walk while nothing is open reports one made-up frame: a sample taken before the
 * shim's constructor ran, or after an open that failed. Before the constructor the main
 * thread is inside the loader, starting the program's libraries (libstdc++'s exception
 * pool is allocated then): the leak check counts allocshim_sampled_before_start as the C
 * runtime's (src/leaks.c), as it does the loader's own frames. Another thread (one a
 * library's constructor started, say) is not known to be the runtime: its frame,
 * allocshim_sampled_in_thread_before_start, counts as any other. Their names tell
 * jeprof's and pprof's readers what happened. */
HIDDEN __attribute__((noinline)) void allocshim_sampled_before_start(void) {
  __asm__ volatile(""); /* a body of its own, so that no other function shares its address */
}
HIDDEN __attribute__((noinline)) void allocshim_sampled_in_thread_before_start(void) {
  __asm__ volatile("");
}
static char early_walk, early_thread_walk; /* the contexts of those walks' one frame */

static uintptr_t early_frame(void) {
  return (uintptr_t)allocshim_sampled_before_start + 1; /* as a return address is */
}

uintptr_t be_profile_early_frame(void) {
  return atomic_load_explicit(&walk_fn, memory_order_acquire) != NULL ? early_frame() : 0;
}

_Unwind_Reason_Code __Unwind_Backtrace(_Unwind_Trace_Fn fn, void *arg) {
  unwind_walk *walk = atomic_load_explicit(&walk_fn, memory_order_acquire);
  if (walk != NULL)
    return walk(fn, arg);
  char *early = gettid() == getpid() ? &early_walk : &early_thread_walk;
  fn((struct _Unwind_Context *)early, arg);
  return _URC_END_OF_STACK;
}

/* Called only by a walk's callback: the early walk's, or one through libgcc_s. */
_Unwind_Ptr __Unwind_GetIP(struct _Unwind_Context *context) {
  if (context == (struct _Unwind_Context *)&early_walk)
    return early_frame();
  if (context == (struct _Unwind_Context *)&early_thread_walk)
    return (uintptr_t)allocshim_sampled_in_thread_before_start + 1;
  return atomic_load_explicit(&ip_fn, memory_order_relaxed)(context);
}

static size_t stat_of(const char *name) {
  size_t v = 0, len = sizeof v;
  return _mallctl(name, &v, &len, NULL, 0) == 0 ? v : ALLOC_STAT_UNKNOWN;
}

void be_stats(alloc_stats_t *out) {
  /* jemalloc's statistics are a snapshot taken when the epoch advances. */
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  _mallctl("epoch", &epoch, &len, &epoch, len);
  out->allocated = stat_of("stats.allocated");
  out->active = stat_of("stats.active");
  out->resident = stat_of("stats.resident");
  out->mapped = stat_of("stats.mapped");
  out->retained = stat_of("stats.retained");
}

/* Every page jemalloc gives back leaves the dirty state by a purge, counted once in
 * dirty_purged, whether it goes straight back (MADV_DONTNEED) or lazily (MADV_FREE,
 * to muzzy); muzzy_purged would count the lazy ones a second time. A page count, of
 * every arena (4096 is MALLCTL_ARENAS_ALL), as of be_stats()'s last epoch. */
size_t be_returned_bytes(void) {
  uint64_t pages = 0;
  size_t page = 0, len = sizeof pages, plen = sizeof page;
  if (_mallctl("stats.arenas.4096.dirty_purged", &pages, &len, NULL, 0) != 0 ||
      _mallctl("arenas.page", &page, &plen, NULL, 0) != 0)
    return ALLOC_STAT_UNKNOWN;
  return (size_t)pages * page;
}

bool be_purge(void) {
  alloc_stats_t before, after;
  be_stats(&before);
  /* This thread's cache first, then every arena's unused dirty pages (4096 is
   * MALLCTL_ARENAS_ALL). */
  _mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
  _mallctl("arena.4096.purge", NULL, NULL, NULL, 0);
  be_stats(&after);
  return after.resident < before.resident;
}
