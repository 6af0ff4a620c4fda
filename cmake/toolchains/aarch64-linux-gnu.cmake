# 64-bit Arm Linux (Debian arm64): tests run under qemu-aarch64 at 4, 16 and 64 KiB pages.
set(ALLOCSHIM_CROSS_TRIPLET aarch64-linux-gnu)
set(ALLOCSHIM_CROSS_PROCESSOR aarch64)
set(ALLOCSHIM_CROSS_QEMU qemu-aarch64)
set(ALLOCSHIM_TEST_PAGE_SIZES 4096 16384 65536)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
