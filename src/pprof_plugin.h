/* The one call between the library and its pprof converter, liballocshim-pprof.so,
 * which the library loads only when a dump in pprof's format is asked for. */
#ifndef ALLOCSHIM_PPROF_PLUGIN_H
#define ALLOCSHIM_PPROF_PLUGIN_H

#include <stddef.h>

/* The plugin's file name, in the directory "allocshim" beside the library. */
#define PPROF_PLUGIN_FILE "liballocshim-pprof.so"
/* The entry point's name carries the interface's version: a plugin built for another
 * interface lacks it and is refused, never called with the wrong arguments. */
#define PPROF_PLUGIN_ENTRY "allocshim_pprof_convert_v1"

/* Reads the jemalloc heap_v2 profile in `heap_fd` from its start and appends it as a
 * gzipped pprof profile.proto to `out_fd`; both descriptors stay the caller's. Returns
 * 0, or -1 with `err` saying why (nothing usable is in out_fd then). */
typedef int (*pprof_plugin_convert)(int heap_fd, int out_fd, char *err, size_t errlen);

#endif
