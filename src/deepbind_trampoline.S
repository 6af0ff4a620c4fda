/* The shim's dlopen and dlmopen: per architecture, a trampoline that lets src/deepbind.c
 * drop RTLD_DEEPBIND and then jumps to glibc's function as if called by the program. */
#include "deepbind.h"

/* Why assembly: glibc's dlopen and dlmopen take their caller from the return address, to
 * search its RUNPATH and expand $ORIGIN. Called from here, they would see the shim as the
 * caller and miss the program's libraries (life_dlopen and life_deepbind_dlmopen check it).
 * So each trampoline keeps the arguments, asks the C helpers for the new mode and for
 * glibc's function, puts the arguments and the stack back exactly as they came and
 * branches, leaving the return address to glibc. A C tail call would do the same only when
 * the compiler chooses to make one (GCC never does for an indirect call on ppc64el).
 *
 * The helpers are hidden, so each call is direct (no PLT, and on i386 no GOT pointer in
 * %ebx). Stacks stay 16-byte aligned at each call, as the ABIs (and glibc's i386 code)
 * expect. */
#if ALLOCSHIM_DEEPBIND_WRAP

        .hidden deepbind_mode
        .hidden deepbind_dlmopen_mode
        .hidden deepbind_next
        .hidden deepbind_next_dlmopen

#if defined(__x86_64__) || defined(__i386__)
/* A build with -fcf-protection marks its objects for IBT and shadow stacks; this one must
 * be marked too, or the library loses the marking. The trampolines balance their calls and
 * returns, and their indirect jump lands on glibc's own endbr. */
#if defined(__CET__) && (__CET__ & 1)
#if defined(__x86_64__)
#define LANDING endbr64
#else
#define LANDING endbr32
#endif
#else
#define LANDING
#endif
#endif

#if defined(__x86_64__)
/* On entry: file in %rdi, mode in %esi (dlmopen: lmid, file, mode in %rdi, %rsi, %edx) and
 * %rsp 8 below a 16-byte boundary. A 24-byte frame realigns it and holds what the helpers
 * may clobber. */
        .text
        .globl dlopen
        .type dlopen, %function
        .p2align 4
dlopen:
        .cfi_startproc
        LANDING
        subq $24, %rsp
        .cfi_adjust_cfa_offset 24
        movq %rdi, 8(%rsp)
        call deepbind_mode
        movl %eax, (%rsp)
        call deepbind_next
        movq 8(%rsp), %rdi
        movl (%rsp), %esi
        addq $24, %rsp
        .cfi_adjust_cfa_offset -24
        jmp *%rax
        .cfi_endproc
        .size dlopen, .-dlopen

        .globl dlmopen
        .type dlmopen, %function
        .p2align 4
dlmopen:
        .cfi_startproc
        LANDING
        subq $24, %rsp
        .cfi_adjust_cfa_offset 24
        movq %rdi, 8(%rsp)
        movq %rsi, 16(%rsp)
        call deepbind_dlmopen_mode
        movl %eax, (%rsp)
        call deepbind_next_dlmopen
        movq 8(%rsp), %rdi
        movq 16(%rsp), %rsi
        movl (%rsp), %edx
        addq $24, %rsp
        .cfi_adjust_cfa_offset -24
        jmp *%rax
        .cfi_endproc
        .size dlmopen, .-dlmopen

#elif defined(__i386__)
/* On entry the arguments are on the stack above the return address, which sits 4 below a
 * 16-byte boundary. They stay where they are, the new mode written over the caller's (the
 * callee owns its argument words): glibc's function finds them there after the jump. A
 * 28-byte frame realigns the stack and holds the helper's arguments. */
        .text
        .globl dlopen
        .type dlopen, %function
        .p2align 4
dlopen:
        .cfi_startproc
        LANDING
        subl $28, %esp
        .cfi_adjust_cfa_offset 28
        movl 32(%esp), %eax /* file */
        movl %eax, (%esp)
        movl 36(%esp), %eax /* mode */
        movl %eax, 4(%esp)
        call deepbind_mode
        movl %eax, 36(%esp)
        call deepbind_next
        addl $28, %esp
        .cfi_adjust_cfa_offset -28
        jmp *%eax
        .cfi_endproc
        .size dlopen, .-dlopen

        .globl dlmopen
        .type dlmopen, %function
        .p2align 4
