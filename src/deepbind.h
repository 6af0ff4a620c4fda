/* Whether the shim has its own dlopen and dlmopen (src/deepbind.c and the trampolines of
 * src/deepbind_trampoline.S): preprocessor only, so C, assembly and the export list can ask. */
#ifndef ALLOCSHIM_DEEPBIND_H
#define ALLOCSHIM_DEEPBIND_H

/* glibc only: musl has neither RTLD_DEEPBIND nor dlmopen. And only where a trampoline is
 * written: glibc's dlopen finds its caller from the return address, so the wrapper must
 * jump to it, which C cannot promise. Elsewhere (riscv64, arm32, s390x, x32...) the shim
 * leaves dlopen and dlmopen to glibc, RTLD_DEEPBIND and all. */
#if ALLOCSHIM_GLIBC && defined(__LP64__) && (defined(__x86_64__) || defined(__aarch64__))
#define ALLOCSHIM_DEEPBIND_WRAP 1
#elif ALLOCSHIM_GLIBC && defined(__i386__)
#define ALLOCSHIM_DEEPBIND_WRAP 1
#elif ALLOCSHIM_GLIBC && defined(__powerpc64__) && defined(_CALL_ELF) && _CALL_ELF == 2
#define ALLOCSHIM_DEEPBIND_WRAP 1
#else
#define ALLOCSHIM_DEEPBIND_WRAP 0
#endif

#endif /* ALLOCSHIM_DEEPBIND_H */
