# 32-bit x86 Linux (Debian i386): x86 but not x86_64, so mimalloc. Tests run natively
# where this host's kernel executes i686 programs, under qemu-i386 where it cannot.
set(ALLOCSHIM_CROSS_TRIPLET i686-linux-gnu)
set(ALLOCSHIM_CROSS_PROCESSOR i686)
set(ALLOCSHIM_CROSS_QEMU qemu-i386)
set(ALLOCSHIM_TEST_PAGE_SIZES "")
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
