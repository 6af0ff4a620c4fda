/* The backend-neutral half of include/allocshim.h: status texts, identity, and
 * what happens when the library is loaded. */
#define _GNU_SOURCE
#include "backend.h"
#include "check.h"
#include "internal.h"

#include <allocshim.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *alloc_strerror(int status) {
  switch (status) {
#define ALLOC_STATUS_TEXT_(name, value, text)                                                      \
  case ALLOC_##name:                                                                               \
    return text;
    ALLOC_STATUS_MAP(ALLOC_STATUS_TEXT_)
#undef ALLOC_STATUS_TEXT_
  }
  return "unknown allocshim status code";
}

const char *alloc_version(void) { return ALLOCSHIM_VERSION_STRING; }
const char *alloc_backend(void) { return ALLOCSHIM_BACKEND_NAME; }
const char *alloc_backend_version(void) { return be_version(); }

/* Runs when the library is loaded. Other libraries' constructors may have allocated
 * already, so allocation must not depend on anything done here; this only reads the
 * ALLOCSHIM_ settings and warms the backend up. */
__attribute__((constructor)) static void allocshim_start(void) {
  int saved = errno;
  /* The backend's lazy set-up (NUMA probes, config files) can leave errno set;
   * doing it here keeps the promise that a successful malloc leaves errno alone. */
  be_free(be_malloc(1));
  be_start();
  check_start();
  if (allocshim_env_flag("VERBOSE")) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = '\0';
    allocshim_say("%s %s serves pid %ld (%s), allocshim %s%s", alloc_backend(),
                  alloc_backend_version(), (long)getpid(), len > 0 ? exe : "?", alloc_version(),
                  __atomic_load_n(&check_on, __ATOMIC_RELAXED) ? ", checked mode" : "");
  }
  foreign_start();
  profile_start();
  stats_start();
  deepbind_start();
  errno = saved;
}
