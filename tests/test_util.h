/* Small helpers the tests share: byte patterns that catch lost or mixed-up data,
 * and a way to pass absurd sizes without the compiler rejecting them first. */
#ifndef ALLOCSHIM_TEST_UTIL_H
#define ALLOCSHIM_TEST_UTIL_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The runs with ALLOCSHIM_PURGE, or a MIMALLOC_ option saying when memory goes back or
 * how it is mapped, set: under each the mimalloc build holds nothing back
 * (src/backend_mimalloc.c, purge_start). */
static inline bool holding_off(void) {
  return getenv("ALLOCSHIM_PURGE") != NULL || getenv("MIMALLOC_DECOMMIT_DELAY") != NULL ||
         getenv("MIMALLOC_RESET_DELAY") != NULL ||
         getenv("MIMALLOC_SEGMENT_DECOMMIT_DELAY") != NULL ||
         getenv("MIMALLOC_LARGE_OS_PAGES") != NULL;
}

/* The byte expected at offset i: it does not repeat with any short period, so data
 * that realloc shifted, truncated or mixed with another block fails the check. */
static inline unsigned char pattern_byte(size_t i) {
  uint32_t x = (uint32_t)i * 2654435761u;
  return (unsigned char)(x >> 24 ^ i >> 8);
}

/* Which bytes the patterns cover: every one natively. Under an emulator, where each
 * byte of a 256 MiB block costs real time (the front tests took 8 minutes a page size
 * under qemu-aarch64), every byte of a block's first 4 KiB and then one byte in
 * ALLOCSHIM_TEST_STRIDE (a power of two): still every cache line and page. Which bytes
 * depends on the offset alone, so a block filled at one size is checked at another. */
#ifndef ALLOCSHIM_TEST_STRIDE
#define ALLOCSHIM_TEST_STRIDE 1
#endif
static inline size_t pattern_next(size_t i) {
  return i < 4096 ? i + 1 : (i | (ALLOCSHIM_TEST_STRIDE - 1)) + 1;
}

static inline void fill_pattern(void *p, size_t n) {
  unsigned char *b = (unsigned char *)p;
  for (size_t i = 0; i < n; i = pattern_next(i))
    b[i] = pattern_byte(i);
}

static inline bool check_pattern(const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i = pattern_next(i))
    if (b[i] != pattern_byte(i))
      return false;
  return true;
}

static inline bool all_zero(const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i = pattern_next(i))
    if (b[i] != 0)
      return false;
  return true;
}

/* Entries in `dir` whose name contains `part` ("" for every one), "." and ".." aside;
 * -1 when the directory cannot be opened. */
static inline int count_entries(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
         strstr(e->d_name, part) != NULL;
  closedir(d);
  return n;
}

/* Hides a constant from the optimiser, which may otherwise fold malloc(SIZE_MAX)
 * to NULL at compile time and test nothing. */
static inline size_t opaque_size(size_t n) {
  volatile size_t v = n;
  return v;
}

/* Hides a pointer's identity, for tests that reuse a block after a call that
 * failed to reallocate it (compilers assume the call freed it). */
static inline void *opaque_ptr(void *p) {
  void *volatile v = p;
  return v;
}

/* Redirects stderr into a temporary file until stderr_end(), which returns what was
 * written (at most cap - 1 bytes, NUL-terminated). Not nestable. */
static int stderr_saved_fd = -1;
static FILE *stderr_capture;

static inline void stderr_begin(void) {
  fflush(stderr);
  stderr_capture = tmpfile();
  stderr_saved_fd = dup(STDERR_FILENO);
  dup2(fileno(stderr_capture), STDERR_FILENO);
}

static inline const char *stderr_end(char *buf, size_t cap) {
  fflush(stderr);
  dup2(stderr_saved_fd, STDERR_FILENO);
  close(stderr_saved_fd);
  rewind(stderr_capture);
  size_t n = fread(buf, 1, cap - 1, stderr_capture);
  buf[n] = '\0';
  fclose(stderr_capture);
  return buf;
}

/* How many times `needle` occurs in `hay`. */
static inline int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* alloc_stats_print()'s output in `format`, NUL-terminated in out; its status, or -1
 * when no temporary file could be made. */
#ifdef ALLOCSHIM_H
static inline int stats_printed(int format, char *out, size_t size) {
  FILE *f = tmpfile();
  if (f == NULL)
    return -1;
  int status = alloc_stats_print(f, format);
  rewind(f);
  size_t n = fread(out, 1, size - 1, f);
  out[n] = '\0';
  fclose(f);
  return status;
}
#endif

#endif /* ALLOCSHIM_TEST_UTIL_H */
