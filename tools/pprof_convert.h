/* Converts a jemalloc heap_v2 profile (jeprof's text format) into a gzipped pprof
 * profile.proto, the format go tool pprof and continuous profilers read. */
#ifndef ALLOCSHIM_PPROF_CONVERT_H
#define ALLOCSHIM_PPROF_CONVERT_H

#include <stddef.h>
#include <stdio.h>
#include <zlib.h>

struct pprof_convert_opts {
  /* Frames at the top of a stack (the leaf end) whose mapping's file name contains
   * this string are left out, as jeprof leaves out the allocator's own frames; NULL
   * or "" keeps every frame. The stack then starts at the first frame outside it. */
  const char *drop_mapping;
  /* pprof's own drop_frames: a regular expression of function names, matched whole
   * after symbolizing; go tool pprof cuts each stack at the first such frame from the
   * root. It names the allocator's entry points, which in a statically linked program
   * sit in the program's own mapping, where drop_mapping cannot tell them apart. */
  const char *drop_frames;
  /* Read each mapped executable file on disk for its GNU build ID (1), or not (0: the
   * unit tests, which give made-up file names). */
  int read_build_ids;
};

/* Reads the heap_v2 text from in to its end and writes one gzipped Profile message to
 * out (the caller opens and closes out; gzclose's status is the caller's to check).
 * Returns 0, or -1 with err (a message without a newline, truncated to errlen) saying
 * what is wrong with the input or what failed: a malformed input is never written. */
int pprof_convert(FILE *in, gzFile out, const struct pprof_convert_opts *opts, char *err,
                  size_t errlen);

/* The GNU build ID note (NT_GNU_BUILD_ID) of the ELF file at path as lowercase hex
 * into hex (at least 2 * 64 + 1 bytes). Returns 0, or -1 when the file cannot be read,
 * is no ELF file of this machine's class and byte order, or has no such note. */
int pprof_build_id(const char *path, char *hex, size_t hexlen);

#endif
