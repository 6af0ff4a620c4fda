# Decides which allocator serves the shim, from the *target* platform (so cross builds
# choose right), and sets up how it is linked. No other file picks a backend.
#
# Out: ALLOCSHIM_BACKEND_RESOLVED (jemalloc|mimalloc), ALLOCSHIM_TARGET_GLIBC (also
#      ALLOCSHIM_GLIBC=0|1 for every C file of the project),
#      ALLOCSHIM_BACKEND_SOURCES (the backend's src/ file),
#      ALLOCSHIM_BACKEND_OBJECTS (the backend's objects, when it is linked in),
#      ALLOCSHIM_BACKEND_API (the backend's own API, exported as its library exports it),
#      ALLOCSHIM_BACKEND_LINK_OPTIONS (for the shared library's link),
#      ALLOCSHIM_BACKEND_THREADS (whether users' links need Threads), ALLOCSHIM_BACKEND_KIND
#      (jemalloc, mimalloc-inside or mimalloc-shared), ALLOCSHIM_BACKEND_LICENSE (the licence
#      of backend code linked into the shim, if any) and the INTERFACE target allocshim_backend.
include(CheckCSourceCompiles)

set(ALLOCSHIM_BACKEND "auto" CACHE STRING "Allocator behind the shim: auto, jemalloc or mimalloc")
set_property(CACHE ALLOCSHIM_BACKEND PROPERTY STRINGS auto jemalloc mimalloc)

# Compile checks see the target's own predefined macros, including musl's lack of
# __GLIBC__ and i686's lack of __x86_64__.
check_c_source_compiles([=[
#include <stdlib.h>
#if !defined(__GLIBC__)
#error not glibc
#endif
int main(void) { return 0; }]=] ALLOCSHIM_TARGET_GLIBC)
# The same fact for the C code, the shim's and the tests' alike, so that no source file
# asks its own question: glibc's extra names and features (__libc_*, mallinfo2 and
# friends, dlmopen namespaces, RTLD_DEEPBIND) exist only there, musl 1.2.3 has none.
add_compile_definitions(ALLOCSHIM_GLIBC=$<BOOL:${ALLOCSHIM_TARGET_GLIBC}>)
check_c_source_compiles([=[
#include <stdlib.h>
#if !defined(__linux__) || !defined(__GLIBC__) || !defined(__x86_64__)
#error jemalloc is chosen only for Linux glibc x86_64
#endif
int main(void) { return 0; }]=] ALLOCSHIM_TARGET_JEMALLOC_HOME)

# OUT becomes VALUE when it is one of the CHOICES, or AUTO_CHOICE when VALUE is "auto".
function(allocshim_choose out name value auto_choice)
  if(value STREQUAL "auto")
    set(${out} ${auto_choice} PARENT_SCOPE)
  elseif(value IN_LIST ARGN)
    set(${out} ${value} PARENT_SCOPE)
  else()
    list(JOIN ARGN ", " _choices)
    message(FATAL_ERROR "${name} must be auto, ${_choices}, not '${value}'")
  endif()
endfunction()

if(ALLOCSHIM_TARGET_JEMALLOC_HOME)
  set(_auto jemalloc)
else()
  set(_auto mimalloc)
endif()
allocshim_choose(ALLOCSHIM_BACKEND_RESOLVED ALLOCSHIM_BACKEND "${ALLOCSHIM_BACKEND}" ${_auto}
                 jemalloc mimalloc)
if(ALLOCSHIM_BACKEND STREQUAL "jemalloc" AND NOT ALLOCSHIM_TARGET_JEMALLOC_HOME)
  message(WARNING
    "ALLOCSHIM_BACKEND=jemalloc for a target that is not Linux glibc x86_64. jemalloc "
    "fixes its page size when it is built: a jemalloc built for 4 KiB pages aborts at "
    "start-up with \"<jemalloc>: Unsupported system page size\" on kernels with 16 KiB "
    "or 64 KiB pages (Raspberry Pi 5, Apple-silicon Linux VMs, ppc64el). Use mimalloc "
    "there unless you know the target's page size matches the jemalloc you link.")
