/* Tests for src/stats.c on the built library: alloc_stats() moves with the program's
 * memory, and glibc's introspection calls (on glibc) agree with it. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"

#define MIB    ((size_t)1 << 20)
#define BLOCKS 64

static bool is_jemalloc(void) { return strcmp(EXPECTED_BACKEND, "jemalloc") == 0; }

/* Whether this process runs under a seccomp filter, under which idle return starts no
 * thread (src/internal.h, allocshim_under_seccomp). */
static bool under_seccomp(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  bool on = false;
  while (f != NULL && fgets(line, sizeof line, f) != NULL)
    on |= strncmp(line, "Seccomp:", 8) == 0 && strtol(line + 8, NULL, 10) != 0;
  if (f != NULL)
    fclose(f);
  return on;
}

/* Of 64 MiB freed, what malloc_trim(0) gives back at least. Both default builds: all but
 * a few MiB. mimalloc compiled in reaches that through what the shim holds back, which
 * needs idle return's thread and no setting that turns holding off; without them, and
 * through libmimalloc.so, which the shim cannot reach inside, mimalloc 2.0.9 keeps one
 * 32 MiB segment of a thread's after a collect. */
static size_t trim_returns(void) {
  bool holding = strcmp(BACKEND_KIND, "mimalloc-inside") == 0 && !under_seccomp() && !holding_off();
  return is_jemalloc() || holding ? (BLOCKS - 8) * MIB : 24 * MIB;
}

/* Memory back to the system: the shim's malloc_trim where the C library has the name
 * (glibc), else the backend's own purge, which malloc_trim calls (src/backend_*.c);
 * looked up by name so that the file builds for either C library. */
static int trim(void) {
  int (*malloc_trim_fn)(size_t) = (int (*)(size_t))dlsym(RTLD_DEFAULT, "malloc_trim");
  if (malloc_trim_fn != NULL)
    return malloc_trim_fn(0);
  void (*mi_collect_fn)(bool) = (void (*)(bool))dlsym(RTLD_DEFAULT, "mi_collect");
  assert_non_null(mi_collect_fn);
  mi_collect_fn(true);
  return 1;
}

static void test_null(void **state) {
  (void)state;
  errno = 0;
  assert_int_equal(alloc_stats(NULL), ALLOC_EINVAL);
  assert_int_equal(errno, EINVAL);
}

/* One sample's value from the Prometheus output, or -1 when the family is absent. */
static double prometheus_value(const char *name) {
  char out[4096], want[128];
  assert_int_equal(stats_printed(ALLOC_FORMAT_PROMETHEUS, out, sizeof out), ALLOC_OK);
  snprintf(want, sizeof want, "\n%s{backend=\"%s\"} ", name, EXPECTED_BACKEND);
  const char *at = strstr(out, want);
  return at == NULL ? -1 : strtod(at + strlen(want), NULL);
}

/* 64 MiB allocated and touched shows; freed and purged, it goes away again. */
static void test_stats_follow_memory(void **state) {
  (void)state;
  alloc_stats_t before, during, after;
  trim();
  assert_int_equal(alloc_stats(&before), ALLOC_OK);
  double returned = prometheus_value("allocshim_returned_bytes_total");
  static void *blocks[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) {
    blocks[i] = malloc(MIB);
    assert_non_null(blocks[i]);
    memset(blocks[i], i + 1, MIB);
  }
  assert_int_equal(alloc_stats(&during), ALLOC_OK);
  if (is_jemalloc()) {
    assert_true(during.allocated >= before.allocated + BLOCKS * MIB);
    assert_true(during.mapped >= during.active && during.active >= during.allocated);
  } else {
    assert_true(during.allocated == ALLOC_STAT_UNKNOWN);
    assert_true(during.active >= before.active + BLOCKS * MIB);
  }
  assert_true(during.resident >= before.resident + BLOCKS * MIB);

  for (int i = 0; i < BLOCKS; i++)
    free(blocks[i]);
  assert_int_equal(trim(), 1); /* memory went back to the system */
  assert_int_equal(alloc_stats(&after), ALLOC_OK);
  assert_true(after.resident < during.resident - trim_returns());
  if (is_jemalloc()) {
    assert_true(after.allocated < before.allocated + MIB);
    assert_true(returned >= 0);
    assert_true(prometheus_value("allocshim_returned_bytes_total") >=
                returned + (BLOCKS - 8) * MIB);
  } else {
    assert_true(after.active < during.active - trim_returns());
    assert_true(returned == -1); /* mimalloc cannot tell: absent, not 0 */
  }
}

/* A thread's burst: resident memory at `start` (its stack and, under an emulator, the
 * emulator's own for it included), it allocates 64 MiB in blocks of `size`, resident at
 * `peak` (0 if an allocation failed: cmocka asserts on the main thread only), frees
 * them and idles until told to end. */
