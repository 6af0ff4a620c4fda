# Reads src/jemalloc_names.def into objcopy's rename map, and holds a jemalloc archive to
# it: the version gate. Functions only, so tests/jemalloc_gate.cmake runs the same gate.

# allocshim_je_names_read(DEF PREFIX) sets, in the caller, PREFIX_ORIGINALS,
# PREFIX_RENAMED and PREFIX_ROLES (one item per entry, in the list's order) and
# PREFIX_VERSION (the major.minor of JE_INTERNALS_VERSION). A malformed entry stops
# configure: an entry CMake skipped would still be declared in C, or the other way round.
function(allocshim_je_names_read def prefix)
  set(known_roles direct api import frame internal hook) # src/jemalloc_names.def says what each means
  file(STRINGS ${def} lines REGEX "^JE_")
  set(originals "")
  set(renamed "")
  set(roles "")
  set(version "")
  foreach(line IN LISTS lines)
    if(line MATCHES "^JE_INTERNALS_VERSION\\(([0-9]+), *([0-9]+)\\)$")
      set(version ${CMAKE_MATCH_1}.${CMAKE_MATCH_2})
      continue()
    endif()
    if(NOT line MATCHES "^JE_(FN|VAR)\\(([A-Za-z_][A-Za-z0-9_]*), *([A-Za-z_][A-Za-z0-9_]*), *([a-z]+), *[^ ].*\\)$")
      message(FATAL_ERROR "${def}: not an entry of the list: ${line}")
    endif()
    set(o ${CMAKE_MATCH_2})
    set(n ${CMAKE_MATCH_3})
    set(r ${CMAKE_MATCH_4})
    if(NOT r IN_LIST known_roles)
      message(FATAL_ERROR "${def}: ${o}: role '${r}' is none of ${known_roles}")
    endif()
    # An internal is used under jemalloc's own name; anything else is there to be renamed.
    if(r STREQUAL "internal" AND NOT o STREQUAL n)
      message(FATAL_ERROR "${def}: ${o}: an internal keeps its name, not ${n}")
    elseif(NOT r STREQUAL "internal" AND o STREQUAL n)
      message(FATAL_ERROR "${def}: ${o}: role ${r}, but not renamed")
    endif()
    if(o IN_LIST originals OR n IN_LIST renamed)
      message(FATAL_ERROR "${def}: ${o} (${n}) is listed twice")
    endif()
    list(APPEND originals ${o})
    list(APPEND renamed ${n})
    list(APPEND roles ${r})
  endforeach()
  if(NOT version)
    message(FATAL_ERROR "${def}: no JE_INTERNALS_VERSION(major, minor)")
  endif()
  set(${prefix}_ORIGINALS ${originals} PARENT_SCOPE)
  set(${prefix}_RENAMED ${renamed} PARENT_SCOPE)
  set(${prefix}_ROLES ${roles} PARENT_SCOPE)
  set(${prefix}_VERSION ${version} PARENT_SCOPE)
endfunction()

# allocshim_je_rename_map(PREFIX OUT): the text of objcopy's --redefine-syms file, one
# "original renamed" line for every entry whose name changes in the whole archive (a
# hook's changes only where it is called: allocshim_je_hook_renames).
function(allocshim_je_rename_map prefix out)
  set(map "")
  foreach(o n r IN ZIP_LISTS ${prefix}_ORIGINALS ${prefix}_RENAMED ${prefix}_ROLES)
    if(NOT o STREQUAL n AND NOT r STREQUAL "hook")
      string(APPEND map "${o} ${n}\n")
    endif()
  endforeach()
  set(${out} "${map}" PARENT_SCOPE)
endfunction()

# allocshim_je_hook_renames(PREFIX NM_A_OUTPUT OUT): for each hook, the members that call
# it (from `nm -A ARCHIVE`, "archive:member: U name" lines) and the objcopy argument
# that sends those calls to the shim's function, as "member|--redefine-sym=o=n" items.
# The member that defines the hook keeps its name, for the shim to call on.
function(allocshim_je_hook_renames prefix nm_output out)
  set(items "")
  foreach(o n r IN ZIP_LISTS ${prefix}_ORIGINALS ${prefix}_RENAMED ${prefix}_ROLES)
    if(NOT r STREQUAL "hook")
      continue()
    endif()
    string(REGEX MATCHALL "[^:\n]+: +U ${o}\n" callers "${nm_output}\n")
    if(NOT callers)
      message(FATAL_ERROR "src/jemalloc_names.def: the hook ${o} is called by no member of the archive")
    endif()
    foreach(c IN LISTS callers)
      string(REGEX REPLACE ": +U ${o}\n$" "" member "${c}")
      list(APPEND items "${member}|--redefine-sym=${o}=${n}")
    endforeach()
  endforeach()
  set(${out} "${items}" PARENT_SCOPE)
