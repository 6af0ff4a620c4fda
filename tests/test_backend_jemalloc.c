/* Tests for src/backend_jemalloc.c, linked statically so that jemalloc's mallctl can
 * be replaced by a cmocka mock (--wrap=_mallctl) to reach its failure paths. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend.h"
#include "check.h"
#include "internal.h"
#include "test_owns.h"

int __real__mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

/* A program's own options (jemalloc's documented symbol), which the shim reads. */
const char *malloc_conf;

/* mmap fails (ENOMEM) once, for the next call of fail_mmap bytes up to 64 KiB: the
 * size of an options string too long for the shim's buffer, never one of jemalloc's.
 * The build's _FILE_OFFSET_BITS=64 makes the C library's mmap mmap64. */
static size_t fail_mmap;
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (fail_mmap != 0 && len >= fail_mmap && len < 65536) {
    fail_mmap = 0;
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return __real_mmap64(addr, len, prot, flags, fd, off);
}

/* Names whose mallctl the current test wants to fail; everything else is real. */
static const char *failing;
static bool fake_prof_on;

/* A thread.prof.active of the test's own (jemalloc's refuses writes with profiling off),
 * and what it was when the profile was taken. */
static bool fake_thread_ctl, fake_thread_active, active_at_dump;

int __wrap__mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) {
  if (strcmp(name, "prof.dump") == 0)
    active_at_dump = fake_thread_active;
  if (failing != NULL && strcmp(name, failing) == 0)
    return (int)mock();
  if (fake_thread_ctl && strcmp(name, "thread.prof.active") == 0) {
    bool old = fake_thread_active; /* read out after the write, as jemalloc does */
    if (newp != NULL)
      fake_thread_active = *(bool *)newp;
    if (oldp != NULL)
      *(bool *)oldp = old;
    return 0;
  }
  if (fake_prof_on && strcmp(name, "opt.prof") == 0) {
    *(bool *)oldp = true;
    return 0;
  }
  return __real__mallctl(name, oldp, oldlenp, newp, newlen);
}

static int reset(void **state) {
  (void)state;
  failing = NULL;
  fake_prof_on = false;
  fake_thread_ctl = fake_thread_active = active_at_dump = false;
  unsetenv("ALLOCSHIM_PROF");
  unsetenv("ALLOCSHIM_PROF_SAMPLE");
  unsetenv("MALLOC_CONF");
  return 0;
}

static void test_version(void **state) {
  (void)state;
  assert_int_equal(strncmp(be_version(), "5.", 2), 0);
  failing = "version";
  will_return(__wrap__mallctl, ENOENT);
  assert_string_equal(be_version(), "unknown");
}

static void test_profile_status(void **state) {
  (void)state;
  assert_int_equal(be_profile_status(), ALLOC_EPROFOFF);
  fake_prof_on = true;
  assert_int_equal(be_profile_status(), ALLOC_OK);
  /* A jemalloc built without profiling has no opt.prof at all. */
  failing = "opt.prof";
  will_return(__wrap__mallctl, ENOENT);
  assert_int_equal(be_profile_status(), ALLOC_ENOTSUP);
}

/* jemalloc failing half-way must leave no file behind, and say EIO. */
static void test_dump_backend_failure(void **state) {
  (void)state;
  char dir[] = "/tmp/allocshim-test-je.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/x.heap", dir);
  fake_prof_on = true;
  failing = "prof.dump";
  will_return(__wrap__mallctl, EFAULT);
  errno = 0;
  assert_int_equal(alloc_profile_dump(path), ALLOC_EIO);
  assert_int_equal(errno, EIO);
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) /* hidden temporary files count */
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  assert_int_equal(n, 0);
  assert_int_equal(rmdir(dir), 0);
}

/* The per-thread switch says whether it changed anything, so that a dump turns back on
 * only what it turned off; a refused switch changed nothing. */
static void test_profile_thread(void **state) {
  (void)state;
  assert_false(be_profile_thread(false)); /* the real one: profiling is off here */
  fake_thread_ctl = fake_thread_active = true;
  assert_true(be_profile_thread(false));
  assert_false(fake_thread_active);
  assert_false(be_profile_thread(false));
  assert_true(be_profile_thread(true));
  assert_true(fake_thread_active);
  failing = "thread.prof.active";
  will_return(__wrap__mallctl, EAGAIN);
  assert_false(be_profile_thread(false));
  assert_true(fake_thread_active);
}

