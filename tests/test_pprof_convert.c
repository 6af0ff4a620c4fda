/* Tests for tools/pprof_convert.c: its output decoded again with protobuf-c holds the
 * unbiased figures, the trimmed stacks and the mappings; bad input writes nothing. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pprof_convert.h"
#include "profile.pb-c.h"

typedef Perftools__Profiles__Profile Profile;

/* The mappings of the made-up process: the program, then the shim. */
#define MAPS                                                                                       \
  "MAPPED_LIBRARIES:\n"                                                                            \
  "5000-6000 r-xp 00001000 fe:00 12 /opt/app/prog\n"                                               \
  "6000-7000 rw-p 00003000 fe:00 12 /opt/app/prog\n"                                               \
  "7000-8000 rw-p 00000000 00:00 0 \n"                                                             \
  "1000-2000 r-xp 00000000 fe:00 13 /usr/lib/liballocshim.so.0.1.0\n"

/* Converts text; returns the decoded profile, or NULL with err set. */
static Profile *convert(const char *text, int *rc, char *err, size_t errlen) {
  FILE *in = fmemopen((void *)text, strlen(text), "r");
  assert_non_null(in);
  char path[] = "/tmp/test_pprof_convert.XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  gzFile out = gzdopen(dup(fd), "wb");
  assert_non_null(out);
  struct pprof_convert_opts opts = {.drop_mapping = "liballocshim", .read_build_ids = 0};
  *rc = pprof_convert(in, out, &opts, err, errlen);
  fclose(in);
  assert_int_equal(gzclose(out), Z_OK);
  assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
  gzFile back = gzdopen(fd, "rb");
  assert_non_null(back);
  static unsigned char buf[1 << 16];
  int n = gzread(back, buf, sizeof buf);
  gzclose(back);
  assert_true(n >= 0);
  if (*rc != 0) {
    assert_int_equal(n, 0); /* nothing written for a bad input */
    return NULL;
  }
  Profile *p = perftools__profiles__profile__unpack(NULL, (size_t)n, buf);
  assert_non_null(p);
  return p;
}

static const char *str(const Profile *p, int64_t i) {
  assert_true(i >= 0 && (size_t)i < p->n_string_table);
  return p->string_table[i];
}

