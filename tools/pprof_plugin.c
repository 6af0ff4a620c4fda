/* liballocshim-pprof.so: tools/pprof_convert.c behind src/pprof_plugin.h's one entry,
 * so that the library needs protobuf-c and zlib only in a process that asks for pprof. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "pprof_convert.h"
#include "pprof_drop.h"
#include "pprof_plugin.h"

__attribute__((visibility("default"))) int allocshim_pprof_convert_v1(int heap_fd, int out_fd,
                                                                      char *err, size_t errlen);

int allocshim_pprof_convert_v1(int heap_fd, int out_fd, char *err, size_t errlen) {
  /* Own copies of the descriptors: fclose and gzclose close what they were given. */
  int in_copy = dup(heap_fd);
  FILE *in = in_copy >= 0 ? fdopen(in_copy, "r") : NULL;
  if (in == NULL || fseek(in, 0, SEEK_SET) != 0) {
    snprintf(err, errlen, "reading the heap profile: %s", strerror(errno));
    if (in)
      fclose(in);
    else if (in_copy >= 0)
      close(in_copy);
    return -1;
  }
  int out_copy = dup(out_fd);
  gzFile out = out_copy >= 0 ? gzdopen(out_copy, "wb") : NULL;
  if (out == NULL) {
    snprintf(err, errlen, "starting the gzip stream: %s", strerror(errno ? errno : ENOMEM));
    if (out_copy >= 0)
      close(out_copy);
    fclose(in);
    return -1;
  }
  /* In the process itself the library's own frames sit in its mapping, as they do in
   * a dump converted later by allocshim-pprof. */
  struct pprof_convert_opts opts = {
      .drop_mapping = "liballocshim", .drop_frames = PPROF_DROP_FRAMES, .read_build_ids = 1};
  int rc = pprof_convert(in, out, &opts, err, errlen);
  fclose(in);
  int zrc = gzclose(out);
  if (rc == 0 && zrc != Z_OK) {
    snprintf(err, errlen, "writing the gzip stream failed (zlib error %d%s%s)", zrc,
             zrc == Z_ERRNO ? ": " : "", zrc == Z_ERRNO ? strerror(errno) : "");
    rc = -1;
  }
  return rc;
}
