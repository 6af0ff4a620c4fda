/* mimalloc's half of the backend: version string and statistics. mimalloc has no
 * heap profiler, so the profiling calls report ALLOC_ENOTSUP. */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* mimalloc's out-of-memory and size-overflow reports become errno, as glibc sets it;
 * other reports (a bad free, say) keep mimalloc's default handling, which in a
 * release build is to say nothing. Set when the library loads, before main. */
static void errno_from_mimalloc(int err, void *arg) {
  (void)arg;
  if (err == ENOMEM || err == EOVERFLOW)
    errno = ENOMEM;
}

__attribute__((constructor)) static void mimalloc_errors(void) {
  mi_register_error(errno_from_mimalloc, NULL);
}

const char *be_version(void) {
  static char text[32];
  int v = mi_version(); /* 209 means 2.0.9 */
  snprintf(text, sizeof text, "%d.%d.%d", v / 100, v / 10 % 10, v % 10);
  return text;
}

int be_profile_status(void) { return ALLOC_ENOTSUP; }

int be_profile_dump(const char *path) {
  (void)path;
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