static void test_unbiased_trimmed(void **state) {
  (void)state;
  const char *text = "heap_v2/524288\n"
                     "  t*: 11: 263144 [0: 0]\n"
                     "  t0: 11: 263144 [0: 0]\n"
                     /* shim, shim, program, program */
                     "@ 0x1100 0x1200 0x5100 0x5200\n"
                     "  t*: 1: 262144 [0: 0]\n"
                     "  t0: 1: 262144 [0: 0] a thread name\n"
                     "@ 0x1100 0x5300 0x5200\n"
                     "  t*: 10: 1000 [0: 0]\n"
                     "\n" MAPS;
  char err[256];
  int rc;
  Profile *p = convert(text, &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_string_equal(str(p, 0), "");
  /* No accumulated figures in the dump: inuse_* only. */
  assert_int_equal(p->n_sample_type, 2);
  assert_string_equal(str(p, p->sample_type[0]->type), "inuse_objects");
  assert_string_equal(str(p, p->sample_type[0]->unit), "count");
  assert_string_equal(str(p, p->sample_type[1]->type), "inuse_space");
  assert_string_equal(str(p, p->sample_type[1]->unit), "bytes");
  assert_string_equal(str(p, p->default_sample_type), "inuse_space");
  assert_string_equal(str(p, p->period_type->type), "space");
  assert_int_equal(p->period, 524288);

  assert_int_equal(p->n_sample, 2);
  /* jeprof's figures: x / (1 - exp(-(bytes/objs)/period)), worked out apart. */
  assert_int_equal(p->sample[0]->value[0], 3);
  assert_int_equal(p->sample[0]->value[1], 666237);
  assert_int_equal(p->sample[1]->value[0], 52434);
  assert_int_equal(p->sample[1]->value[1], 5243380);

  /* The shim's leading frames are gone; each address moved onto its call. */
  assert_int_equal(p->n_mapping, 2);
  assert_int_equal(p->sample[0]->n_location_id, 2);
  assert_int_equal(p->sample[1]->n_location_id, 2);
  uint64_t want[2][2] = {{0x50ff, 0x51ff}, {0x52ff, 0x51ff}};
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < 2; k++) {
      uint64_t id = p->sample[s]->location_id[k];
      assert_true(id >= 1 && id <= p->n_location);
      const Perftools__Profiles__Location *l = p->location[id - 1];
      assert_int_equal(l->id, id);
      assert_int_equal(l->address, want[s][k]);
      assert_int_equal(l->mapping_id, 1);
    }
  assert_int_equal(p->n_location, 3); /* 0x51ff is shared */

  /* The program's mapping first, whole, for pprof to symbolize from the file. */
  const Perftools__Profiles__Mapping *m = p->mapping[0];
  assert_int_equal(m->id, 1);
  assert_int_equal(m->memory_start, 0x5000);
  assert_int_equal(m->memory_limit, 0x6000);
  assert_int_equal(m->file_offset, 0x1000);
  assert_string_equal(str(p, m->filename), "/opt/app/prog");
  assert_false(m->has_functions);
  assert_string_equal(str(p, p->mapping[1]->filename), "/usr/lib/liballocshim.so.0.1.0");
  perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_accumulated(void **state) {
  (void)state;
  const char *text = "heap_v2/1\n"
                     "  t*: 1: 64 [5: 320]\n"
                     "@ 0x5100\n"
                     "  t*: 1: 64 [5: 320]\n" MAPS;
  char err[256];
  int rc;
  Profile *p = convert(text, &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(p->n_sample_type, 4);
  assert_string_equal(str(p, p->sample_type[2]->type), "alloc_objects");
  assert_string_equal(str(p, p->sample_type[3]->type), "alloc_space");
  /* Sampling every byte (period 1): the figures are exact. */
  assert_int_equal(p->sample[0]->value[0], 1);
  assert_int_equal(p->sample[0]->value[1], 64);
  assert_int_equal(p->sample[0]->value[2], 5);
  assert_int_equal(p->sample[0]->value[3], 320);
  perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_only_shim_frames_kept(void **state) {
  (void)state;
  /* A stack wholly inside the shim keeps its frames, rather than losing its bytes. */
  const char *text = "heap_v2/1\n  t*: 1: 8 [0: 0]\n@ 0x1100 0x1200\n  t*: 1: 8 [0: 0]\n" MAPS;
  char err[256];
  int rc;
  Profile *p = convert(text, &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(p->sample[0]->n_location_id, 2);
  perftools__profiles__profile__free_unpacked(p, NULL);
}

/* A sample the profiler could not unwind ("@" alone) keeps its bytes, with no location. */
static void test_stack_without_frames(void **state) {
  (void)state;
  const char *text = "heap_v2/1\n  t*: 2: 24 [0: 0]\n@\n  t*: 1: 16 [0: 0]\n"
                     "@ 0x1100\n  t*: 1: 8 [0: 0]\n" MAPS;
  char err[256];
  int rc;
  Profile *p = convert(text, &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(p->n_sample, 2);
  assert_int_equal(p->sample[0]->n_location_id, 0);
  assert_int_equal(p->sample[0]->value[1], 16);
  assert_int_equal(p->sample[1]->n_location_id, 1);
  perftools__profiles__profile__free_unpacked(p, NULL);
}

static void test_malformed(void **state) {
  (void)state;
  static const struct {
    const char *text, *msg;
  } cases[] = {
      {"", "empty input"},
      {"heap_v1/5\n", "not a jemalloc heap_v2"},
      {"heap_v2/\n", "not a jemalloc heap_v2"},
      {"heap_v2/524288\n", "no MAPPED_LIBRARIES"},
      {"heap_v2/524288\n  t*: 1: 2\n", "totals line"},
      {"heap_v2/524288\n  t*: 1: 2 [0: 0]\n@ 0x10\n", "no figures"},
      {"heap_v2/524288\n  t*: 1: 2 [0: 0]\n@ 0x10 zz\n", "not a hex number"},
      {"heap_v2/524288\n  t*: 1: 2 [0: 0]\n@ 0x10\nbogus\n", "after a stack"},
      {"heap_v2/524288\n  t*: 1: 2 [0: 0]\nbogus\n", "unexpected line"},
      {"heap_v2/524288\n  t*: 1: 2 [0: 0]\n@ 0x10\n  t*: 1: 2 [0: 0]\n" MAPS "5000-", "incomplete"},
      {"heap_v2/524288\n  t*: 1: 2 [0: 0]\n" MAPS "zz-1 r-xp 0 0 0 /x\n", "MAPPED_LIBRARIES line"},
      {"heap_v2/99999999999999999999999\n", "not a jemalloc heap_v2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char err[256];
    int rc;
    Profile *p = convert(cases[i].text, &rc, err, sizeof err);
    assert_null(p);
    assert_int_equal(rc, -1);
    if (!strstr(err, cases[i].msg))
      fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].msg);
  }
  /* A message longer than the room for it is cut, never overrun. */
  char tiny[8];
  int rc;
  assert_null(convert("garbage\n", &rc, tiny, sizeof tiny));
  assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

static void test_build_id(void **state) {
  (void)state;
  char hex[129];
  /* This test program is linked with a build ID (Debian's gcc always asks for one). */
  assert_int_equal(pprof_build_id("/proc/self/exe", hex, sizeof hex), 0);
  assert_true(strlen(hex) >= 16);
  assert_int_equal(strspn(hex, "0123456789abcdef"), strlen(hex));
  assert_int_equal(pprof_build_id("/nonexistent", hex, sizeof hex), -1);
  assert_int_equal(pprof_build_id("/proc/self/status", hex, sizeof hex), -1); /* not ELF */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unbiased_trimmed),
      cmocka_unit_test(test_accumulated),
      cmocka_unit_test(test_only_shim_frames_kept),
      cmocka_unit_test(test_stack_without_frames),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_build_id),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
