/* Memory statistics from the backend: alloc_stats() and its printer, and glibc's
 * introspection calls (mallinfo2, malloc_stats, malloc_info, malloc_trim, mallopt)
 * answered from the same figures, so glibc-minded monitoring keeps telling the truth. */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

int alloc_stats(alloc_stats_t *out) {
  if (out == NULL) {
    errno = EINVAL;
    return ALLOC_EINVAL;
  }
  be_stats(out);
  return ALLOC_OK;
}

/* A field for printing: the number, or `unknown` (text) / null (JSON). */
static void put(FILE *f, const char *sep, const char *name, size_t v, bool json) {
  if (json)
    v == ALLOC_STAT_UNKNOWN ? fprintf(f, "%s\"%s\":null", sep, name)
                            : fprintf(f, "%s\"%s\":%zu", sep, name, v);
  else
    v == ALLOC_STAT_UNKNOWN ? fprintf(f, "%s%s=unknown", sep, name)
                            : fprintf(f, "%s%s=%zu", sep, name, v);
}

int alloc_stats_print(FILE *f, int format) {
  if (f == NULL || (format != ALLOC_FORMAT_TEXT && format != ALLOC_FORMAT_JSON)) {
    errno = EINVAL;
    return ALLOC_EINVAL;
  }
  alloc_stats_t s;
  be_stats(&s);
  bool json = format == ALLOC_FORMAT_JSON;
  const char *sep = json ? "," : " ";
  fprintf(f, json ? "{\"backend\":\"%s\",\"version\":\"%s\"" : "allocshim: %s %s:", alloc_backend(),
          alloc_backend_version());
  put(f, sep, "allocated", s.allocated, json);
  put(f, sep, "active", s.active, json);
  put(f, sep, "resident", s.resident, json);
  put(f, sep, "mapped", s.mapped, json);
  put(f, sep, "retained", s.retained, json);
  fputs(json ? "}\n" : "\n", f);
  return fflush(f) == 0 && !ferror(f) ? ALLOC_OK : (errno = EIO, ALLOC_EIO);
}

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

static void print_at_exit(void) { alloc_stats_print(stderr, ALLOC_FORMAT_TEXT); }

void stats_start(void) {
  if (allocshim_env_flag("STATS_AT_EXIT"))
    atexit(print_at_exit);
}
