/* A program that sets jemalloc's options the documented way, with its own malloc_conf
 * symbol, and prints what took effect: "narenas N oversize_threshold M arena0 A from
 * LIB", A the threshold arena 0 purges a coalesced free extent at. With CONF_ONLY it
 * asks nothing (it is not linked to libjemalloc) and says it started. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef PROGRAM_CONF
#define PROGRAM_CONF "narenas:1,oversize_threshold:4194304"
#endif
const char *malloc_conf = PROGRAM_CONF;

int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);

int main(void) {
  void *volatile p = malloc(1); /* jemalloc has read its options by now */
  free(p);
#ifdef CONF_ONLY /* only the options' effect on start-up: no libjemalloc to ask */
  puts("malloc_conf: started");
#else
  unsigned narenas = 0;
  size_t threshold = 0, arena0 = 0, len = sizeof narenas;
  if (mallctl("opt.narenas", &narenas, &len, NULL, 0) != 0)
    return fprintf(stderr, "malloc_conf: mallctl(opt.narenas) failed\n"), 1;
  len = sizeof threshold;
  if (mallctl("opt.oversize_threshold", &threshold, &len, NULL, 0) != 0)
    return fprintf(stderr, "malloc_conf: mallctl(opt.oversize_threshold) failed\n"), 1;
  if (mallctl("arena.0.oversize_threshold", &arena0, &len, NULL, 0) != 0)
    return fprintf(stderr, "malloc_conf: mallctl(arena.0.oversize_threshold) failed\n"), 1;
  Dl_info info;
  void *fn = dlsym(RTLD_DEFAULT, "mallctl");
  printf("narenas %u oversize_threshold %zu arena0 %zu from %s\n", narenas, threshold, arena0,
         fn && dladdr(fn, &info) && info.dli_fname ? info.dli_fname : "?");
#endif
  return 0;
}
