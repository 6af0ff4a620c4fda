/* mimalloc's half of the backend: version string and start-up. mimalloc has no heap
 * profiler, so the profiling calls report ALLOC_ENOTSUP. */
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <stdio.h>

void be_init(void) {
  if (allocshim_env("PROF") != NULL)
    allocshim_say("heap profiling is not supported on this platform: this build uses "
                  "mimalloc %s, ALLOCSHIM_PROF is ignored",
                  be_version());
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