struct burst {
  size_t size, start, peak;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int step; /* 1: freed, 2: may end */
};

static void *burst_and_idle(void *arg) {
  struct burst *b = arg;
  alloc_stats_t now;
  b->start = alloc_stats(&now) == ALLOC_OK ? now.resident : SIZE_MAX;
  size_t n = BLOCKS * MIB / b->size;
  void **blocks = calloc(n, sizeof *blocks);
  bool all = blocks != NULL;
  for (size_t i = 0; all && i < n; i++) {
    all = (blocks[i] = malloc(b->size)) != NULL;
    if (all)
      memset(blocks[i], (int)i, b->size);
  }
  if (all && alloc_stats(&now) == ALLOC_OK)
    b->peak = now.resident;
  for (size_t i = 0; blocks != NULL && i < n; i++)
    free(blocks[i]);
  free(blocks);
  pthread_mutex_lock(&b->lock);
  b->step = 1;
  pthread_cond_broadcast(&b->cond);
  while (b->step != 2)
    pthread_cond_wait(&b->cond, &b->lock);
  pthread_mutex_unlock(&b->lock);
  return NULL;
}

/* malloc_trim(0) returns what another thread freed while that thread lives on, idle,
 * making no allocator call: small blocks and 1 MiB ones, 64 MiB of each. Without it
 * that memory stays for seconds at least (idle return's period). */
static void test_trim_reaches_live_thread(void **state) {
  (void)state;
  if (trim_returns() < (BLOCKS - 8) * MIB)
    skip(); /* nothing held back: only the owner gives its pages back */
  const size_t sizes[] = {64, MIB};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    struct burst b = {.size = sizes[k]};
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    trim();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, burst_and_idle, &b), 0);
    pthread_mutex_lock(&b.lock);
    while (b.step != 1)
      pthread_cond_wait(&b.cond, &b.lock);
    pthread_mutex_unlock(&b.lock);
    int trimmed = trim();
    alloc_stats_t after;
    int stats = alloc_stats(&after);
    /* The thread ends, and b goes, before anything is asserted. */
    pthread_mutex_lock(&b.lock);
    b.step = 2;
    pthread_cond_broadcast(&b.cond);
    pthread_mutex_unlock(&b.lock);
    assert_int_equal(pthread_join(t, NULL), 0);
    pthread_cond_destroy(&b.cond);
    pthread_mutex_destroy(&b.lock);
    assert_true(b.start != SIZE_MAX && b.peak >= b.start + (BLOCKS - 8) * MIB);
    assert_int_equal(trimmed, 1);
    assert_int_equal(stats, ALLOC_OK);
    /* A quarter of the burst, for what a thread costs besides: a share, since qemu-user
     * emulating larger pages than the host's counts each host page as a guest page. */
    assert_in_range(after.resident, 0, b.start + (b.peak - b.start) / 4);
  }
}

/* glibc's introspection calls: musl has none of them, nor does the shim export them there. */
#if ALLOCSHIM_GLIBC
static void test_mallinfo2_agrees(void **state) {
  (void)state;
  void *p = malloc(32 * MIB);
  memset(p, 1, 32 * MIB);
  alloc_stats_t s;
  alloc_stats(&s);
  struct mallinfo2 m = mallinfo2();
  size_t in_use = is_jemalloc() ? s.allocated : s.active;
  assert_true(m.uordblks + MIB >= in_use && m.uordblks <= in_use + MIB);
  assert_true(m.uordblks >= 32 * MIB);
  assert_true(m.arena >= m.uordblks);
  assert_int_equal(m.fordblks, m.arena - m.uordblks);
  free(p);
  struct mallinfo2 later = mallinfo2();
  assert_true(later.uordblks + 16 * MIB <= m.uordblks || !is_jemalloc());
}

static void test_mallinfo_clamped(void **state) {
  (void)state;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo m = mallinfo();
#pragma GCC diagnostic pop
  struct mallinfo2 m2 = mallinfo2();
  assert_true(m.uordblks >= 0 && m.arena >= 0);
  size_t want = m2.arena > INT_MAX ? INT_MAX : m2.arena;
  assert_true((size_t)m.arena <= want + MIB && (size_t)m.arena + MIB >= want);
}