dlmopen:
        .cfi_startproc
        LANDING
        subl $28, %esp
        .cfi_adjust_cfa_offset 28
        movl 32(%esp), %eax /* lmid */
        movl %eax, (%esp)
        movl 36(%esp), %eax /* file */
        movl %eax, 4(%esp)
        movl 40(%esp), %eax /* mode */
        movl %eax, 8(%esp)
        call deepbind_dlmopen_mode
        movl %eax, 40(%esp)
        call deepbind_next_dlmopen
        addl $28, %esp
        .cfi_adjust_cfa_offset -28
        jmp *%eax
        .cfi_endproc
        .size dlmopen, .-dlmopen

#elif defined(__aarch64__)
/* A build with -mbranch-protection signs return addresses and marks its objects for BTI
 * and PAC; this one does the same, or the library loses the marking. x30 is signed while it
 * sits in the frame and authenticated before the branch, which goes through x16: BTI lets
 * that register land on glibc's "bti c" or "paciasp". */
#if defined(__ARM_FEATURE_BTI_DEFAULT)
#define LANDING hint 34 /* bti c */
#else
#define LANDING
#endif
#if defined(__ARM_FEATURE_PAC_DEFAULT) && (__ARM_FEATURE_PAC_DEFAULT & 2)
#define SIGN_LR                                                                                    \
  .cfi_b_key_frame;                                                                                \
  hint 27; /* pacibsp */                                                                           \
  .cfi_negate_ra_state
#define AUTH_LR                                                                                    \
  hint 31; /* autibsp */                                                                           \
  .cfi_negate_ra_state
#elif defined(__ARM_FEATURE_PAC_DEFAULT)
#define SIGN_LR                                                                                    \
  hint 25; /* paciasp */                                                                           \
  .cfi_negate_ra_state
#define AUTH_LR                                                                                    \
  hint 29; /* autiasp */                                                                           \
  .cfi_negate_ra_state
#else
#define SIGN_LR
#define AUTH_LR
#endif

/* On entry: file in x0, mode in w1 (dlmopen: lmid, file, mode in x0, x1, w2); sp is always
 * 16-byte aligned. The frame holds the frame record, then what the helpers may clobber. */
        .text
        .globl dlopen
        .type dlopen, %function
        .p2align 4
