/* dlopen with RTLD_DEEPBIND, made safe: such a library looks malloc up in its own
 * dependencies first (glibc), behind the shim's back, and its pointers cross over. */
#define _GNU_SOURCE
#include "internal.h"

#include <allocshim.h>
#include <dlfcn.h>
#include <stdatomic.h>

typedef void *(*dlopen_fn)(const char *file, int mode);
static _Atomic(dlopen_fn) next_dlopen;
static bool keep_deepbind;

void deepbind_start(void) { keep_deepbind = allocshim_env_flag("DEEPBIND"); }

#if defined(RTLD_DEEPBIND) /* glibc */

/* Drops RTLD_DEEPBIND (saying so once) unless ALLOCSHIM_DEEPBIND=1 asks to keep it,
 * and finds glibc's dlopen. Out of line, so that dlopen() below stays a tail call. */
static dlopen_fn prepare(const char *file, int *mode) {
  if ((*mode & RTLD_DEEPBIND) && !keep_deepbind) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
      allocshim_say("dlopen(\"%s\", RTLD_DEEPBIND): RTLD_DEEPBIND dropped so that the library "
                    "uses allocshim's malloc, not glibc's (ALLOCSHIM_DEEPBIND=1 keeps it)",
                    file ? file : "(main program)");
    *mode &= ~RTLD_DEEPBIND;
  }
  dlopen_fn next = atomic_load_explicit(&next_dlopen, memory_order_relaxed);
  if (next == NULL) {
    next = (dlopen_fn)dlsym(RTLD_NEXT, "dlopen");
    atomic_store_explicit(&next_dlopen, next, memory_order_relaxed);
  }
  return next;
}

/* glibc's dlopen finds its caller from its return address (for RUNPATH and $ORIGIN),
 * so this must jump to it, not call it: the build compiles this file with sibling
 * calls on, and tests/stress checks a RUNPATH lookup through it. */
ALLOC_API void *dlopen(const char *file, int mode) {
  dlopen_fn next = prepare(file, &mode);
  return next(file, mode);
}
#endif
