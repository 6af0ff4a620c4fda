/* allocshim-pprof: writes a jemalloc heap_v2 profile as a gzipped pprof profile.proto
 * (tools/pprof_convert.c), for allocshim-prof --pprof; installed in libexec/allocshim. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "pprof_convert.h"
#include "pprof_drop.h"

static int usage(FILE *f) {
  fputs("usage: allocshim-pprof PROFILE.heap OUT.pb.gz\n"
        "  Converts a jemalloc heap_v2 profile (alloc_profile_dump, ALLOCSHIM_PROF_*) into\n"
        "  pprof's gzipped protobuf format; the allocator's own frames are left out.\n",
        f);
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))
    return usage(stdout), 0;
  if (argc != 3)
    return usage(stderr);
  const char *in_path = argv[1], *out_path = argv[2];
  FILE *in = fopen(in_path, "r");
  if (!in) {
    fprintf(stderr, "allocshim-pprof: %s: %s\n", in_path, strerror(errno));
    return 1;
  }
  /* The output is written to a temporary name beside it and renamed at the end, so a
   * failed conversion never leaves a half profile under the name asked for. mkstemp
   * makes that name new (O_EXCL): a symlink planted at a guessed name in a shared
   * directory is refused, never followed. */
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", out_path) >= sizeof tmp) {
    fprintf(stderr, "allocshim-pprof: %s: name too long\n", out_path);
    fclose(in);
    return 1;
  }
  int fd = mkstemp(tmp);
  if (fd < 0) {
    fprintf(stderr, "allocshim-pprof: %s: %s\n", tmp, strerror(errno));
    fclose(in);
    return 1;
  }
  mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0644 & ~mask); /* as a file the user made; mkstemp's 0600 otherwise */
  gzFile out = gzdopen(fd, "wb9");
  if (!out) {
    close(fd);
    unlink(tmp);
    fprintf(stderr, "allocshim-pprof: %s: %s\n", tmp, strerror(errno ? errno : ENOMEM));
    fclose(in);
    return 1;
  }
  char err[512];
  struct pprof_convert_opts opts = {
      .drop_mapping = "liballocshim", .drop_frames = PPROF_DROP_FRAMES, .read_build_ids = 1};
  int rc = pprof_convert(in, out, &opts, err, sizeof err);
  fclose(in);
  int zrc = gzclose(out);
  if (rc != 0) {
    fprintf(stderr, "allocshim-pprof: %s: %s\n", in_path, err);
    unlink(tmp);
    return 1;
  }
  if (zrc != Z_OK) {
    fprintf(stderr, "allocshim-pprof: %s: writing failed (zlib error %d%s%s)\n", out_path, zrc,
            zrc == Z_ERRNO ? ": " : "", zrc == Z_ERRNO ? strerror(errno) : "");
    unlink(tmp);
    return 1;
  }
  if (rename(tmp, out_path) != 0) {
    fprintf(stderr, "allocshim-pprof: %s: %s\n", out_path, strerror(errno));
    unlink(tmp);
    return 1;
  }
  return 0;
}
