# Reads the entry-point table (src/entries.def) the way the compiler reads it for the
# target, and makes from it the export list and the links that give an entry straight
# to a backend function. Nothing here names an entry point.
#
# In:  ALLOCSHIM_BACKEND_KIND, ALLOCSHIM_TARGET_GLIBC, ALLOCSHIM_BACKEND_API and, for
#      jemalloc, _je_RENAMED/_je_ROLES (cmake/AllocshimBackend.cmake)
# Out: ALLOCSHIM_ENTRIES (every row's name), ALLOCSHIM_EXPORTS (those, the public
#      header's API and the backend's), ALLOCSHIM_DIRECT (name=function pairs for this
#      backend), their --defsym options appended to ALLOCSHIM_BACKEND_LINK_OPTIONS, and
#      ${PROJECT_BINARY_DIR}/allocshim.map, exports.txt and direct.txt.
set(_table ${PROJECT_SOURCE_DIR}/src/entries.def)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_table}
                                                               ${PROJECT_SOURCE_DIR}/include/allocshim.h)

# The target's preprocessor expands each row to one line: its name (C++ names mangled
# for the target's size_t) and its two backend columns. Only rows whose conditions
# hold for the target come out.
set(_probe ${PROJECT_BINARY_DIR}/entries-probe.c)
file(WRITE ${_probe} [=[
#define FN(name, ret, params, call, je, mi) ALLOCSHIM_ROW name je mi
#define PROC(name, params, call, je, mi) ALLOCSHIM_ROW name je mi
#define ALIAS(name, target, je, mi) ALLOCSHIM_ROW name je mi
#define ELSEWHERE(name) ALLOCSHIM_ROW name - -
#include "entries.def"
]=])
separate_arguments(_cflags UNIX_COMMAND "${CMAKE_C_FLAGS}")
if(CMAKE_C_COMPILER_TARGET)
  list(APPEND _cflags --target=${CMAKE_C_COMPILER_TARGET})
endif()
if(CMAKE_SYSROOT)
  list(APPEND _cflags --sysroot=${CMAKE_SYSROOT})
endif()
if(ALLOCSHIM_TARGET_GLIBC)
  set(_glibc 1)
else()
  set(_glibc 0)
endif()
execute_process(COMMAND ${CMAKE_C_COMPILER} ${_cflags} -E -P -x c -DALLOCSHIM_GLIBC=${_glibc}
                        -I${PROJECT_SOURCE_DIR}/src ${_probe}
                OUTPUT_VARIABLE _rows ERROR_VARIABLE _errors RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "src/entries.def: the preprocessor failed on it:\n${_errors}")
endif()
string(REGEX MATCHALL "ALLOCSHIM_ROW [^\n]+" _rows "${_rows}")

if(ALLOCSHIM_BACKEND_KIND STREQUAL "jemalloc")
  set(_column 2)
elseif(ALLOCSHIM_BACKEND_KIND STREQUAL "mimalloc-inside")
  set(_column 3)
else()
  set(_column "") # libmimalloc.so's functions live in another library: nothing direct
endif()
set(ALLOCSHIM_ENTRIES "")
set(ALLOCSHIM_DIRECT "")
foreach(_row IN LISTS _rows)
  string(REGEX REPLACE " +" ";" _fields "${_row}")
  list(LENGTH _fields _n)
  if(NOT _n EQUAL 4)
    message(FATAL_ERROR "src/entries.def: a row does not expand to a name and two backend "
                        "columns: '${_row}'")
  endif()
  list(GET _fields 1 _name)
  if(_name IN_LIST ALLOCSHIM_ENTRIES)
    message(FATAL_ERROR "src/entries.def: ${_name} has two rows")
  endif()
  list(APPEND ALLOCSHIM_ENTRIES ${_name})
  if(_column)
    list(GET _fields ${_column} _target)
    if(NOT _target STREQUAL "-")
      list(APPEND ALLOCSHIM_DIRECT ${_name}=${_target})
    endif()
  endif()
endforeach()
# A name the link gives to a jemalloc function takes that function's visibility, so the
# function must be one src/jemalloc_names.def marks `direct` (not hidden): otherwise the
# export would silently vanish from the shared library.
if(ALLOCSHIM_BACKEND_KIND STREQUAL "jemalloc")
  foreach(_pair IN LISTS ALLOCSHIM_DIRECT)
    string(REGEX REPLACE "^[^=]*=" "" _target "${_pair}")
    list(FIND _je_RENAMED ${_target} _i)
    set(_role "")
    if(_i GREATER_EQUAL 0)
      list(GET _je_ROLES ${_i} _role)
    endif()
    if(NOT _role STREQUAL "direct")
      message(FATAL_ERROR "src/entries.def gives ${_pair} to jemalloc, but src/jemalloc_names.def "
                          "does not list ${_target} with the role `direct`")
    endif()
  endforeach()
endif()
if(NOT "malloc" IN_LIST ALLOCSHIM_ENTRIES OR NOT "free" IN_LIST ALLOCSHIM_ENTRIES)
  message(FATAL_ERROR "src/entries.def gave no malloc or free: ${_rows}")
endif()

# The public API: every function include/allocshim.h declares with ALLOC_API.
file(STRINGS ${PROJECT_SOURCE_DIR}/include/allocshim.h _decls REGEX "^ALLOC_API .*\\(")
set(_api "")
foreach(_decl IN LISTS _decls)
  if(_decl MATCHES "(alloc_[a-z0-9_]+)\\(")
    list(APPEND _api ${CMAKE_MATCH_1})
  endif()
endforeach()

set(ALLOCSHIM_EXPORTS ${ALLOCSHIM_ENTRIES} ${_api} ${ALLOCSHIM_BACKEND_API})
list(SORT ALLOCSHIM_EXPORTS)
list(JOIN ALLOCSHIM_EXPORTS ";\n    " _globals)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/allocshim.map
     CONTENT "{\n  global:\n    ${_globals};\n  local:\n    *;\n};\n")
list(JOIN ALLOCSHIM_EXPORTS "\n" _lines)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/exports.txt CONTENT "${_lines}\n")
list(JOIN ALLOCSHIM_DIRECT "\n" _lines)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/direct.txt CONTENT "${_lines}\n")

# --defsym gives the name to the backend's function in the shared library, over
# src/front.c's own definition of it (GNU ld lets the symbol assignment win); the
# static archive keeps front.c's forwards.
list(TRANSFORM ALLOCSHIM_DIRECT PREPEND "LINKER:--defsym=" OUTPUT_VARIABLE _defsyms)
list(APPEND ALLOCSHIM_BACKEND_LINK_OPTIONS ${_defsyms})
