/* Memory statistics from the backend: alloc_stats() and its printer, and (on glibc) its
 * introspection calls (mallinfo2, malloc_stats, malloc_info, malloc_trim, mallopt)
 * answered from the same figures, so glibc-minded monitoring keeps telling the truth. */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

int alloc_stats(alloc_stats_t *out) {
  if (out == NULL) {
    errno = EINVAL;
    return ALLOC_EINVAL;
  }
  be_stats(out);
  return ALLOC_OK;
}

/* A field for printing, appended at buf + *len: the number, or `unknown` (text) /
 * null (JSON). */
static void put(char *buf, size_t cap, size_t *len, const char *sep, const char *name, size_t v,
                bool json) {
  char num[24];
  if (v == ALLOC_STAT_UNKNOWN)
    snprintf(num, sizeof num, "%s", json ? "null" : "unknown");
  else
    snprintf(num, sizeof num, "%zu", v);
  int n = snprintf(buf + *len, cap - *len, json ? "%s\"%s\":%s" : "%s%s=%s", sep, name, num);
  if (n > 0)
    *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* The statistics as one line, into a buffer rather than a FILE, so that the at-exit
 * line can be written with write() to a descriptor checked first (below). */
static size_t format_stats(char *buf, size_t cap, bool json) {
  alloc_stats_t s;
  be_stats(&s);
  const char *sep = json ? "," : " ";
  int n = snprintf(buf, cap, json ? "{\"backend\":\"%s\",\"version\":\"%s\"" : "allocshim: %s %s:",
                   alloc_backend(), alloc_backend_version());
  size_t len = n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
  put(buf, cap, &len, sep, "allocated", s.allocated, json);
  put(buf, cap, &len, sep, "active", s.active, json);
  put(buf, cap, &len, sep, "resident", s.resident, json);
  put(buf, cap, &len, sep, "mapped", s.mapped, json);
  put(buf, cap, &len, sep, "retained", s.retained, json);
  n = snprintf(buf + len, cap - len, json ? "}\n" : "\n");
  return n > 0 && len + (size_t)n < cap ? len + (size_t)n : cap - 1;
}

/* One Prometheus metric family, appended at buf + *len: HELP, TYPE and its one sample.
 * `value` is already text, so that a ratio and a byte count go through one path. */
static void put_metric(char *buf, size_t cap, size_t *len, const char *name, const char *type,
                       const char *help, const char *value) {
  int n =
      snprintf(buf + *len, cap - *len,
               "# HELP allocshim_%s %s\n# TYPE allocshim_%s %s\nallocshim_%s{backend=\"%s\"} %s\n",
               name, help, name, type, name, alloc_backend(), value);
  if (n > 0)
    *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

static void put_bytes(char *buf, size_t cap, size_t *len, const char *name, const char *type,
                      const char *help, size_t v) {
  if (v == ALLOC_STAT_UNKNOWN)
    return; /* left out: an absent series says "unknown", a 0 would be believed */
  char num[24];
  snprintf(num, sizeof num, "%zu", v);
  put_metric(buf, cap, len, name, type, help, num);
}

/* The text exposition format, version 0.0.4: what `promtool check metrics` accepts
 * without a lint warning (base units, _total only on the counter). */
static size_t format_prometheus(char *buf, size_t cap) {
  alloc_stats_t s;
  be_stats(&s); /* first: it advances jemalloc's epoch, which be_returned_bytes reads */
  size_t returned = be_returned_bytes();
  size_t len = 0;
  buf[0] = '\0';
  put_bytes(buf, cap, &len, "allocated_bytes", "gauge", "Bytes in live blocks the program owns.",
            s.allocated);
  put_bytes(buf, cap, &len, "active_bytes", "gauge",
            "Bytes in active pages: holding live blocks (jemalloc), committed (mimalloc).",
            s.active);
  put_bytes(buf, cap, &len, "resident_bytes", "gauge",
            "Resident bytes: the allocator's (jemalloc), the whole process's (mimalloc).",
            s.resident);
  put_bytes(buf, cap, &len, "mapped_bytes", "gauge",
            "Bytes mapped from the system and in use by the allocator.", s.mapped);
  put_bytes(buf, cap, &len, "retained_bytes", "gauge", "Bytes mapped but unused, kept for reuse.",
            s.retained);
  put_bytes(buf, cap, &len, "returned_bytes_total", "counter",
            "Bytes given back to the operating system since the process started.", returned);
  if (s.allocated != ALLOC_STAT_UNKNOWN && s.active != ALLOC_STAT_UNKNOWN && s.allocated > 0) {
    /* In integers: "%f" follows the program's LC_NUMERIC, and "1,25" is no sample. */
    uint64_t num = s.active, den = s.allocated;
    while (den > UINT64_MAX / 1000000)
      num >>= 1, den >>= 1;
    char ratio[48];
    snprintf(ratio, sizeof ratio, "%" PRIu64 ".%06" PRIu64, num / den, num % den * 1000000 / den);
    put_metric(buf, cap, &len, "fragmentation_ratio", "gauge",
               "Active bytes over allocated bytes; 1 is no fragmentation.", ratio);
  }
  return len;
}

int alloc_stats_print(FILE *f, int format) {
  if (f == NULL || (format != ALLOC_FORMAT_TEXT && format != ALLOC_FORMAT_JSON &&
                    format != ALLOC_FORMAT_PROMETHEUS)) {
    errno = EINVAL;
    return ALLOC_EINVAL;
  }
  /* On the stack, not malloc'd: the caller may be inside the allocator's own report. */
  char text[2048];
  if (format == ALLOC_FORMAT_PROMETHEUS)
    format_prometheus(text, sizeof text);
  else
    format_stats(text, sizeof text, format == ALLOC_FORMAT_JSON);
  fputs(text, f);
  return fflush(f) == 0 && !ferror(f) ? ALLOC_OK : (errno = EIO, ALLOC_EIO);
}

/* glibc's introspection: the names exist only where glibc's <malloc.h> declares them. */
#if ALLOCSHIM_GLIBC
static size_t known(size_t v) { return v == ALLOC_STAT_UNKNOWN ? 0 : v; }

/* glibc's fields in the backend's terms: arena is what the allocator holds from the
 * system, uordblks what the program holds, fordblks the difference. Where a backend
 * cannot count live bytes (mimalloc), uordblks is its active memory. */
struct mallinfo2 stats_mallinfo2(void) {
  alloc_stats_t s;
  be_stats(&s);
  size_t in_use = s.allocated != ALLOC_STAT_UNKNOWN ? s.allocated : known(s.active);
  size_t held = s.mapped != ALLOC_STAT_UNKNOWN ? s.mapped : known(s.active);
  struct mallinfo2 m = {0};
  m.arena = held > in_use ? held : in_use;
  m.uordblks = in_use;
  m.fordblks = m.arena - in_use;
  m.keepcost = known(s.retained);
  return m;
}

static int clamp(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

struct mallinfo stats_mallinfo(void) {
  struct mallinfo2 m2 = stats_mallinfo2();
  struct mallinfo m = {0};
  m.arena = clamp(m2.arena);
  m.uordblks = clamp(m2.uordblks);
  m.fordblks = clamp(m2.fordblks);
  m.keepcost = clamp(m2.keepcost);
  return m;
}

/* glibc's layout on stderr, so scripts that scrape it keep working. */
void stats_malloc_stats(void) {
  struct mallinfo2 m = stats_mallinfo2();
  fprintf(stderr,
          "Arena 0:\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
          "Total (incl. mmap):\nsystem bytes     = %10zu\nin use bytes     = %10zu\n"
          "max mmap regions = %10d\nmax mmap bytes   = %10lu\n",
          m.arena, m.uordblks, m.arena, m.uordblks, 0, 0ul);
}

/* glibc's XML shape, one heap, the backend named in a comment-free attribute. */
int stats_malloc_info(int options, FILE *fp) {
  if (options != 0 || fp == NULL) {
    errno = EINVAL;
    return -1;
  }
  struct mallinfo2 m = stats_mallinfo2();
  fprintf(fp,
          "<malloc version=\"1\" allocator=\"%s\">\n"
          "<heap nr=\"0\">\n<sizes>\n</sizes>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n"
          "</heap>\n"
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"0\" size=\"%zu\"/>\n"
          "<total type=\"mmap\" count=\"0\" size=\"0\"/>\n"
          "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n"
          "<aspace type=\"total\" size=\"%zu\"/>\n<aspace type=\"mprotect\" size=\"%zu\"/>\n"
          "</malloc>\n",
          alloc_backend(), m.fordblks, m.arena, m.arena, m.arena, m.arena, m.fordblks, m.arena,
          m.arena, m.arena, m.arena);
  return 0;
}

/* glibc: 1 if memory was returned to the system. The pad cannot be honoured by
 * either backend's purge and is ignored. */
int stats_malloc_trim(size_t pad) {
  (void)pad;
  return be_purge() ? 1 : 0;
}

/* glibc's knobs tune glibc's allocator; none maps onto these backends, so like glibc
 * for a parameter it accepts, the call succeeds and changes nothing. */
int stats_mallopt(int param, int value) {
  (void)param;
  (void)value;
  return 1;
}
#endif /* ALLOCSHIM_GLIBC */

/* ALLOCSHIM_STATS_AT_EXIT's line goes to the stderr the program started with, and
 * nowhere else. Programs close stderr at exit (coreutils' close_stdout, an atexit
 * handler registered after ours, so it runs first), and a program may have put a
 * file of its own on descriptor 2. So, only with the setting, start-up keeps which
 * file descriptor 2 was (device and inode) and a close-on-exec copy of it at a high
 * number, out of the way of the lowest-free rule programs rely on. At exit the line
 * goes to descriptor 2 if it is still that file, else to the copy if it still is
 * (the program may have closed or reused that number too), else nowhere. It is
 * written with write(): the stderr FILE may have been closed. */
static int err_copy = -1;
static dev_t err_dev;
static ino_t err_ino;

static bool first_stderr(int fd) {
  struct stat sb;
  return fd >= 0 && fstat(fd, &sb) == 0 && sb.st_dev == err_dev && sb.st_ino == err_ino;
}

static void print_at_exit(void) {
  int fd = first_stderr(STDERR_FILENO) ? STDERR_FILENO : first_stderr(err_copy) ? err_copy : -1;
  if (fd < 0)
    return;
  int saved = errno;
  char line[512];
  size_t len = format_stats(line, sizeof line, false);
  allocshim_write_all(fd, line, len);
  errno = saved;
}

void stats_start(void) {
  if (!allocshim_env_flag("STATS_AT_EXIT"))
    return;
  struct stat sb;
  if (fstat(STDERR_FILENO, &sb) != 0)
    return; /* started without stderr: whatever takes its number later is not it */
  err_dev = sb.st_dev;
  err_ino = sb.st_ino;
  /* Below 1024, where a descriptor is usable with select(), and clear of the numbers
   * a program uses; lower when the limit is, but never one of the program's last few
   * (under a limit of 6, taking fd 4 kept python3 from starting). Without a copy the
   * line still goes to fd 2. */
  struct rlimit rl;
  int high = 1000;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024)
    high = rl.rlim_cur >= 64 ? (int)rl.rlim_cur * 3 / 4 : -1;
  if (high > 0)
    err_copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, high);
  atexit(print_at_exit);
}
