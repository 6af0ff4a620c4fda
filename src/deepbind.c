/* dlopen and dlmopen with RTLD_DEEPBIND, made safe: such a library looks malloc up in
 * its own dependencies first (glibc), behind the shim's back, and its pointers cross over. */
#define _GNU_SOURCE
#include "deepbind.h"
#include "internal.h"

#include <dlfcn.h>
#include <stdatomic.h>

static bool keep_deepbind;

void deepbind_start(void) { keep_deepbind = allocshim_env_flag("DEEPBIND"); }

/* The shim's dlopen and dlmopen are the trampolines of src/deepbind_trampoline.S: they
 * ask the functions below for the new mode and for glibc's function, then jump to it. */
#if ALLOCSHIM_DEEPBIND_WRAP

/* Hidden: the trampolines call them directly, with no PLT between. */
#define TRAMPOLINE_HELPER __attribute__((visibility("hidden")))

typedef void *(*dlopen_fn)(const char *file, int mode);
typedef void *(*dlmopen_fn)(Lmid_t lmid, const char *file, int mode);
TRAMPOLINE_HELPER int deepbind_mode(const char *file, int mode);
TRAMPOLINE_HELPER int deepbind_dlmopen_mode(Lmid_t lmid, const char *file, int mode);
TRAMPOLINE_HELPER dlopen_fn deepbind_next(void);
TRAMPOLINE_HELPER dlmopen_fn deepbind_next_dlmopen(void);

static void *_Atomic next_dlopen; /* glibc's, found once */
static void *_Atomic next_dlmopen;

/* The flags with RTLD_DEEPBIND dropped (saying so once), unless ALLOCSHIM_DEEPBIND=1
 * asks to keep it. */
static int drop_deepbind(const char *call, const char *file, int mode) {
  if ((mode & RTLD_DEEPBIND) && !keep_deepbind) {
    static atomic_flag said = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&said))
      allocshim_say("%s\"%s\", RTLD_DEEPBIND): RTLD_DEEPBIND dropped so that the library "
                    "uses allocshim's malloc, not glibc's (ALLOCSHIM_DEEPBIND=1 keeps it)",
                    call, file ? file : "(main program)");
    mode &= ~RTLD_DEEPBIND;
  }
  return mode;
}

int deepbind_mode(const char *file, int mode) { return drop_deepbind("dlopen(", file, mode); }

/* Only the base namespace holds the shim. A new one (LM_ID_NEWLM, or one made
 * earlier) loads its own libc, whose malloc its libraries use with or without the flag:
 * its blocks never meet the shim's unless the program passes them across namespaces,
 * which no allocator survives. */
int deepbind_dlmopen_mode(Lmid_t lmid, const char *file, int mode) {
  return lmid == LM_ID_BASE ? drop_deepbind("dlmopen(LM_ID_BASE, ", file, mode) : mode;
}

static void *next_symbol(void *_Atomic *slot, const char *name) {
  void *next = atomic_load_explicit(slot, memory_order_relaxed);
  if (next == NULL) {
    next = dlsym(RTLD_NEXT, name);
    atomic_store_explicit(slot, next, memory_order_relaxed);
  }
  return next;
}

dlopen_fn deepbind_next(void) { return (dlopen_fn)next_symbol(&next_dlopen, "dlopen"); }

dlmopen_fn deepbind_next_dlmopen(void) { return (dlmopen_fn)next_symbol(&next_dlmopen, "dlmopen"); }

void *deepbind_dlopen(const char *file, int mode) {
  dlopen_fn next = deepbind_next();
  return next != NULL ? next(file, mode) : NULL;
}

#else

void *deepbind_dlopen(const char *file, int mode) { return dlopen(file, mode); }

#endif /* ALLOCSHIM_DEEPBIND_WRAP */
