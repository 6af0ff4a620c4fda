# x86_64 Linux with musl 1.2.3 instead of glibc (Debian's musl-tools): not glibc, so
# mimalloc; the host runs the programs itself. tools/cross-setup musl prepares it.
#
# A toolchain of its own rather than debian-cross.cmake: musl has no multiarch
# directory of libraries to point at, and no g++. musl-gcc's specs put musl's headers
# and libraries ahead of glibc's; the only other library the build needs, cmocka, is
# built with musl-gcc into .deps/musl, and is the only place find_* may look. The same
# musl-gcc stands as the C++ compiler: it compiles C++ but has no C++ library to link,
# which tests/CMakeLists.txt finds out by trying (ALLOCSHIM_TARGET_CXX).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER musl-gcc)
set(CMAKE_CXX_COMPILER musl-gcc)
get_filename_component(_musl_deps ${CMAKE_CURRENT_LIST_DIR}/../../.deps/musl ABSOLUTE)
set(CMAKE_FIND_ROOT_PATH ${_musl_deps})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# No emulator: a kernel that runs x86_64 programs runs musl's (cmake/AllocshimTestRunner.cmake).
set(ALLOCSHIM_CROSS_QEMU "")
set(ALLOCSHIM_TEST_PAGE_SIZES "")
