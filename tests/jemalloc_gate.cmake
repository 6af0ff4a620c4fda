# Runs configure's jemalloc gate (cmake/AllocshimJemallocNames.cmake) on the archive the
# build uses, then on doctored copies of what it reads there: each must be refused by name.
# usage: cmake -DNM=nm -DARCHIVE=libjemalloc_pic.a -DDEF=src/jemalloc_names.def -P jemalloc_gate.cmake
cmake_minimum_required(VERSION 3.21)
include(${CMAKE_CURRENT_LIST_DIR}/../cmake/AllocshimJemallocNames.cmake)

allocshim_je_names_read(${DEF} je)
allocshim_je_archive_version(${ARCHIVE} "" version)
execute_process(COMMAND ${NM} -g ${ARCHIVE} OUTPUT_VARIABLE nm_out ERROR_QUIET
                COMMAND_ERROR_IS_FATAL ANY)
set(failed 0)

# CASE: what is being shown; WANT: text the refusal must hold, "" for none.
function(expect case want version_in nm_in)
  allocshim_je_gate(je "${version_in}" "${nm_in}" ${ARCHIVE} refused)
  if(want STREQUAL "" AND refused STREQUAL "")
    message("jemalloc-gate: ok: ${case}: accepted")
  elseif(NOT want STREQUAL "" AND refused MATCHES "${want}")
    message("jemalloc-gate: ok: ${case}: refused")
  else()
    message("jemalloc-gate: FAIL: ${case}: want '${want}', got:\n${refused}")
    set(failed 1 PARENT_SCOPE)
  endif()
endfunction()

expect("the archive as it is" "" "${version}" "${nm_out}")
expect("jemalloc 5.4.0" "jemalloc 5\\.4\\.0 from.*version: 5\\.4\\.0, not 5\\.3\\.x" "5.4.0" "${nm_out}")
expect("no version" "of unknown version" "" "${nm_out}")
# What `objcopy --redefine-sym je_oversize_threshold=xx` makes of the archive.
string(REGEX REPLACE " je_oversize_threshold\n" " xx\n" doctored "${nm_out}")
expect("an internal gone" "\\(internal\\): je_oversize_threshold\n" "${version}" "${doctored}")
# A jemalloc that maps memory by syscall(): checked mode would never see its mappings.
string(REGEX REPLACE "\n +U mmap\n" "\n" doctored "${nm_out}")
string(REGEX REPLACE "\n +U mmap\n" "\n" doctored "${doctored}")
expect("an import no longer called" "not called by the archive \\(import\\): mmap\n" "${version}"
       "${doctored}")
# A local definition cannot be linked to, nor a reference stand for one.
string(REGEX REPLACE "\n([0-9a-f]+) T je_malloc_default\n" "\n\\1 t je_malloc_default\n" doctored
       "${nm_out}")
expect("a frame made local" "\\(frame\\): je_malloc_default\n" "${version}" "${doctored}")

if(failed)
  message(FATAL_ERROR "jemalloc-gate: failed")
endif()