endfunction()

# allocshim_je_archive_version(ARCHIVE HEADER OUT): the x.y.z of the jemalloc in ARCHIVE,
# read from the version string its mallctl("version") returns, which every build
# carries, so no tool beyond CMake is needed; failing that, from HEADER's
# JEMALLOC_VERSION (libjemalloc-dev ships both); "" when neither says.
function(allocshim_je_archive_version archive header out)
  set(re "^([0-9]+\\.[0-9]+\\.[0-9]+)-[0-9]+-g[0-9a-f]+$")
  file(STRINGS ${archive} found REGEX "${re}" LIMIT_COUNT 1)
  if(NOT found AND header AND EXISTS "${header}")
    file(STRINGS ${header} found REGEX "^#define JEMALLOC_VERSION \"")
    string(REGEX REPLACE "^#define JEMALLOC_VERSION \"(.*)\"$" "\\1" found "${found}")
  endif()
  set(version "")
  if(found MATCHES "${re}")
    set(version ${CMAKE_MATCH_1})
  endif()
  set(${out} "${version}" PARENT_SCOPE)
endfunction()

# allocshim_je_gate(PREFIX VERSION NM_OUTPUT ARCHIVE OUT): OUT is "" when the jemalloc in
# ARCHIVE is one the list was written for, else the whole error, naming the version
# found and every name that is wrong. VERSION is allocshim_je_archive_version's answer,
# NM_OUTPUT that of `nm -g ARCHIVE`. Every listed name is checked, not only the
# internals: objcopy passes over a name it does not find without a word, and then
# jemalloc would keep a malloc of its own beside the shim's, or map memory that checked
# mode never sees.
function(allocshim_je_gate prefix version nm_output archive out)
  set(problems "")
  set(want ${${prefix}_VERSION})
  if(NOT version)
    string(APPEND problems "\n  version: none found in the archive or jemalloc.h")
  elseif(NOT version MATCHES "^([0-9]+\\.[0-9]+)\\." OR NOT CMAKE_MATCH_1 STREQUAL want)
    string(APPEND problems "\n  version: ${version}, not ${want}.x")
  endif()
  set(nm_lines "\n${nm_output}\n")
  set(roles ${${prefix}_ROLES})
  list(REMOVE_DUPLICATES roles)
  foreach(role IN LISTS roles)
    # A libc function is jemalloc's to call, not to define; any other name, the archive's.
    if(role STREQUAL "import")
      set(how "not called by the archive")
    else()
      set(how "not defined by the archive")
    endif()
    set(absent "")
    foreach(o r IN ZIP_LISTS ${prefix}_ORIGINALS ${prefix}_ROLES)
      if(NOT r STREQUAL role)
        continue()
      elseif(role STREQUAL "import" AND NOT nm_lines MATCHES "\n +U ${o}\n")
        list(APPEND absent ${o})
      elseif(NOT role STREQUAL "import" AND NOT nm_lines MATCHES "\n[0-9a-fA-F]+ [A-TV-Z] ${o}\n")
        list(APPEND absent ${o})
      endif()
    endforeach()
    if(absent)
      list(JOIN absent " " absent)
      string(APPEND problems "\n  ${how} (${role}): ${absent}")
    endif()
  endforeach()
  if(problems)
    if(NOT version)
      set(version "of unknown version")
    endif()
    string(CONCAT problems
        "allocshim cannot link jemalloc ${version} from ${archive}: the shim is written "
        "against jemalloc ${want}'s internals, names listed in src/jemalloc_names.def and "
        "layouts copied into src/backend_jemalloc.c (hook.h's hooks_t, rtree, edata_t)."
        "${problems}\n"
        "Install jemalloc ${want}.x (Debian: libjemalloc-dev), point ALLOCSHIM_JEMALLOC_PIC at "
        "its libjemalloc_pic.a, or configure with -DALLOCSHIM_BACKEND=mimalloc.")
  endif()
  set(${out} "${problems}" PARENT_SCOPE)
endfunction()