static void test_malloc_stats_and_info(void **state) {
  (void)state;
  char out[4096];
  stderr_begin();
  malloc_stats();
  stderr_end(out, sizeof out);
  assert_non_null(strstr(out, "Arena 0:"));
  assert_non_null(strstr(out, "in use bytes     = "));

  FILE *f = tmpfile();
  assert_int_equal(malloc_info(0, f), 0);
  rewind(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = '\0';
  fclose(f);
  assert_int_equal(strncmp(out, "<malloc version=\"1\"", 19), 0);
  assert_non_null(strstr(out, "<system type=\"current\" size=\""));
  assert_non_null(strstr(out, "</malloc>\n"));
  errno = 0;
  assert_int_equal(malloc_info(1, stdout), -1);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(mallopt(M_ARENA_MAX, 2), 1);
}
#endif

static void test_stats_print(void **state) {
  (void)state;
  char out[1024];
  FILE *f = tmpfile();
  assert_int_equal(alloc_stats_print(f, ALLOC_FORMAT_JSON), ALLOC_OK);
  assert_int_equal(alloc_stats_print(f, ALLOC_FORMAT_TEXT), ALLOC_OK);
  rewind(f);
  size_t n = fread(out, 1, sizeof out - 1, f);
  out[n] = '\0';
  fclose(f);
  char want[64];
  snprintf(want, sizeof want, "{\"backend\":\"%s\"", EXPECTED_BACKEND);
  assert_int_equal(strncmp(out, want, strlen(want)), 0);
  assert_non_null(strstr(out, is_jemalloc() ? "\"allocated\":" : "\"allocated\":null"));
  assert_non_null(strstr(out, "}\nallocshim: "));
  assert_non_null(strstr(out, is_jemalloc() ? " retained=" : " retained=unknown"));
  errno = 0;
  assert_int_equal(alloc_stats_print(NULL, ALLOC_FORMAT_TEXT), ALLOC_EINVAL);
  assert_int_equal(errno, EINVAL);
  assert_int_equal(alloc_stats_print(stdout, 7), ALLOC_EINVAL);
  FILE *ro = fopen("/dev/null", "r");
  assert_int_equal(alloc_stats_print(ro, ALLOC_FORMAT_TEXT), ALLOC_EIO);
  fclose(ro);
}

/* Prometheus's text format, read back line by line as promtool would: every sample
 * follows its own HELP and TYPE, carries the backend label and a number; the figures
 * this backend cannot tell are absent. */
static void test_stats_print_prometheus(void **state) {
  (void)state;
  char out[4096];
  assert_int_equal(stats_printed(ALLOC_FORMAT_PROMETHEUS, out, sizeof out), ALLOC_OK);
  static const char *const all[] = {"allocated_bytes",    "active_bytes",   "resident_bytes",
                                    "mapped_bytes",       "retained_bytes", "returned_bytes_total",
                                    "fragmentation_ratio"};
  char label[64];
  snprintf(label, sizeof label, "{backend=\"%s\"} ", EXPECTED_BACKEND);
  int seen = 0;
  double ratio = 0;
  char name[64] = "";
  char *line = out;
  for (int stage = 0; *line != '\0'; stage = (stage + 1) % 3) {
    char *end = strchr(line, '\n');
    assert_non_null(end); /* every line ends */
    *end = '\0';
    assert_int_equal(strncmp(line, "allocshim_", 10) == 0 || line[0] == '#', 1);
    if (stage == 0) {
      assert_int_equal(sscanf(line, "# HELP allocshim_%63s ", name), 1);
      assert_true(strlen(line) > strlen(name) + 18); /* a text follows the name */
    } else if (stage == 1) {
      char type[16], want[128];
      assert_int_equal(sscanf(line, "# TYPE %63s %15s", want, type), 2);
      assert_string_equal(want + 10, name); /* the family HELP named */
      assert_string_equal(type, strstr(name, "_total") ? "counter" : "gauge");
    } else {
      char *sample = line + 10 + strlen(name);
      assert_int_equal(strncmp(line + 10, name, strlen(name)), 0);
      assert_int_equal(strncmp(sample, label, strlen(label)), 0);
      char *num = sample + strlen(label), *rest;
      double v = strtod(num, &rest);
      assert_true(rest != num && *rest == '\0' && v >= 0);
      if (strcmp(name, "active_bytes") == 0 || strcmp(name, "resident_bytes") == 0)
        assert_true(v > 0);
      if (strcmp(name, "fragmentation_ratio") == 0)
        ratio = v;
      for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcmp(name, all[i]) == 0)
          seen |= 1 << i;
    }
    line = end + 1;
  }
  /* jemalloc knows every figure, active >= allocated; mimalloc only active and resident. */
  assert_int_equal(seen, is_jemalloc() ? 0x7f : 0x06);
  if (is_jemalloc())
    assert_true(ratio >= 1.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_null),
    cmocka_unit_test(test_stats_follow_memory),
    cmocka_unit_test(test_trim_reaches_live_thread),
#if ALLOCSHIM_GLIBC
    cmocka_unit_test(test_mallinfo2_agrees),
    cmocka_unit_test(test_mallinfo_clamped),
    cmocka_unit_test(test_malloc_stats_and_info),
#endif
    cmocka_unit_test(test_stats_print),
    cmocka_unit_test(test_stats_print_prometheus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
