# 32-bit x86 Linux (Debian i386): x86 but not x86_64, so mimalloc; runs natively.
set(ALLOCSHIM_CROSS_TRIPLET i686-linux-gnu)
set(ALLOCSHIM_CROSS_PROCESSOR i686)
set(ALLOCSHIM_CROSS_QEMU "")
set(ALLOCSHIM_TEST_PAGE_SIZES "")
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
