/* dlopen and dlmopen with RTLD_DEEPBIND, made safe: such a library looks malloc up in
 * its own dependencies first (glibc), behind the shim's back, and its pointers cross over. */
#define _GNU_SOURCE
#include "internal.h"

#include <allocshim.h>
#include <dlfcn.h>
#include <stdatomic.h>

static bool keep_deepbind;

void deepbind_start(void) { keep_deepbind = allocshim_env_flag("DEEPBIND"); }

/* musl has neither RTLD_DEEPBIND nor dlmopen: its dlopen needs no wrapper. */
#if ALLOCSHIM_GLIBC

typedef void *(*dlopen_fn)(const char *file, int mode);
typedef void *(*dlmopen_fn)(Lmid_t lmid, const char *file, int mode);
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

/* Not static, and "used": ppc64el's dlopen and dlmopen call these from assembly,
 * which the compiler (and LTO) cannot see. */
__attribute__((used)) int deepbind_mode(const char *file, int mode);
int deepbind_mode(const char *file, int mode) { return drop_deepbind("dlopen(", file, mode); }

/* Only the base namespace holds the shim. A new one (LM_ID_NEWLM, or one made
 * earlier) loads its own libc, whose malloc its libraries use with or without the flag:
 * its blocks never meet the shim's unless the program passes them across namespaces,
 * which no allocator survives. */
__attribute__((used)) int deepbind_dlmopen_mode(Lmid_t lmid, const char *file, int mode);
int deepbind_dlmopen_mode(Lmid_t lmid, const char *file, int mode) {
  return lmid == LM_ID_BASE ? drop_deepbind("dlmopen(LM_ID_BASE, ", file, mode) : mode;
}

/* glibc's dlopen and dlmopen, found once. The helpers take and return values only: a local
 * whose address escaped would keep the compiler from the tail call below. */
static void *next_symbol(void *_Atomic *slot, const char *name) {
  void *next = atomic_load_explicit(slot, memory_order_relaxed);
  if (next == NULL) {
    next = dlsym(RTLD_NEXT, name);
    atomic_store_explicit(slot, next, memory_order_relaxed);
  }
  return next;
}

__attribute__((used)) dlopen_fn deepbind_next(void);
dlopen_fn deepbind_next(void) { return (dlopen_fn)next_symbol(&next_dlopen, "dlopen"); }

__attribute__((used)) dlmopen_fn deepbind_next_dlmopen(void);
dlmopen_fn deepbind_next_dlmopen(void) { return (dlmopen_fn)next_symbol(&next_dlmopen, "dlmopen"); }

/* glibc's dlopen and dlmopen find their caller from the return address (for RUNPATH
 * and $ORIGIN), so these must jump to them, not call them: the build compiles this
 * file with sibling calls on, and tests/stress checks a RUNPATH lookup through it. */
#if defined(__powerpc64__) && defined(_CALL_ELF) && _CALL_ELF == 2
/* GCC never makes an indirect tail call under the ELFv2 ABI (POWER before 10), so on
 * ppc64el the same steps are written out: the mode, glibc's dlopen, then a branch with
 * the caller's return address still in LR. glibc's dlopen returns with its own TOC
 * pointer in r2, so the symbol is marked (.localentry 1) as one that does not preserve
 * r2: callers from another module restore theirs anyway, and the linker makes a call
 * from the same module (the static archive) save and restore it too. Without a usable
 * r2 or r12 on entry, the function finds its TOC from its own address. */
__asm__(".pushsection .text\n"
        ".globl dlopen\n"
        ".type dlopen, @function\n"
        ".p2align 4\n"
        "dlopen:\n"
        "   .cfi_startproc\n" /* so debuggers and unwinders can step through it */
        "   .localentry dlopen, 1\n"
        "   mflr 0\n"
        "   std 0, 16(1)\n"
        "   .cfi_offset lr, 16\n"
        "   stdu 1, -48(1)\n" /* 32-byte header, then file and the new mode */
        "   .cfi_def_cfa_offset 48\n"
        "   std 3, 32(1)\n"
        "   bcl 20, 31, 1f\n"
        "1: mflr 11\n"
        "   addis 2, 11, .TOC.-1b@ha\n"
        "   addi 2, 2, .TOC.-1b@l\n"
        "   bl deepbind_mode\n"
        "   nop\n"
        "   stw 3, 40(1)\n"
        "   bl deepbind_next\n"
        "   nop\n"
        "   mr 12, 3\n" /* glibc's dlopen: its global entry wants itself in r12 */
        "   ld 3, 32(1)\n"
        "   lwa 4, 40(1)\n"
        "   addi 1, 1, 48\n"
        "   .cfi_def_cfa_offset 0\n"
        "   ld 0, 16(1)\n"
        "   mtlr 0\n"
        "   .cfi_restore lr\n"
        "   mtctr 12\n"
        "   bctr\n"
        "   .cfi_endproc\n"
        ".size dlopen, .-dlopen\n"
        ".popsection\n");
/* dlmopen the same way: lmid, file and mode in r3-r5 are deepbind_dlmopen_mode's
 * arguments as they stand; the frame keeps lmid, file and the new mode. */
__asm__(".pushsection .text\n"
        ".globl dlmopen\n"
        ".type dlmopen, @function\n"
        ".p2align 4\n"
        "dlmopen:\n"
        "   .cfi_startproc\n"
        "   .localentry dlmopen, 1\n"
        "   mflr 0\n"
        "   std 0, 16(1)\n"
        "   .cfi_offset lr, 16\n"
        "   stdu 1, -64(1)\n" /* 32-byte header, then lmid, file and the new mode */
        "   .cfi_def_cfa_offset 64\n"
        "   std 3, 32(1)\n"
        "   std 4, 40(1)\n"
        "   bcl 20, 31, 1f\n"
        "1: mflr 11\n"
        "   addis 2, 11, .TOC.-1b@ha\n"
        "   addi 2, 2, .TOC.-1b@l\n"
        "   bl deepbind_dlmopen_mode\n"
        "   nop\n"
        "   stw 3, 48(1)\n"
        "   bl deepbind_next_dlmopen\n"
        "   nop\n"
        "   mr 12, 3\n"
        "   ld 3, 32(1)\n"
        "   ld 4, 40(1)\n"
        "   lwa 5, 48(1)\n"
        "   addi 1, 1, 64\n"
        "   .cfi_def_cfa_offset 0\n"
        "   ld 0, 16(1)\n"
        "   mtlr 0\n"
        "   .cfi_restore lr\n"
        "   mtctr 12\n"
        "   bctr\n"
        "   .cfi_endproc\n"
        ".size dlmopen, .-dlmopen\n"
        ".popsection\n");
#else
ALLOC_API void *dlopen(const char *file, int mode) {
  return deepbind_next()(file, deepbind_mode(file, mode));
}
ALLOC_API void *dlmopen(Lmid_t lmid, const char *file, int mode) {
  return deepbind_next_dlmopen()(lmid, file, deepbind_dlmopen_mode(lmid, file, mode));
}
#endif
#endif /* ALLOCSHIM_GLIBC */
