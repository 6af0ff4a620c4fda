# The documented list of symbols the library exports, per target. It becomes the
# linker's version script, and tests/integration/check_exports.sh holds the built library to it.
#
# Out: ALLOCSHIM_EXPORTS, ${PROJECT_BINARY_DIR}/allocshim.map, .../exports.txt
set(ALLOCSHIM_EXPORTS
    # The C library's allocation family, C11 to C23.
    malloc free calloc realloc reallocarray posix_memalign aligned_alloc memalign valloc
    pvalloc malloc_usable_size free_sized free_aligned_sized cfree
    # include/allocshim.h
    alloc_strerror alloc_version alloc_backend alloc_backend_version alloc_profile_supported
    alloc_profile_dump alloc_profile_activate alloc_stats alloc_stats_print)

if(ALLOCSHIM_TARGET_GLIBC)
  list(APPEND ALLOCSHIM_EXPORTS __libc_malloc __libc_free __libc_calloc __libc_realloc
       __libc_memalign __libc_valloc __libc_pvalloc
       # glibc's introspection, answered by the backend (src/stats.c)
       mallinfo2 mallinfo malloc_stats malloc_info malloc_trim mallopt
       # dlopen and dlmopen without RTLD_DEEPBIND's bypass of the shim (src/deepbind.c)
       dlopen dlmopen)
endif()

# operator new/delete; size_t mangles as 'm' on LP64 and 'j' on 32-bit targets.
if(CMAKE_SIZEOF_VOID_P EQUAL 8)
  set(_z m)
else()
  set(_z j)
endif()
foreach(_op w a)
  list(APPEND ALLOCSHIM_EXPORTS _Zn${_op}${_z} _Zn${_op}${_z}RKSt9nothrow_t
       _Zn${_op}${_z}St11align_val_t _Zn${_op}${_z}St11align_val_tRKSt9nothrow_t)
endforeach()
foreach(_op l a)
  list(APPEND ALLOCSHIM_EXPORTS _Zd${_op}Pv _Zd${_op}Pv${_z} _Zd${_op}PvSt11align_val_t
       _Zd${_op}Pv${_z}St11align_val_t _Zd${_op}PvRKSt9nothrow_t
       _Zd${_op}PvSt11align_val_tRKSt9nothrow_t)
endforeach()

# The backend's own API, where the shim carries the backend inside it: jemalloc's
# extended API, or mimalloc's mi_* functions (cmake/AllocshimBackend.cmake).
list(APPEND ALLOCSHIM_EXPORTS ${ALLOCSHIM_BACKEND_API})

list(SORT ALLOCSHIM_EXPORTS)
list(JOIN ALLOCSHIM_EXPORTS ";\n    " _globals)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/allocshim.map
     CONTENT "{\n  global:\n    ${_globals};\n  local:\n    *;\n};\n")
list(JOIN ALLOCSHIM_EXPORTS "\n" _lines)
file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/exports.txt CONTENT "${_lines}\n")
