# 64-bit little-endian POWER Linux (Debian ppc64el): tests run under qemu-ppc64le at 64 KiB pages.
set(ALLOCSHIM_CROSS_TRIPLET powerpc64le-linux-gnu)
set(ALLOCSHIM_CROSS_PROCESSOR ppc64le)
set(ALLOCSHIM_CROSS_QEMU qemu-ppc64le)
set(ALLOCSHIM_TEST_PAGE_SIZES 65536)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