dlopen:
        .cfi_startproc
        LANDING
        SIGN_LR
        stp x29, x30, [sp, #-32]!
        .cfi_def_cfa_offset 32
        .cfi_offset x29, -32
        .cfi_offset x30, -24
        mov x29, sp
        str x0, [sp, #16]
        bl deepbind_mode
        str w0, [sp, #24]
        bl deepbind_next
        mov x16, x0
        ldr x0, [sp, #16]
        ldr w1, [sp, #24]
        ldp x29, x30, [sp], #32
        .cfi_def_cfa_offset 0
        .cfi_restore x29
        .cfi_restore x30
        AUTH_LR
        br x16
        .cfi_endproc
        .size dlopen, .-dlopen

        .globl dlmopen
        .type dlmopen, %function
        .p2align 4
dlmopen:
        .cfi_startproc
        LANDING
        SIGN_LR
        stp x29, x30, [sp, #-48]!
        .cfi_def_cfa_offset 48
        .cfi_offset x29, -48
        .cfi_offset x30, -40
        mov x29, sp
        stp x0, x1, [sp, #16]
        bl deepbind_dlmopen_mode
        str w0, [sp, #32]
        bl deepbind_next_dlmopen
        mov x16, x0
        ldp x0, x1, [sp, #16]
        ldr w2, [sp, #32]
        ldp x29, x30, [sp], #48
        .cfi_def_cfa_offset 0
        .cfi_restore x29
        .cfi_restore x30
        AUTH_LR
        br x16
        .cfi_endproc
        .size dlmopen, .-dlmopen

#elif defined(__powerpc64__)
/* ELFv2. On entry: file in r3, mode in r4 (dlmopen: lmid, file, mode in r3-r5), return
 * address in LR. The frame is the ABI's 32-byte header, then what the helpers may clobber;
 * LR goes to the caller's frame as usual, and is back in LR for the branch.
 *
 * glibc's function returns with its own TOC pointer in r2, so the symbols are marked
 * (.localentry 1) as not preserving r2: callers from another module restore theirs anyway,
 * and the linker makes a call from the same module (the static archive) save and restore
 * it. So nothing can be assumed of r2 or r12 on entry either: the TOC pointer is found from
 * the trampoline's own address. glibc's global entry point wants its address in r12. */
        .abiversion 2
        .text
        .globl dlopen
        .type dlopen, %function
        .p2align 4
dlopen:
        .cfi_startproc
        .localentry dlopen, 1
        mflr 0
        std 0, 16(1)
        .cfi_offset lr, 16
        stdu 1, -48(1)
        .cfi_def_cfa_offset 48
        std 3, 32(1)
        bcl 20, 31, 1f
1:      mflr 11
        addis 2, 11, .TOC.-1b@ha
        addi 2, 2, .TOC.-1b@l
        bl deepbind_mode
        nop
        stw 3, 40(1)
        bl deepbind_next
        nop
        mr 12, 3
        ld 3, 32(1)
        lwa 4, 40(1)
        addi 1, 1, 48
        .cfi_def_cfa_offset 0
        ld 0, 16(1)
        mtlr 0
        .cfi_restore lr
        mtctr 12
        bctr
        .cfi_endproc
        .size dlopen, .-dlopen

        .globl dlmopen
        .type dlmopen, %function
        .p2align 4
dlmopen:
        .cfi_startproc
        .localentry dlmopen, 1
        mflr 0
        std 0, 16(1)
        .cfi_offset lr, 16
        stdu 1, -64(1)
        .cfi_def_cfa_offset 64
        std 3, 32(1)
        std 4, 40(1)
        bcl 20, 31, 1f
1:      mflr 11
        addis 2, 11, .TOC.-1b@ha
        addi 2, 2, .TOC.-1b@l
        bl deepbind_dlmopen_mode
        nop
        stw 3, 48(1)
        bl deepbind_next_dlmopen
        nop
        mr 12, 3
        ld 3, 32(1)
        ld 4, 40(1)
        lwa 5, 48(1)
        addi 1, 1, 64
        .cfi_def_cfa_offset 0
        ld 0, 16(1)
        mtlr 0
        .cfi_restore lr
        mtctr 12
        bctr
        .cfi_endproc
        .size dlmopen, .-dlmopen

#else
#error "src/deepbind.h enables the wrapper on an architecture with no trampoline here"
#endif

/* The hardening marks promised above, in the note the linker combines over all objects. */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__CET__)
#define PROPERTY_TYPE 0xc0000002 /* GNU_PROPERTY_X86_FEATURE_1_AND */
#define PROPERTY_BITS (__CET__ & 3) /* IBT, SHSTK */
#elif defined(__aarch64__) && (defined(__ARM_FEATURE_BTI_DEFAULT) || defined(__ARM_FEATURE_PAC_DEFAULT))
#define PROPERTY_TYPE 0xc0000000 /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
#if defined(__ARM_FEATURE_BTI_DEFAULT) && defined(__ARM_FEATURE_PAC_DEFAULT)
#define PROPERTY_BITS 3 /* BTI, PAC */
#elif defined(__ARM_FEATURE_BTI_DEFAULT)
#define PROPERTY_BITS 1
#else
#define PROPERTY_BITS 2
#endif
#endif
#if defined(PROPERTY_TYPE)
#if defined(__LP64__)
#define NOTE_ALIGN 3
#else
#define NOTE_ALIGN 2
#endif
        .section .note.gnu.property, "a"
        .p2align NOTE_ALIGN
        .long 4                        /* name size */
        .long (4 + 4 + 4 + (1 << NOTE_ALIGN) - 1) & ~((1 << NOTE_ALIGN) - 1) /* desc size */
        .long 5                        /* NT_GNU_PROPERTY_TYPE_0 */
        .asciz "GNU"
        .long PROPERTY_TYPE
        .long 4                        /* its data size */
        .long PROPERTY_BITS
        .p2align NOTE_ALIGN
#endif

#endif /* ALLOCSHIM_DEEPBIND_WRAP */

/* The stack is never executable for this object's sake, wrapper or not. */
#if defined(__ELF__)
        .section .note.GNU-stack, "", %progbits
#endif
