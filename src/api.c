/* The backend-neutral half of include/allocshim.h: status texts, identity, start-up,
 * and writing a heap profile atomically (temporary file, then rename). */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <allocshim.h>
#include <limits.h>
#include <stdatomic.h>
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
int alloc_profile_supported(void) { return be_profile_status(); }

static int fail(int status, int err) {
  errno = err;
  return status;
}

/* Room for the ".XXXXXX" that mkstemp() fills in. */
#define TMP_SUFFIX ".XXXXXX"

int alloc_profile_dump(const char *path) {
  int status = be_profile_status();
  if (status == ALLOC_ENOTSUP) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
      allocshim_say("alloc_profile_dump: %s", alloc_strerror(ALLOC_ENOTSUP));
    return fail(ALLOC_ENOTSUP, ENOTSUP);
  }
  if (path != NULL && path[0] == '\0')
    return fail(ALLOC_EINVAL, EINVAL);
  if (path != NULL && strlen(path) + sizeof TMP_SUFFIX > PATH_MAX)
    return fail(ALLOC_EINVAL, ENAMETOOLONG);
  if (status != ALLOC_OK)
    return fail(status, ENOENT);

  char name[PATH_MAX];
  if (path == NULL) {
    static atomic_uint seq;
    snprintf(name, sizeof name, "allocshim.%ld.%u.heap", (long)getpid(),
             atomic_fetch_add(&seq, 1));
    path = name;
  }
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s" TMP_SUFFIX, path);

  /* mkstemp() is where a missing directory or a permission problem shows, with the
   * real errno; the backend itself only says "failed". */
  int fd = mkstemp(tmp);
  if (fd < 0)
    return fail(ALLOC_EIO, errno);
  close(fd);
  if (be_profile_dump(tmp) != 0) {
    unlink(tmp);
    return fail(ALLOC_EIO, EIO);
  }
  if (rename(tmp, path) != 0) {
    int err = errno;
    unlink(tmp);
    return fail(ALLOC_EIO, err);
  }
  return ALLOC_OK;
}

/* Runs when the library is loaded. Allocations may already have happened (other
 * libraries' constructors run first), so nothing here is needed for correctness. */
__attribute__((constructor)) static void allocshim_start(void) {
  int saved = errno;
  be_init();
  /* The backend's lazy set-up (NUMA probes, config files) can leave errno set;
   * doing it here keeps the promise that a successful malloc leaves errno alone. */
  be_free(be_malloc(1));
  if (allocshim_env_flag("VERBOSE")) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = '\0';
    allocshim_say("%s %s serves pid %ld (%s), allocshim %s", alloc_backend(),
                  alloc_backend_version(), (long)getpid(), len > 0 ? exe : "?",
                  alloc_version());
  }
  errno = saved;
}
