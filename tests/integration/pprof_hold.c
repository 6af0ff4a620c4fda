/* Holds 64 MiB allocated from one distinctively named function (plus a little noise
 * from another) until exit, where a preloaded allocshim dumps its heap. Used by pprof.sh.
 * usage: pprof_hold            hold, and exit
 *        pprof_hold PATH       hold, dump to PATH with alloc_profile_dump, and exit
 *                              with 0 or 10 - its status (11 for ALLOC_ENOTSUP, ...)
 *        pprof_hold --wait     hold, say "ready", and wait to be killed
 *        pprof_hold --euid UID PATH
 *                              as PATH, after seteuid(UID) (a root daemon acting
 *                              for a user for a while, its saved uid still 0) */
#define _GNU_SOURCE
#include <allocshim.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Weak: the program is linked with nothing of allocshim's (it is preloaded), or with
 * the static archive, which defines it. */
extern __typeof__(alloc_profile_dump) alloc_profile_dump __attribute__((weak));

/* 32 blocks of 2 MiB: each is four times jemalloc's default 512 KiB sampling period, so
 * nearly every block is sampled (1 - e^-4) and the unbiased estimate lies within a few
 * per cent of 64 MiB on every run, far inside the test's 15%. */
#define BLOCKS 32
#define BLOCK  (2u << 20)
/* About 5 MiB in small blocks: some ten samples, so the noise is in every profile
 * (none sampled: e^-10), and far below the 64 MiB. */
#define NOISE 40000

static void *held[BLOCKS], *noise[NOISE];

/* noinline: the profile must show this frame by name. */
__attribute__((noinline)) void *pprof_hold_sixty_four_mib(size_t n) {
  void *p = malloc(n);
  if (p)
    memset(p, 7, n);
  return p;
}

__attribute__((noinline)) void *pprof_small_noise(size_t n) { return calloc(1, n); }

int main(int argc, char **argv) {
  for (int i = 0; i < BLOCKS; i++)
    if (!(held[i] = pprof_hold_sixty_four_mib(BLOCK)))
      return 1;
  for (int i = 0; i < NOISE; i++)
    noise[i] = pprof_small_noise(100 + (size_t)i % 64);
  /* Held to the end: the at-exit dump sees every block live. */
  printf("holding %d blocks of %u bytes\n", BLOCKS, BLOCK);
  if (argc > 1 && strcmp(argv[1], "--wait") == 0) {
    printf("ready\n");
    fflush(stdout);
    for (;;)
      pause();
  }
  if (argc == 4 && strcmp(argv[1], "--euid") == 0) {
    if (seteuid((uid_t)atoi(argv[2])) != 0)
      return 3;
    argv[1] = argv[3];
  }
  if (argc > 1) {
    if (!alloc_profile_dump)
      return 2;
    int status = alloc_profile_dump(argv[1]);
    printf("alloc_profile_dump: %d (%s)\n", status, status ? strerror(errno) : "written");
    return status == 0 ? 0 : 10 - status;
  }
  return 0;
}