endif()

add_library(allocshim_backend INTERFACE)
string(TOUPPER ${ALLOCSHIM_BACKEND_RESOLVED} _be)
# For the project's own sources only: an installed user's code is told nothing of how
# the library was built.
target_compile_definitions(allocshim_backend INTERFACE $<BUILD_INTERFACE:ALLOCSHIM_BACKEND_${_be}=1>)
set(ALLOCSHIM_BACKEND_SOURCES ${PROJECT_SOURCE_DIR}/src/backend_${ALLOCSHIM_BACKEND_RESOLVED}.c)
set(ALLOCSHIM_BACKEND_OBJECTS "")
set(ALLOCSHIM_BACKEND_LINK_OPTIONS "")
set(ALLOCSHIM_BACKEND_API "")
set(ALLOCSHIM_BACKEND_THREADS OFF)
set(ALLOCSHIM_BACKEND_LICENSE "")

if(ALLOCSHIM_BACKEND_RESOLVED STREQUAL "jemalloc")
  # jemalloc goes in statically, from a copy of the distribution's PIC archive whose
  # public names get a leading underscore: the shim then defines malloc itself and
  # calls jemalloc's fast paths directly, with no second malloc in the process.
  # The underscore is jeprof's own convention for allocator frames (it drops every
  # frame up to one named _malloc, _calloc, ...), so profiles start at the caller;
  # je_malloc_default, malloc's slow path, becomes _do_malloc for the same reason.
  find_library(ALLOCSHIM_JEMALLOC_PIC NAMES libjemalloc_pic.a
               DOC "jemalloc's position-independent static archive (Debian: libjemalloc-dev)")
  if(NOT ALLOCSHIM_JEMALLOC_PIC)
    message(FATAL_ERROR "libjemalloc_pic.a not found: install libjemalloc-dev, or configure "
                        "with -DALLOCSHIM_BACKEND=mimalloc")
  endif()
  # What is renamed, and what the shim takes from jemalloc 5.3's insides, is one list,
  # src/jemalloc_names.def, which the C code expands into its prototypes. The archive
  # must be a jemalloc with every listed name and the internals the list was written
  # for: any other fails here, naming the version and the names, rather than at link
  # time or, worse, inside a running program.
  include(${CMAKE_CURRENT_LIST_DIR}/AllocshimJemallocNames.cmake)
  set(_names ${PROJECT_SOURCE_DIR}/src/jemalloc_names.def)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_names} ${ALLOCSHIM_JEMALLOC_PIC})
  allocshim_je_names_read(${_names} _je)
  find_file(_je_header jemalloc/jemalloc.h NO_CACHE)
  allocshim_je_archive_version(${ALLOCSHIM_JEMALLOC_PIC} "${_je_header}" _je_version)
  execute_process(COMMAND ${CMAKE_NM} -g ${ALLOCSHIM_JEMALLOC_PIC} OUTPUT_VARIABLE _je_nm
                  ERROR_QUIET COMMAND_ERROR_IS_FATAL ANY)
  allocshim_je_gate(_je "${_je_version}" "${_je_nm}" ${ALLOCSHIM_JEMALLOC_PIC} _je_refused)
  if(_je_refused)
    message(FATAL_ERROR "${_je_refused}")
  endif()
  # The C side holds itself to the same version (src/jemalloc_names.h).
  string(REPLACE "." ";" _je_parts ${_je_version})
  list(GET _je_parts 0 _je_major)
  list(GET _je_parts 1 _je_minor)
  target_compile_definitions(allocshim_backend INTERFACE
    $<BUILD_INTERFACE:ALLOCSHIM_JEMALLOC_MAJOR=${_je_major}>
    $<BUILD_INTERFACE:ALLOCSHIM_JEMALLOC_MINOR=${_je_minor}>)
  allocshim_je_rename_map(_je _map)
  set(_dir ${PROJECT_BINARY_DIR}/jemalloc-renamed)
  # Written only when it changes, so that a new configure renames the archive again only
  # when the list did.
  file(CONFIGURE OUTPUT ${_dir}/rename.map CONTENT "${_map}" @ONLY)
  execute_process(COMMAND ${CMAKE_AR} t ${ALLOCSHIM_JEMALLOC_PIC}
                  OUTPUT_VARIABLE _members OUTPUT_STRIP_TRAILING_WHITESPACE
                  COMMAND_ERROR_IS_FATAL ANY)
  string(REPLACE "\n" ";" _members "${_members}")
  # operator new/delete come from src/front.c, not from jemalloc's C++ object.
  list(FILTER _members EXCLUDE REGEX "jemalloc_cpp")
  list(TRANSFORM _members PREPEND ${_dir}/ OUTPUT_VARIABLE _objects)
  # A hook's callers call the shim instead (src/jemalloc_names.def): each calling member
  # is taken out, changed and put back into the renamed archive before anything is
  # unpacked, so an interrupted build never leaves an unhooked member looking new.
  execute_process(COMMAND ${CMAKE_NM} -A ${ALLOCSHIM_JEMALLOC_PIC} OUTPUT_VARIABLE _je_nm_a
                  ERROR_QUIET COMMAND_ERROR_IS_FATAL ANY)
  allocshim_je_hook_renames(_je "${_je_nm_a}" _je_hooks)
  set(_hook_commands "")
  foreach(_hook IN LISTS _je_hooks)
    string(REPLACE "|" ";" _hook "${_hook}")
    list(GET _hook 0 _member)
    list(GET _hook 1 _arg)
    list(APPEND _hook_commands COMMAND ${CMAKE_AR} x renamed.a ${_member}
         COMMAND ${CMAKE_OBJCOPY} ${_arg} ${_member} COMMAND ${CMAKE_AR} r renamed.a ${_member})
  endforeach()
  add_custom_command(
    OUTPUT ${_objects}
    COMMAND ${CMAKE_COMMAND} -E copy ${ALLOCSHIM_JEMALLOC_PIC} ${_dir}/renamed.a
    COMMAND ${CMAKE_OBJCOPY} --redefine-syms=${_dir}/rename.map ${_dir}/renamed.a
    ${_hook_commands}
    COMMAND ${CMAKE_AR} x renamed.a ${_members}
    WORKING_DIRECTORY ${_dir}
    DEPENDS ${ALLOCSHIM_JEMALLOC_PIC} ${_dir}/rename.map ${_names}
    COMMENT "Renaming jemalloc's public symbols: malloc becomes _malloc"
    VERBATIM)
  set_source_files_properties(${_objects} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  # One owner for the rule, so the shared and static libraries never both run it.
  add_custom_target(allocshim_backend_objects DEPENDS ${_objects})
  set(ALLOCSHIM_BACKEND_OBJECTS ${_objects})
  # jemalloc's extended API (src/backend_jemalloc.c) is exported, as libjemalloc exports it.
  set(ALLOCSHIM_BACKEND_API mallocx rallocx xallocx sallocx dallocx sdallocx nallocx
      mallctl mallctlnametomib mallctlbymib malloc_stats_print)
  find_package(Threads REQUIRED)
  set(ALLOCSHIM_BACKEND_THREADS ON)
  # No libm or libgcc_s: the profiler's calls into them land in src/backend_jemalloc.c.
  target_link_libraries(allocshim_backend INTERFACE Threads::Threads ${CMAKE_DL_LIBS})
  set(ALLOCSHIM_BACKEND_PKG_LIBS "-lpthread -ldl")
  set(ALLOCSHIM_BACKEND_KIND jemalloc)
  # jemalloc's licence travels with the code the shim now carries.
  find_file(ALLOCSHIM_JEMALLOC_COPYRIGHT copyright NO_DEFAULT_PATH
            PATHS /usr/share/doc/libjemalloc-dev /usr/share/doc/libjemalloc2)
  if(ALLOCSHIM_JEMALLOC_COPYRIGHT)
    set(ALLOCSHIM_BACKEND_LICENSE ${ALLOCSHIM_JEMALLOC_COPYRIGHT})
  endif()
  set(ALLOCSHIM_BACKEND_VERSION_HINT "static, jemalloc ${_je_version} from ${ALLOCSHIM_JEMALLOC_PIC}")
else()
  # mimalloc is compiled into the shim from its source when that is at hand
  # (tools/fetch-source mimalloc gets the distribution's own), so that, as with jemalloc,
  # malloc can be mimalloc's function itself and no second library is mapped;
  # otherwise the shim links the distribution's libmimalloc.so.
  set(ALLOCSHIM_MIMALLOC_LINK "auto" CACHE STRING
      "How mimalloc is linked: auto (source if ALLOCSHIM_MIMALLOC_SOURCE has it), source or shared")
  set_property(CACHE ALLOCSHIM_MIMALLOC_LINK PROPERTY STRINGS auto source shared)
  set(ALLOCSHIM_MIMALLOC_SOURCE "${PROJECT_SOURCE_DIR}/.deps/mimalloc" CACHE PATH
      "mimalloc's source tree, as tools/fetch-source mimalloc unpacks it")
  set(_mi_src ${ALLOCSHIM_MIMALLOC_SOURCE})
  # Compiled in means --defsym and a version script: GNU ld on an ELF target.
  if(EXISTS ${_mi_src}/src/static.c AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(_auto source)
  else()
    set(_auto shared)
  endif()
  allocshim_choose(ALLOCSHIM_MIMALLOC_LINK_RESOLVED ALLOCSHIM_MIMALLOC_LINK
                   "${ALLOCSHIM_MIMALLOC_LINK}" ${_auto} source shared)

  if(ALLOCSHIM_MIMALLOC_LINK_RESOLVED STREQUAL "source")
    if(NOT EXISTS ${_mi_src}/src/static.c)
      message(FATAL_ERROR "no mimalloc source in ${_mi_src}: run tools/fetch-source mimalloc, or set "
                          "ALLOCSHIM_MIMALLOC_SOURCE")
    endif()
    # static.c is all of mimalloc in one translation unit, built with the defines of the
    # distribution's libmimalloc.so (MI_SHARED_LIB: the same exit behaviour; _EXPORT: the
    # mi_* API visible, the internals hidden) but no MI_MALLOC_OVERRIDE: the standard
    # names are the shim's. Third-party code: its warnings are not ours.
    add_library(allocshim_mimalloc OBJECT ${_mi_src}/src/static.c)
    target_include_directories(allocshim_mimalloc PRIVATE ${_mi_src}/include)
    # mimalloc defines a weak C++ get_new_handler returning NULL, for C programs;
    # inside the shim it would capture src/glue.c's reference to the real one.
    # MI_DEBUG=0 and -O2 whatever the shim's build type: the mimalloc that was
    # measured and tested is the distribution's release build.
    # A few of mimalloc's libc calls go to the shim instead (src/mimalloc_hooks.h lists
    # them and why): the header is forced into its translation unit.
    target_compile_definitions(allocshim_mimalloc PRIVATE MI_SHARED_LIB MI_SHARED_LIB_EXPORT MI_DEBUG=0
                               _ZSt15get_new_handlerv=mi_no_cxx_new_handler
                               ALLOCSHIM_MIMALLOC_HOOKED)
    target_compile_options(allocshim_mimalloc PRIVATE -w -O2 -fvisibility=hidden -ftls-model=initial-exec
                           -include ${PROJECT_SOURCE_DIR}/src/mimalloc_hooks.h)
    set_target_properties(allocshim_mimalloc PROPERTIES POSITION_INDEPENDENT_CODE ON C_STANDARD 11
                          C_EXTENSIONS ON)
    # The export list below is read from the header: a new source means a new list.
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_mi_src}/include/mimalloc.h)
    set(ALLOCSHIM_BACKEND_OBJECTS $<TARGET_OBJECTS:allocshim_mimalloc>)
    target_include_directories(allocshim_backend INTERFACE $<BUILD_INTERFACE:${_mi_src}/include>)
    target_compile_definitions(allocshim_backend INTERFACE $<BUILD_INTERFACE:ALLOCSHIM_MIMALLOC_INSIDE=1>)
    # mimalloc's own API is exported, as libmimalloc.so exports it, so that a program
    # linked to libmimalloc and run under the shim still has one mimalloc. Its names
    # are read from the header, the way the distribution's library exports them.
    file(STRINGS ${_mi_src}/include/mimalloc.h _decls REGEX "mi_decl_export.*\\(")
    foreach(_decl IN LISTS _decls)
      string(REGEX MATCHALL "mi_[a-z0-9_]+ *\\(" _calls "${_decl}")
      list(FILTER _calls EXCLUDE REGEX "^mi_attr_")
      if(_calls AND NOT _decl MATCHES "^ *#")
        list(GET _calls 0 _fn)
        string(REGEX REPLACE " *\\($" "" _fn "${_fn}")
        list(APPEND ALLOCSHIM_BACKEND_API ${_fn})
      endif()
    endforeach()
    # Exported, mimalloc's names could be taken by another library; the shim's own
    # calls bind to its own functions at link time (a direct call, no GOT jump). That
    # holds for every function, malloc included: the shim never wants another's.
    list(APPEND ALLOCSHIM_BACKEND_LINK_OPTIONS "LINKER:-Bsymbolic-functions")
    find_package(Threads REQUIRED)
    set(ALLOCSHIM_BACKEND_THREADS ON)
    target_link_libraries(allocshim_backend INTERFACE Threads::Threads)
    set(ALLOCSHIM_BACKEND_PKG_LIBS "-lpthread")
    file(STRINGS ${_mi_src}/include/mimalloc.h _mi_version REGEX "define MI_MALLOC_VERSION")
    string(REGEX MATCH "VERSION +([0-9]+)" _mi_version "${_mi_version}")
    set(ALLOCSHIM_BACKEND_KIND mimalloc-inside)
    set(ALLOCSHIM_BACKEND_LICENSE ${_mi_src}/LICENSE) # mimalloc's, for the code carried
    set(ALLOCSHIM_BACKEND_VERSION_HINT "compiled in, version ${CMAKE_MATCH_1} from ${_mi_src}")
  else()
    find_path(ALLOCSHIM_MIMALLOC_INCLUDE mimalloc.h PATH_SUFFIXES mimalloc)
    find_library(ALLOCSHIM_MIMALLOC_LIB NAMES mimalloc)
    if(NOT ALLOCSHIM_MIMALLOC_INCLUDE OR NOT ALLOCSHIM_MIMALLOC_LIB)
      message(FATAL_ERROR "mimalloc not found: install libmimalloc-dev (for a cross build, "
                          "libmimalloc-dev:<arch>), or unpack its source with tools/fetch-source mimalloc")
    endif()
    target_include_directories(allocshim_backend INTERFACE ${ALLOCSHIM_MIMALLOC_INCLUDE})
    target_link_libraries(allocshim_backend INTERFACE ${ALLOCSHIM_MIMALLOC_LIB})
    set(ALLOCSHIM_BACKEND_PKG_LIBS "-lmimalloc")
    set(ALLOCSHIM_BACKEND_KIND mimalloc-shared)
    set(ALLOCSHIM_BACKEND_VERSION_HINT "shared, ${ALLOCSHIM_MIMALLOC_LIB}")
  endif()
endif()

message(STATUS "allocshim backend: ${ALLOCSHIM_BACKEND_RESOLVED} (ALLOCSHIM_BACKEND=${ALLOCSHIM_BACKEND}, "
               "${ALLOCSHIM_BACKEND_VERSION_HINT})")
