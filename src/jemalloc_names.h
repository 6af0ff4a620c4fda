/* The prototypes of every jemalloc name the shim renames or uses, expanded from
 * src/jemalloc_names.def, the list the build renames by: none is written by hand. */
#ifndef ALLOCSHIM_JEMALLOC_NAMES_H
#define ALLOCSHIM_JEMALLOC_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unwind.h>

/* Types the list's prototypes need that C cannot spell inside one macro argument. */
typedef void je_write_cb(void *opaque, const char *text);
struct je_emap; /* jemalloc's emap_t, only ever pointed at */
struct je_arena_table {
  void *slot[4095]; /* jemalloc's arenas[MALLOCX_ARENA_LIMIT], read atomically */
};

/* Hidden makes the shim's calls direct, with no trip through the GOT. A direct entry
 * is left alone: the exported name the link gives it takes its visibility. */
#define JE_VIS_direct
#define JE_VIS_api      __attribute__((visibility("hidden")))
#define JE_VIS_import   __attribute__((visibility("hidden")))
#define JE_VIS_frame    __attribute__((visibility("hidden")))
#define JE_VIS_internal __attribute__((visibility("hidden")))
#define JE_VIS_hook     __attribute__((visibility("hidden")))
/* A hook has two: the shim's function (renamed) and jemalloc's (original), which it
 * calls on to. Every other role declares its renamed name only. */
#define JE_ALSO_direct(original, ret, params)
#define JE_ALSO_api(original, ret, params)
#define JE_ALSO_import(original, ret, params)
#define JE_ALSO_frame(original, ret, params)
#define JE_ALSO_internal(original, ret, params)
#define JE_ALSO_hook(original, ret, params) JE_VIS_hook ret original params;

/* The compile definitions come from the configure-time gate (cmake/AllocshimBackend.cmake),
 * which already refused any other version: this holds a build made without it to the same. */
#if !defined(ALLOCSHIM_JEMALLOC_MAJOR) || !defined(ALLOCSHIM_JEMALLOC_MINOR)
#error "ALLOCSHIM_JEMALLOC_MAJOR/_MINOR undefined: configure with cmake/AllocshimBackend.cmake"
#endif
#define JE_INTERNALS_VERSION(major, minor)                                                         \
  _Static_assert(ALLOCSHIM_JEMALLOC_MAJOR == (major) && ALLOCSHIM_JEMALLOC_MINOR == (minor),       \
                 "src/jemalloc_names.def: the shim relies on internals of another jemalloc");
#define JE_FN(original, renamed, role, ret, params)                                                \
  JE_VIS_##role ret renamed params;                                                                \
  JE_ALSO_##role(original, ret, params)
#define JE_VAR(original, renamed, role, type) JE_VIS_##role extern type renamed;
#include "jemalloc_names.def"
#undef JE_INTERNALS_VERSION
#undef JE_FN
#undef JE_VAR

#endif /* ALLOCSHIM_JEMALLOC_NAMES_H */
