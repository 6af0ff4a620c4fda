# Shared part of the Debian cross toolchains: the caller sets ALLOCSHIM_CROSS_TRIPLET,
# ALLOCSHIM_CROSS_PROCESSOR, the target's emulator ALLOCSHIM_CROSS_QEMU, and
# ALLOCSHIM_TEST_PAGE_SIZES (each page size becomes its own set of ctest runs).
# Whether tests need the emulator at all is decided by running a program
# (cmake/AllocshimTestRunner.cmake), not here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${ALLOCSHIM_CROSS_PROCESSOR})
set(CMAKE_C_COMPILER ${ALLOCSHIM_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${ALLOCSHIM_CROSS_TRIPLET}-g++)
# Debian multiarch: the target's libraries live in /usr/lib/<triplet>, headers are shared.
set(CMAKE_LIBRARY_ARCHITECTURE ${ALLOCSHIM_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(PKG_CONFIG_EXECUTABLE ${ALLOCSHIM_CROSS_TRIPLET}-pkg-config CACHE FILEPATH "")