/* A dump samples nothing of its own: the thread's sampling is off while jemalloc writes
 * the profile and back on after, even when the dump fails; a thread whose sampling was
 * off stays off. (Profiling is off in this test, so jemalloc's real dump always fails;
 * pprof.sh inprocess checks the dumps that succeed.) */
static void test_dump_unsampled(void **state) {
  (void)state;
  char dir[] = "/tmp/allocshim-test-je.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/x.heap", dir);
  fake_prof_on = fake_thread_ctl = true;
  for (int was = 1; was >= 0; was--) {
    fake_thread_active = was;
    active_at_dump = true;
    failing = "prof.dump";
    will_return(__wrap__mallctl, EFAULT);
    assert_int_equal(alloc_profile_dump(path), ALLOC_EIO);
    assert_false(active_at_dump);
    assert_int_equal(fake_thread_active, was);
  }
  assert_int_equal(rmdir(dir), 0);
}

/* jemalloc's own dumps (MALLOC_CONF prof_prefix: prof_final, gdump, idump) open their
 * file through the shim's creat(): a new file only, 0600, never a symlink's target,
 * where jemalloc's creat(name, 0644) truncated whatever the name reached. */
static void test_creat_only_new_files(void **state) {
  (void)state;
  char dir[] = "/tmp/allocshim-test-je.XXXXXX";
  assert_non_null(mkdtemp(dir));
  char fresh[PATH_MAX], victim[PATH_MAX], link[PATH_MAX];
  snprintf(fresh, sizeof fresh, "%s/fresh.heap", dir);
  snprintf(victim, sizeof victim, "%s/victim", dir);
  snprintf(link, sizeof link, "%s/link.heap", dir);
  FILE *f = fopen(victim, "w");
  assert_non_null(f);
  fputs("precious", f);
  fclose(f);
  assert_int_equal(symlink(victim, link), 0);
  int fd = _creat(fresh, 0644);
  assert_true(fd >= 0);
  struct stat sb;
  assert_int_equal(fstat(fd, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  close(fd);
  errno = 0;
  assert_int_equal(_creat(fresh, 0644), -1); /* exists: not truncated */
  assert_int_equal(errno, EEXIST);
  assert_int_equal(_creat(link, 0644), -1);
  assert_int_equal(errno, EEXIST);
  assert_int_equal(stat(victim, &sb), 0);
  assert_int_equal(sb.st_size, 8);
  /* The token of an armed dump, reached unarmed, opens nothing. */
  assert_int_equal(_creat("/dev/null/allocshim-profile", 0644), -1);
  /* jemalloc's own dumps go only where the shim's may: a directory another user owns,
   * or reaches through a link of theirs, is refused (as root, where that matters). */
  if (geteuid() == 0) {
    char evil[PATH_MAX], guarded[PATH_MAX], through[PATH_MAX + 16];
    snprintf(evil, sizeof evil, "%s/evil", dir);
    snprintf(guarded, sizeof guarded, "%s/guarded", dir);
    snprintf(through, sizeof through, "%s/evil/sub/x.heap", dir);
    assert_int_equal(mkdir(evil, 0755), 0);
    assert_int_equal(mkdir(guarded, 0700), 0);
    assert_int_equal(chown(evil, 65534, 65534), 0);
    snprintf(link, sizeof link, "%s/evil/sub", dir);
    assert_int_equal(symlink(guarded, link), 0);
    assert_int_equal(lchown(link, 65534, 65534), 0);
    errno = 0;
    assert_int_equal(_creat(through, 0644), -1);
    assert_int_equal(errno, EPERM);
    snprintf(through, sizeof through, "%s/evil/y.heap", dir);
    assert_int_equal(_creat(through, 0644), -1);
    assert_int_equal(errno, EPERM);
    DIR *d = opendir(guarded);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
      n += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 0);
  }
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

/* The MALLOC_CONF that jemalloc sees: the shim's defaults, then ALLOCSHIM_ options,
 * the user's last (jemalloc lets the last word win). */
#define DEFAULTS "oversize_threshold:33554432,lg_extent_max_active_fit:10"
/* What _secure_getenv gives jemalloc: head, checked mode's own word, then tail (a
 * malformed rest, where jemalloc stops reading). */
static const char *with_check(const char *head, const char *tail) {
  static char want[10000];
  snprintf(want, sizeof want, "%s%s%s", head, check_enabled() ? ",tcache:false" : "", tail);
  return want;
}
static void assert_conf_tail(const char *head, const char *tail) {
  assert_string_equal(_secure_getenv("MALLOC_CONF"), with_check(head, tail));
  assert_null(_malloc_conf_2_conf_harder);
}
static void assert_conf(const char *head) { assert_conf_tail(head, ""); }
/* The same, split in two of jemalloc's sources: the first up to where abort_conf is
 * last true, the second (malloc_conf_2_conf_harder) from checked mode's word on. */
static void assert_conf_split(const char *first, const char *second, const char *tail) {
  assert_string_equal(_secure_getenv("MALLOC_CONF"), first);
  assert_non_null(_malloc_conf_2_conf_harder);
  assert_string_equal(_malloc_conf_2_conf_harder, with_check(second, tail));
}

static void test_conf(void **state) {
  (void)state;
  errno = EDOM; /* the caller's, kept (/etc/malloc.conf is missing on most systems) */
  assert_conf(DEFAULTS);
  assert_int_equal(errno, EDOM);
  setenv("MALLOC_CONF", "narenas:2", 1);
  assert_conf(DEFAULTS ",narenas:2");
  /* Checked mode's thread cache stays off whatever MALLOC_CONF says. */
  setenv("MALLOC_CONF", "tcache:true", 1);
  assert_conf(DEFAULTS ",tcache:true");
  setenv("MALLOC_CONF", "narenas:2", 1);
  setenv("ALLOCSHIM_PROF", "1", 1);
  assert_conf(DEFAULTS ",prof:true,prof_active:true,narenas:2");
  setenv("ALLOCSHIM_PROF_SAMPLE", "1048576", 1);
  unsetenv("MALLOC_CONF");
  assert_conf(DEFAULTS ",prof:true,prof_active:true,lg_prof_sample:20");
  setenv("ALLOCSHIM_PROF", "0", 1);
  assert_conf(DEFAULTS);
  /* jemalloc stops reading a string at its first malformed pair: each source gives only
   * the pairs jemalloc reads of it, and the first malformed rest goes last, as written,
   * so that no later source (checked mode's tcache:false above all) is lost. */
  setenv("MALLOC_CONF", "narenas:2,", 1);
  assert_conf_tail(DEFAULTS ",narenas:2", ",");
  setenv("MALLOC_CONF", "narenas:2,,background_thread:true", 1);
  assert_conf_tail(DEFAULTS ",narenas:2", ",,background_thread:true");
  setenv("MALLOC_CONF", "narenas:2,tcache", 1);
  assert_conf_tail(DEFAULTS ",narenas:2", ",tcache");
  setenv("MALLOC_CONF", ",narenas:2", 1);
  assert_conf_tail(DEFAULTS, ",,narenas:2");
  setenv("MALLOC_CONF", "nar-enas:2,tcache:true", 1);
  assert_conf_tail(DEFAULTS, ",nar-enas:2,tcache:true");
  /* jemalloc aborts at the end of a source if abort_conf is true there and a source so
   * far had an error. A program's malformed rest now comes after MALLOC_CONF, so
   * abort_conf:true is said again just before it; and where a later source turns
   * abort_conf off, the string ends after the last source that leaves it on, so that
   * jemalloc checks there too (an invalid value, not only a malformed pair). */
  malloc_conf = "abort_conf:true,bogus";
  setenv("MALLOC_CONF", "abort_conf:false", 1);
  assert_conf_split(DEFAULTS ",abort_conf:true", "abort_conf:false", ",abort_conf:true,bogus");
  malloc_conf = "abort_conf:true,narenas:abc";
  assert_conf_split(DEFAULTS ",abort_conf:true,narenas:abc", "abort_conf:false", "");
  malloc_conf = "abort_conf:true,abort_conf:yes,junk!"; /* yes: an error, still true */
  assert_conf_split(DEFAULTS ",abort_conf:true,abort_conf:yes", "abort_conf:false",
                    ",abort_conf:true,junk!");
  malloc_conf = "abort_conf:false,abort_conf:yes,bogus";
  setenv("MALLOC_CONF", "abort_conf:true", 1);
  assert_conf_tail(DEFAULTS ",abort_conf:false,abort_conf:yes,abort_conf:true",
                   ",abort_conf:true,bogus");
  malloc_conf = "abort_conf:true,bogus"; /* on to the end: one source, as before */
  setenv("MALLOC_CONF", "narenas:2", 1);
  assert_conf_tail(DEFAULTS ",abort_conf:true,narenas:2", ",abort_conf:true,bogus");
  malloc_conf = "narenas:abc"; /* never on: no abort, no split */
  setenv("MALLOC_CONF", "abort_conf:false,narenas:2,bogus", 1);
  assert_conf_tail(DEFAULTS ",narenas:abc,abort_conf:false,narenas:2", ",bogus");
  malloc_conf = NULL;
  setenv("ALLOCSHIM_PROF", "1", 1);
  setenv("MALLOC_CONF", ":2,narenas:3,", 1);
  assert_conf_tail(DEFAULTS ",prof:true,prof_active:true,lg_prof_sample:20,:2,narenas:3", ",");
  setenv("ALLOCSHIM_PROF", "0", 1);
  /* A MALLOC_CONF too long for the buffer is passed on whole, never cut, after the
   * shim's options; a malformed one after checked mode's too. */
  static char longer[9000], want[9100];
  memcpy(longer, "narenas:", 8);
  memset(longer + 8, '1', sizeof longer - 9);
  setenv("MALLOC_CONF", longer, 1);
  snprintf(want, sizeof want, DEFAULTS ",%s", longer);
  assert_conf(want);
  memset(longer, 'x', 8);
  setenv("MALLOC_CONF", longer, 1);
  snprintf(want, sizeof want, ",%s", longer);
  assert_conf_tail(DEFAULTS, want);
  /* With no memory to map for it, the pieces that fit: the long source is left out,
   * never the shim's own, and errno stays the program's. */
  memcpy(longer, "narenas:", 8);
  setenv("MALLOC_CONF", longer, 1);
  fail_mmap = sizeof longer;
  errno = EDOM;
  assert_conf(DEFAULTS);
  assert_int_equal(errno, EDOM);
  assert_int_equal(fail_mmap, 0);
  /* A source that fits the buffer only without checked mode's tcache:false gives way to
   * it (before, the word was the one left out, and checked mode had a thread cache). */
  size_t fits = 4090 - sizeof DEFAULTS; /* joined with it: 4090 bytes of 4095 */
  memset(longer + 8, '1', fits - 8);
  longer[fits] = '\0';
  setenv("MALLOC_CONF", longer, 1);
  fail_mmap = 4096;
  snprintf(want, sizeof want, DEFAULTS ",%s", longer);
  assert_conf(check_enabled() ? DEFAULTS : want);
  fail_mmap = 0; /* without checked mode it fits, and nothing is mapped */
  unsetenv("MALLOC_CONF");
  /* Other variables pass straight through. */
  setenv("ALLOCSHIM_TEST_OTHER", "value", 1);
  assert_string_equal(_secure_getenv("ALLOCSHIM_TEST_OTHER"), "value");
}

/* jemalloc 5.3's threshold has two meanings: blocks from it on go to the oversize
 * arena (the global, which it leaves at 8 MiB for arena 0 until the constructor brings
 * it in line), and a freed extent that coalesces up to an arena's own copy is purged at
 * once. Under the shim's default the first is 32 MiB and the second 256 MiB
 * (src/backend_jemalloc.c, _pac_init); a threshold the user sets keeps both
 * (tests/integration/malloc_conf.sh). */
static void test_oversize_threshold(void **state) {
  (void)state;
  size_t opt = 0, arena0 = 0, len = sizeof opt;
  assert_int_equal(__real__mallctl("opt.oversize_threshold", &opt, &len, NULL, 0), 0);
  assert_int_equal(__real__mallctl("arena.0.oversize_threshold", &arena0, &len, NULL, 0), 0);
  assert_int_equal(opt, 32u << 20);
  assert_int_equal(je_oversize_threshold, opt);
  assert_int_equal(arena0, 256u << 20);
}

/* jemalloc's flag encodings (jemalloc/jemalloc.h), and its page: 4 KiB on x86_64. */
#define MALLOCX_ARENA(a)    ((int)(((unsigned)(a) + 1) << 20))
#define MALLOCX_TCACHE_NONE (1 << 8)
#define JE_PAGE             4096

/* Dirty pages of an arena of the test's own, read fresh. */
static size_t arena_dirty_pages(unsigned arena) {
  uint64_t epoch = 1;
  size_t pages = 0, len = sizeof pages;
  char name[64];
  assert_int_equal(__real__mallctl("epoch", NULL, NULL, &epoch, sizeof epoch), 0);
  snprintf(name, sizeof name, "stats.arenas.%u.pdirty", arena);
  assert_int_equal(__real__mallctl(name, &pages, &len, NULL, 0), 0);
  return pages;
}

/* A thread that binds itself to the arena given, fills and frees 1 MiB of small blocks
 * there, and ends: the last thread of that arena. */
static void *arena_user(void *arg) {
  unsigned arena = *(unsigned *)arg;
  if (__real__mallctl("thread.arena", NULL, NULL, &arena, sizeof arena) != 0)
    return "thread.arena failed";
  void *blocks[256];
  for (int i = 0; i < 256; i++)
    memset(blocks[i] = malloc(4000), 1, 4000);
  for (int i = 0; i < 256; i++)
    free(blocks[i]);
  return NULL;
}

/* jemalloc 5.3 purges an arena whole when the last thread bound to it ends; while idle
 * return is armed the shim leaves those pages for the next thread (_arena_decay), and
 * switched off (ALLOCSHIM_PURGE=off) lets jemalloc purge. Checked mode has no thread
 * cache, whose end is where jemalloc purges: the pages stay there either way. */
static void test_thread_end_keeps_pages(void **state) {
  (void)state;
  bool background = false;
  size_t len = sizeof background;
  assert_int_equal(__real__mallctl("background_thread", &background, &len, NULL, 0), 0);
  if (background) /* no purge at a thread's end to tell apart */
    skip();
  unsigned arena = 0;
  len = sizeof arena;
  assert_int_equal(__real__mallctl("arenas.create", &arena, &len, NULL, 0), 0);
  pthread_t t;
  void *failed = NULL;
  assert_int_equal(pthread_create(&t, NULL, arena_user, &arena), 0);
  assert_int_equal(pthread_join(t, &failed), 0);
  assert_null(failed);
  size_t kept = arena_dirty_pages(arena) * JE_PAGE;
  if (allocshim_purge_setting() == PURGE_OFF && !check_enabled())
    assert_int_equal(kept, 0);
  else
    assert_true(kept >= 512 << 10);
}

/* A thread that fills its cache from the arena given without binding to it
 * (MALLOCX_ARENA), frees it all and ends. How many blocks varies with the round: a
 * new thread's decay ticker starts the same, and fires at the same point of the same
 * work. */
struct borrow {
  unsigned arena;
  int blocks;
};
static void *arena_borrower(void *arg) {
  const struct borrow *b = arg;
  static void *blocks[8192]; /* one borrower at a time */
  for (int i = 0; i < b->blocks; i++)
    if ((blocks[i] = _mallocx(8 + (size_t)(i % 40) * 48, MALLOCX_ARENA(b->arena))) == NULL)
      return "mallocx failed";
  for (int i = 0; i < b->blocks; i++)
    free(blocks[i]);
  return NULL;
}

/* Past idle return's mark the shim purges an arena the program made when the last
 * thread bound to it ends (_tcache_cleanup). One that no thread is bound to, used
 * through MALLOCX_ARENA, is not that: its pages stay when a thread that took blocks
 * from it ends, as with jemalloc alone. The shim purged it whole whenever the ending
 * thread's cache flush ticked its decay (attacker review; about half such ends). Run
 * last: it takes the process past the mark, which starts jemalloc's background thread. */
static void test_thread_end_spares_unbound_arena(void **state) {
  (void)state;
  void *big = be_malloc((size_t)100 << 20);
  assert_non_null(big);
  be_free(big);
  for (int i = 0; i < 20000; i++) /* allocation events: the mark is crossed at one */
    be_free(be_malloc(4096));
  unsigned arena = 0;
  size_t len = sizeof arena;
  assert_int_equal(__real__mallctl("arenas.create", &arena, &len, NULL, 0), 0);
  /* No decay there: jemalloc's background thread purges what an arena's decay allows
   * whenever it wakes, and only the shim's purge of a whole arena is left to see. */
  char name[64];
  ssize_t never = -1;
  snprintf(name, sizeof name, "arena.%u.dirty_decay_ms", arena);
  assert_int_equal(__real__mallctl(name, NULL, NULL, &never, sizeof never), 0);
  /* Dirty pages in that arena: every other 64 KiB block freed, so none coalesce. */
  enum { SPANS = 1024 };
  static void *span[SPANS];
  const int flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
  for (int i = 0; i < SPANS; i++) {
    assert_non_null(span[i] = _mallocx(64 << 10, flags));
    memset(span[i], 1, 64 << 10);
  }
  for (int i = 0; i < SPANS; i += 2)
    _dallocx(span[i], flags);
  size_t before = arena_dirty_pages(arena);
  assert_true(before * JE_PAGE >= (size_t)(SPANS / 2) << 16);
  for (int round = 0; round < 16; round++) {
    pthread_t t;
    void *failed = NULL;
    struct borrow b = {arena, 2000 + round * 397};
    assert_int_equal(pthread_create(&t, NULL, arena_borrower, &b), 0);
    assert_int_equal(pthread_join(t, &failed), 0);
    assert_null(failed);
    assert_true(arena_dirty_pages(arena) >= before / 2);
  }
  for (int i = 1; i < SPANS; i += 2)
    _dallocx(span[i], flags);
}

/* What the threshold's second meaning does: in an arena a program chose (where jemalloc
 * sends big blocks too), a freed 40 MiB block stays for the decay to return, where
 * jemalloc 5.3 alone purges it at once; one of 300 MiB is still purged when freed. */
static void test_oversize_purge(void **state) {
  (void)state;
  unsigned arena = 0;
  size_t len = sizeof arena;
  assert_int_equal(__real__mallctl("arenas.create", &arena, &len, NULL, 0), 0);
  const int flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE_NONE;
  static const size_t sizes[] = {(size_t)40 << 20, (size_t)300 << 20};
  for (size_t i = 0; i < 2; i++) {
    unsigned char *p = _mallocx(sizes[i], flags);
    assert_non_null(p);
    memset(p, 1, sizes[i]);
    size_t before = arena_dirty_pages(arena);
    _dallocx(p, flags);
    size_t after = arena_dirty_pages(arena);
    if (i == 0)
      assert_true(after >= before && (after - before) * JE_PAGE >= sizes[i] / 2);
    else /* nothing of it kept, nor of a free neighbour it coalesced with */
      assert_true(after <= before);
  }
}

/* calloc from a recycled extent: below 32 MiB the shim zeroes it with memset
 * (_ehooks_zero), above it jemalloc purges it. Either way every byte reads zero, and
 * the block is where the one just freed was (so the recycled path was the one taken). */
static void test_calloc_recycled_zeroed(void **state) {
  (void)state;
  static const size_t sizes[] = {(size_t)20 << 20, (size_t)40 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    unsigned char *p = be_malloc(n);
    assert_non_null(p);
    memset(p, 0xa5, n);
    be_free(p);
    unsigned char *q = be_calloc(1, n);
    assert_non_null(q);
    size_t nonzero = 0;
    for (size_t j = 0; j < n; j++)
      nonzero += q[j] != 0;
    assert_int_equal(nonzero, 0);
    /* The same extent; jemalloc offsets a large block into its first page at random. */
    if (n < (size_t)32 << 20)
      assert_int_equal((uintptr_t)q >> 12, (uintptr_t)p >> 12);
    be_free(q);
  }
}

/* jemalloc's extended API is the shim's, for programs built against libjemalloc. */
void *mallocx(size_t n, int flags);
size_t sallocx(const void *p, int flags);
void sdallocx(void *p, size_t n, int flags);
size_t nallocx(size_t n, int flags);

static void test_extended_api(void **state) {
  (void)state;
  void *p = mallocx(100, 0);
  assert_non_null(p);
  assert_int_equal(sallocx(p, 0), nallocx(100, 0));
  assert_int_equal(sallocx(p, 0), be_usable_size(p));
  sdallocx(p, 100, 0);
}

/* jemalloc's answer comes from the mappings recorded since start-up, which happens only
 * in checked mode: ctest runs this binary again with ALLOCSHIM_CHECK=1 for it. */
static void test_owns(void **state) {
  (void)state;
  if (!check_on)
    skip();
  assert_owns_own_and_only_own();
}

/* ---- What the profiler takes from libm and libgcc_s (the shim's own or opened late) -- */

/* How many doubles lie between a and b: 0 when equal, NaN to NaN included; a sign
 * apart (+0 and -0 too) is as far as it gets. */
static uint64_t ulps_apart(double a, double b) {
  if (a != a || b != b)
    return a != a && b != b ? 0 : UINT64_MAX;
  if (signbit(a) != signbit(b))
    return UINT64_MAX;
  int64_t ia, ib;
  memcpy(&ia, &a, sizeof ia);
  memcpy(&ib, &b, sizeof ib);
  /* doubles of either sign as one ordered line of integers */
  ia = ia < 0 ? INT64_MIN - ia : ia;
  ib = ib < 0 ? INT64_MIN - ib : ib;
  return ia > ib ? (uint64_t)ia - (uint64_t)ib : (uint64_t)ib - (uint64_t)ia;
}

#define MATH_ULPS 1 /* what the shim's exp and log may be off libm's by */
static uint64_t worst_exp, worst_log;

static void exp_near_libm(double x) {
  uint64_t d = ulps_apart(_exp(x), exp(x));
  if (d != 0 && (exp(x) == 0.0 || isinf(exp(x)))) /* where libm's overflows or underflows */
    d = UINT64_MAX;
  worst_exp = d > worst_exp ? d : worst_exp;
  if (d > MATH_ULPS)
    fail_msg("exp(%a): %a, libm %a", x, _exp(x), exp(x));
}

static void log_near_libm(double x) {
  uint64_t d = ulps_apart(_log(x), log(x));
  worst_log = d > worst_log ? d : worst_log;
  if (d > MATH_ULPS)
    fail_msg("log(%a): %a, libm %a", x, _log(x), log(x));
}

/* Every exponent a double has, the ends of each range, the values jemalloc passes
 * (1 - 2^-lg_prof_sample, uniform draws in (0, 1), sizes over the sample period), and
 * round's halves, signs and limits. */
static void test_profiler_math(void **state) {
  (void)state;
  const double specials[] = {
      0.0,      -0.0,      1.0, -1.0,   0x1p-1074, 0x1p-1022, 0x1.fffffffffffffp1023,
      HUGE_VAL, -HUGE_VAL, NAN, 709.78, 709.79,    -745.13,   -745.14,
      -708.4};
  for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
    exp_near_libm(specials[i]);
    log_near_libm(specials[i]);
  }
  for (double x = -745.2; x < 710.0; x += 0.0137)
    exp_near_libm(x);
  for (int e = -60; e <= 0; e++)
    for (int j = -8; j <= 8; j++)
      exp_near_libm(j * ldexp(1.0, e));
  for (int e = -1074; e <= 1023; e++)
    for (int j = 0; j < 64; j++)
      log_near_libm(ldexp(1.0 + j / 64.0, e));
  for (int j = 1; j < 100000; j++) {
    log_near_libm(1.0 + j * 0x1p-40);
    log_near_libm(1.0 - j * 0x1p-40);
    log_near_libm(j / 100000.0);
    exp_near_libm(-(double)j * 64 / 524288.0);
  }
  for (int lg = 1; lg < 64; lg++)
    log_near_libm(1.0 - 1.0 / (double)(UINT64_C(1) << lg));
  print_message("exp within %llu, log within %llu units in the last place of libm's\n",
                (unsigned long long)worst_exp, (unsigned long long)worst_log);

  const double halves[] = {0.5,
                           1.5,
                           2.5,
                           -0.5,
                           -1.5,
                           -2.5,
                           0.49999999999999994,
                           -0.49999999999999994,
                           0x1p52 - 0.5,
                           0x1p52,
                           -0x1p52,
                           0x1p53 + 2,
                           1e300,
                           -1e-300,
                           0.0,
                           -0.0};
  for (size_t i = 0; i < sizeof halves / sizeof *halves; i++)
    assert_int_equal(ulps_apart(_round(halves[i]), round(halves[i])), 0);
  assert_true(signbit(_round(-0.25)) && !signbit(_round(0.25)));
  assert_true(isnan(_round(NAN)) && _round(-HUGE_VAL) == -HUGE_VAL);
  for (double x = -1000.0; x < 1000.0; x += 0.0625)
    assert_int_equal(ulps_apart(_round(x), round(x)), 0);
  for (int lg = 0; lg < 64; lg++) /* jemalloc's unbiased sizes: size over a chance */
    for (int j = 1; j < 200; j++) {
      double size = j * 4096.0 + 8, period = ldexp(1.0, lg);
      double unbiased = size / (1.0 - exp(-size / period));
      assert_int_equal(ulps_apart(_round(unbiased), round(unbiased)), 0);
    }
}

/* The unwinder: one made-up frame until libgcc_s is open, which the constructor does
 * only with profiling on, and after an open that failed; then the walk reaches this
 * test's own frames, and the made-up frame is what a profile's early samples show. */
bool unwinder_open(const char *soname);
void allocshim_sampled_before_start(void);
void allocshim_sampled_in_thread_before_start(void);

struct walk {
  uintptr_t ip[64];
  int n;
};

static _Unwind_Reason_Code note_frame(struct _Unwind_Context *context, void *arg) {
  struct walk *w = arg;
  w->ip[w->n++] = __Unwind_GetIP(context);
  return w->n < 64 ? _URC_NO_REASON : _URC_END_OF_STACK;
}

/* A walk from here; whether it reached this function's caller. */
static __attribute__((noinline)) bool walk_from_here(struct walk *w) {
  uintptr_t caller = (uintptr_t)__builtin_return_address(0);
  w->n = 0;
  __Unwind_Backtrace(note_frame, w);
  for (int i = 0; i < w->n; i++)
    if (w->ip[i] == caller)
      return true;
  return false;
}

static void *walk_in_thread(void *w) {
  walk_from_here(w);
  return NULL;
}

static void test_profiler_unwinder(void **state) {
  (void)state;
  uintptr_t early = (uintptr_t)allocshim_sampled_before_start + 1;
  struct walk w;
  /* ctest runs this binary without profiling: nothing is open yet */
  if (be_profile_status() != ALLOC_OK) {
    for (int attempt = 0; attempt < 2; attempt++) {
      assert_false(walk_from_here(&w));
      assert_int_equal(w.n, 1);
      assert_true(w.ip[0] == early);
      assert_true(be_profile_early_frame() == 0); /* a leak check could not tell */
      assert_false(unwinder_open("liballocshim-no-such-library.so.0"));
    }
    /* Another thread's early sample is not the loader's: a frame of its own. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, walk_in_thread, &w), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.n, 1);
    assert_true(w.ip[0] == (uintptr_t)allocshim_sampled_in_thread_before_start + 1);
  }
  assert_true(unwinder_open("libgcc_s.so.1"));
  assert_true(walk_from_here(&w));
  assert_true(w.n > 1 && w.ip[0] != early);
  assert_true(be_profile_early_frame() == early);
  assert_true(unwinder_open("liballocshim-no-such-library.so.0")); /* open stays open */
  assert_true(walk_from_here(&w));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_version, reset),
      cmocka_unit_test_setup(test_thread_end_keeps_pages, reset),
      cmocka_unit_test_setup(test_profile_status, reset),
      cmocka_unit_test_setup(test_dump_backend_failure, reset),
      cmocka_unit_test_setup(test_profile_thread, reset),
      cmocka_unit_test_setup(test_dump_unsampled, reset),
      cmocka_unit_test_setup(test_creat_only_new_files, reset),
      cmocka_unit_test_setup(test_conf, reset),
      cmocka_unit_test_setup(test_calloc_recycled_zeroed, reset),
      cmocka_unit_test_setup(test_oversize_threshold, reset),
      cmocka_unit_test_setup(test_oversize_purge, reset),
      cmocka_unit_test_setup(test_extended_api, reset),
      cmocka_unit_test_setup(test_owns, reset),
      cmocka_unit_test_setup(test_thread_end_spares_unbound_arena, reset),
      cmocka_unit_test(test_profiler_math),
      cmocka_unit_test_setup(test_profiler_unwinder, reset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
