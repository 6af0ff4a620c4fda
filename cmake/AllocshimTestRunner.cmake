# How a cross build's tests run: natively when this host executes the target's programs,
# otherwise under the toolchain's emulator. Decided by running a program, never by name.
#
# In:  ALLOCSHIM_CROSS_QEMU (the target's emulator), ALLOCSHIM_TEST_PAGE_SIZES (page sizes
#      to emulate: these always need the emulator, whatever the host can run).
# Out: CMAKE_CROSSCOMPILING_EMULATOR (set or empty), ALLOCSHIM_TEST_RUNNER ("native", or
#      the emulator's name), ALLOCSHIM_TEST_NATIVE (ON when the target's programs run
#      here as they are: a native build, or a cross target this host's kernel runs,
#      such as i686 or musl), all for the tests that follow.
set(ALLOCSHIM_TEST_RUNNER native)
if(CMAKE_CROSSCOMPILING)
  # A kernel without IA32 emulation (many cloud VMs, Firecracker) cannot exec an i686
  # program that every other x86_64 machine runs; only trying tells.
  set(_dir ${PROJECT_BINARY_DIR}/runner-probe)
  file(WRITE ${_dir}/probe.c "int main(void) { return 42; }\n")
  try_compile(_built ${_dir}/build SOURCES ${_dir}/probe.c COPY_FILE ${_dir}/probe
              OUTPUT_VARIABLE _out)
  if(NOT _built)
    message(FATAL_ERROR "cannot build a program for ${CMAKE_SYSTEM_PROCESSOR}:\n${_out}")
  endif()
  execute_process(COMMAND ${_dir}/probe RESULT_VARIABLE _native OUTPUT_QUIET ERROR_QUIET)
  if(NOT _native STREQUAL "42" OR ALLOCSHIM_TEST_PAGE_SIZES)
    find_program(_emulator ${ALLOCSHIM_CROSS_QEMU} NO_CACHE)
    if(NOT ALLOCSHIM_CROSS_QEMU OR NOT _emulator)
      message(FATAL_ERROR "this host cannot run ${CMAKE_SYSTEM_PROCESSOR} programs (${_native}) "
                          "and the emulator '${ALLOCSHIM_CROSS_QEMU}' is not installed "
                          "(tools/cross-setup installs qemu-user)")
    endif()
    execute_process(COMMAND ${_emulator} ${_dir}/probe RESULT_VARIABLE _emulated OUTPUT_QUIET ERROR_QUIET)
    if(NOT _emulated STREQUAL "42")
      message(FATAL_ERROR "${ALLOCSHIM_CROSS_QEMU} cannot run a ${CMAKE_SYSTEM_PROCESSOR} program "
                          "either (${_emulated}): are the target's C libraries installed?")
    endif()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${_emulator})
    set(ALLOCSHIM_TEST_RUNNER ${ALLOCSHIM_CROSS_QEMU})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR "")
  endif()
  message(STATUS "allocshim tests run: ${ALLOCSHIM_TEST_RUNNER} (a ${CMAKE_SYSTEM_PROCESSOR} program "
                 "run by the host itself gave ${_native}; 42 means it ran)")
endif()
if(ALLOCSHIM_TEST_RUNNER STREQUAL "native")
  set(ALLOCSHIM_TEST_NATIVE ON)
else()
  set(ALLOCSHIM_TEST_NATIVE OFF)
endif()
