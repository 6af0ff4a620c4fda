/* Tests for src/api.c: status texts, identity and alloc_profile_dump() on the built
 * library. ctest runs it twice on jemalloc builds: with and without ALLOCSHIM_PROF=1. */
#define _GNU_SOURCE
#include <allocshim.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_util.h"

static char dir[] = "/tmp/allocshim-test-api.XXXXXX";
static int expected_status; /* what alloc_profile_supported() must say in this run */

static int setup(void **state) {
  (void)state;
  if (mkdtemp(dir) == NULL)
    return -1;
  bool jemalloc = strcmp(EXPECTED_BACKEND, "jemalloc") == 0;
  const char *prof = getenv("ALLOCSHIM_PROF");
  expected_status = !jemalloc                          ? ALLOC_ENOTSUP
                    : (prof && strcmp(prof, "1") == 0) ? ALLOC_OK
                                                       : ALLOC_EPROFOFF;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd);
}

/* Number of entries in the test directory, "." and ".." aside. */
static int entries(void) { return count_entries(dir, ""); }

static void empty_dir(void) {
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (e->d_name[0] != '.')
      unlink(p);
  }
  if (d)
    closedir(d);
}

static void test_strerror(void **state) {
  (void)state;
  const int codes[] = {ALLOC_OK, ALLOC_ENOTSUP, ALLOC_EPROFOFF, ALLOC_EINVAL, ALLOC_EIO};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    const char *t = alloc_strerror(codes[i]);
    assert_non_null(t);
    assert_true(strlen(t) > 5);
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(t, alloc_strerror(codes[j]));
  }
  assert_non_null(strstr(alloc_strerror(ALLOC_ENOTSUP), "jemalloc"));
  assert_non_null(strstr(alloc_strerror(ALLOC_ENOTSUP), "Linux glibc x86_64"));
  assert_non_null(strstr(alloc_strerror(ALLOC_EPROFOFF), "ALLOCSHIM_PROF=1"));
  const int unknown[] = {1, -5, 12345, INT_MIN, INT_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
    assert_string_equal(alloc_strerror(unknown[i]), "unknown allocshim status code");
}

static void test_identity(void **state) {
  (void)state;
  assert_string_equal(alloc_version(), ALLOCSHIM_VERSION_STRING);
  assert_int_equal(ALLOCSHIM_VERSION_HEX, (ALLOCSHIM_VERSION_MAJOR << 16) |
                                              (ALLOCSHIM_VERSION_MINOR << 8) |
                                              ALLOCSHIM_VERSION_PATCH);
  assert_string_equal(alloc_backend(), EXPECTED_BACKEND);
  const char *v = alloc_backend_version();
  int major = -1, minor = -1, patch = -1;
  assert_int_equal(sscanf(v, "%d.%d.%d", &major, &minor, &patch), 3);
  assert_int_equal(major, strcmp(EXPECTED_BACKEND, "jemalloc") == 0 ? 5 : 2);
}

static void test_profile_supported(void **state) {
  (void)state;
  assert_int_equal(alloc_profile_supported(), expected_status);
}

/* Bad arguments: a defined status and errno, and nothing left in the directory. */
static void test_dump_bad_paths(void **state) {
  (void)state;
  char path[PATH_MAX * 2];
  /* status and err are what a run with profiling on must see. */
  struct bad_case {
    const char *what;
    int status, err;
  } cases[5];
  int n = 0;
  char missing[PATH_MAX], under_file[PATH_MAX], is_dir[PATH_MAX], file[PATH_MAX];
  snprintf(missing, sizeof missing, "%s/no/such/dir/x.heap", dir);
  snprintf(file, sizeof file, "%s/plain", dir);
  snprintf(under_file, sizeof under_file, "%s/plain/x.heap", dir);
  snprintf(is_dir, sizeof is_dir, "%s/sub", dir);
  memset(path, 'a', sizeof path - 1);
  path[sizeof path - 1] = '\0';
  cases[n++] = (struct bad_case){"", ALLOC_EINVAL, EINVAL};
  cases[n++] = (struct bad_case){path, ALLOC_EINVAL, ENAMETOOLONG};
  cases[n++] = (struct bad_case){missing, ALLOC_EIO, ENOENT};
  cases[n++] = (struct bad_case){under_file, ALLOC_EIO, ENOTDIR};
  cases[n++] = (struct bad_case){is_dir, ALLOC_EIO, EISDIR};
  for (int i = 0; i < n; i++) {
    empty_dir();
    rmdir(is_dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(mkdir(is_dir, 0700), 0);
    char err[1024];
    stderr_begin();
    errno = 0;
    int st = alloc_profile_dump(cases[i].what);
    int e = errno;
    stderr_end(err, sizeof err);
    errno = e;
    if (expected_status == ALLOC_ENOTSUP) {
      assert_int_equal(st, ALLOC_ENOTSUP);
      assert_int_equal(errno, ENOTSUP);
      assert_string_equal(err, ""); /* test_dump saw the one notice already */
    } else if (expected_status == ALLOC_EPROFOFF && cases[i].status == ALLOC_EIO) {
      assert_int_equal(st, ALLOC_EPROFOFF);
      assert_int_equal(errno, ENOENT);
    } else {
      assert_int_equal(st, cases[i].status);
      assert_int_equal(errno, cases[i].err);
    }
    assert_int_equal(entries(), 2); /* only "plain" and "sub": no partial file */
  }
  rmdir(is_dir);
  empty_dir();
}

static void test_dump(void **state) {
  (void)state;
  empty_dir();
  char cwd[PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(dir), 0);
  char err[4096];
  stderr_begin();
  errno = 0;
  int st1 = alloc_profile_dump("explicit.heap");
  int e1 = errno;
  int st2 = alloc_profile_dump(NULL); /* allocshim.<pid>.<seq>.heap, here */
  stderr_end(err, sizeof err);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(st1, expected_status);
  assert_int_equal(st2, expected_status);
  if (expected_status == ALLOC_ENOTSUP) {
    assert_int_equal(e1, ENOTSUP);
    assert_int_equal(count_of(err, "not supported"), 1); /* said once, not twice */
    assert_int_equal(entries(), 0);
    return;
  }
  if (expected_status == ALLOC_EPROFOFF) {
    assert_int_equal(e1, ENOENT);
    assert_int_equal(entries(), 0);
    return;
  }
  /* Real jemalloc heap profiles, complete, with no temporary file beside them. */
  char name[PATH_MAX];
  snprintf(name, sizeof name, "%s/allocshim.%ld.0.heap", dir, (long)getpid());
  const char *files[] = {"explicit.heap", name};
  for (int i = 0; i < 2; i++) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s%s%s", files[i][0] == '/' ? "" : dir, files[i][0] == '/' ? "" : "/",
             files[i]);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char head[8] = {0};
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    assert_memory_equal(head, "heap_v2/", 8);
  }
  assert_int_equal(entries(), 2);
  empty_dir();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_identity),
      cmocka_unit_test(test_profile_supported),
      cmocka_unit_test(test_dump), /* first: it checks the one-time notice */
      cmocka_unit_test(test_dump_bad_paths),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
