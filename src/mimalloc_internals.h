/* The compiled-in mimalloc's internal header (statistics, segment and page layouts),
 * for src/backend_mimalloc.c and its test, with the warnings its code gives under the
 * project's flags silenced: third-party code, its warnings are not ours. */
#ifndef ALLOCSHIM_MIMALLOC_INTERNALS_H
#define ALLOCSHIM_MIMALLOC_INTERNALS_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wint-to-pointer-cast" /* 32-bit targets */
#include <mimalloc-internal.h>
#pragma GCC diagnostic pop

#endif
