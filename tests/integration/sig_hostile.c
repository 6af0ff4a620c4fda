/* A program that treats its descriptors and signals the way real ones do (closefrom,
 * closed stdio, a crash, a data file on descriptor 2), for tests/integration/sig_hostile.sh.
 * It knows nothing of allocshim beyond the heap profiles it counts and mallctl. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../test_util.h"

/* Said on stderr with write(), which still works when stdout is closed. */
static int say_fail(const char *what, int arg) {
  char line[256];
  int n = snprintf(line, sizeof line, "sig_hostile: FAIL: %s (%d)\n", what, arg);
  if (write(STDERR_FILENO, line, (size_t)n) < 0) {
  }
  return 1;
}

/* Profiles in `dir`; a directory not made yet holds none. */
static int count_heaps(const char *dir) {
  int n = count_entries(dir, ".heap");
  return n < 0 ? 0 : n;
}

/* Waits until `dir` holds at least `want` profiles; false after 30 s. A dump is
 * written by another thread, so there is no event to wait for but the file. */
static bool wait_heaps(const char *dir, int want) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (count_heaps(dir) >= want)
      return true;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > 30)
      return false;
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
  }
}

enum { FILES = 8 };

static bool files_intact(const int *fd, int n) {
  for (int i = 0; i < n; i++) {
    char want[32], got[64];
    int len = snprintf(want, sizeof want, "data file %d\n", i);
    struct stat sb;
    if (fstat(fd[i], &sb) != 0 || sb.st_size != len || pread(fd[i], got, sizeof got, 0) != len ||
        memcmp(got, want, (size_t)len) != 0)
      return false;
  }
  return true;
}

/* sshd-style: every descriptor above 2 closed, then the program's own files take the
 * lowest numbers; signals must not write into them. */
static int closefrom_case(const char *prof_dir, const char *data_dir, int per_signal) {
  struct rlimit rl;
  int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
  for (int fd = 3; fd < top; fd++)
    close(fd);
  int fd[FILES];
  for (int i = 0; i < FILES; i++) {
    char path[4096], text[32];
    snprintf(path, sizeof path, "%s/data%d", data_dir, i);
    fd[i] = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int len = snprintf(text, sizeof text, "data file %d\n", i);
    if (fd[i] < 0 || write(fd[i], text, (size_t)len) != len)
      return say_fail("cannot write data file", i);
  }
  if (fd[0] != 3)
    return say_fail("first data file not at the lowest descriptor", fd[0]);
  for (int i = 1; i <= 3; i++) {
    raise(SIGUSR2); /* handled before raise() returns */
    if (!files_intact(fd, FILES))
      return say_fail("a data file changed after signal", i);
    if (!wait_heaps(prof_dir, i * per_signal))
      return say_fail("no dump after signal", i);
  }
  return files_intact(fd, FILES) ? 0 : say_fail("a data file changed after the dumps", 0);
}

/* Started with stdin and stdout closed: they must stay closed (nothing of the shim's
 * may take their numbers, or the program's output goes into it), and the program
 * gets exactly the dumps it was signalled for. The script counts them after exit. */
static int closed_stdio_case(const char *prof_dir, int per_signal) {
  for (int fd = 0; fd <= 1; fd++)
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
      return say_fail("a closed standard descriptor is open at start", fd);
  for (int i = 0; i < 5; i++) {
    printf("line %d of output nobody reads\n", i);
    fflush(stdout);
  }
  for (int i = 1; i <= 3; i++) {
    raise(SIGUSR2);
    if (!wait_heaps(prof_dir, i * per_signal))
      return say_fail("no dump after signal", i);
  }
  return 0;
}

/* A real crash, after some allocation; the ubsan preset must not stop it first. */
__attribute__((no_sanitize("undefined"))) static int crash_case(void) {
  char *volatile p = malloc(100);
  free(p);
  p = (char *)(uintptr_t)(getpid() < 0); /* NULL the compiler cannot see */
  *(volatile char *)p = 1;
  return say_fail("still alive after writing through NULL", 0);
}

/* stderr taken over: descriptor 2 closed, and a data file opened in its place. */
static int fd2_case(const char *path) {
  close(STDERR_FILENO);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd != STDERR_FILENO)
    return 2; /* nowhere to say it; the script sees the data file missing */
  if (write(fd, "data\n", 5) != 5)
    return 3;
  return 0; /* through exit(): the at-exit handlers run */
}

/* The descriptors above 2 this process has open, on one line ("" for none). */
static int fds_case(void) {
  for (int fd = 3; fd < 4096; fd++)
    if (fcntl(fd, F_GETFD) != -1)
      printf("%d ", fd);
  printf("\n");
  return 0;
}

/* The sampling interval jemalloc ended up with: mallctl("opt.lg_prof_sample"). */
static int lg_sample_case(void) {
  int (*ctl)(const char *, void *, size_t *, void *, size_t) =
      (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
  size_t lg = 0, len = sizeof lg;
  if (ctl == NULL || ctl("opt.lg_prof_sample", &lg, &len, NULL, 0) != 0)
    return say_fail("no mallctl(\"opt.lg_prof_sample\")", 0);
  printf("lg_prof_sample=%zu\n", lg);
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  if (strcmp(mode, "closefrom") == 0 && argc == 5)
    return closefrom_case(argv[2], argv[3], atoi(argv[4]));
  if (strcmp(mode, "closed-stdio") == 0 && argc == 4)
    return closed_stdio_case(argv[2], atoi(argv[3]));
  if (strcmp(mode, "crash") == 0)
    return crash_case();
  if (strcmp(mode, "fd2") == 0 && argc == 3)
    return fd2_case(argv[2]);
  if (strcmp(mode, "lg-sample") == 0)
    return lg_sample_case();
  if (strcmp(mode, "fds") == 0)
    return fds_case();
  fprintf(stderr, "usage: sig_hostile closefrom PROF_DIR DATA_DIR DUMPS_PER_SIGNAL | closed-stdio "
                  "PROF_DIR DUMPS_PER_SIGNAL | crash | fd2 FILE | lg-sample | fds\n");
  return 2;
}
