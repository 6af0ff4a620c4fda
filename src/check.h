/* Checked mode (ALLOCSHIM_CHECK=1), implemented in src/check.c: the flag, the pointer
 * check, and the table of mapped ranges for a backend that cannot tell its own pointers. */
#ifndef ALLOCSHIM_CHECK_H
#define ALLOCSHIM_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/* Set once, before main, when checked mode is on, and never cleared. What it changes
 * is glue.h's table of operations; this says that it did (alloc_stats_print). */
extern bool check_on __attribute__((visibility("hidden")));
/* ALLOCSHIM_CHECK, read once; safe from inside the backend's own start-up. */
bool check_enabled(void);
/* From the library's constructor: turns checked mode on if asked for. */
void check_start(void);
/* Returns if p is NULL or the start of a live block of the backend's; otherwise says
 * why it is not (foreign, freed, or inside a block) and aborts. */
void check_pointer(const char *op, const void *p);

/* What a backend can tell of a pointer it owns (be_check_block, per backend). */
enum check_block {
  CHECK_BLOCK_OK,       /* the start of a live block, or the backend cannot tell */
  CHECK_BLOCK_INTERIOR, /* inside a live block, not at its start (set *start) */
  CHECK_BLOCK_FREED,    /* in a block already freed */
  CHECK_BLOCK_NONE,     /* in the backend's memory, but in no block it handed out */
};
/* Implemented in src/backend_<name>.c; p is non-NULL and be_owns(p). Sets *start to
 * the block's start when it knows it. */
enum check_block be_check_block(const void *p, const void **start);

/* Every range the backend maps and unmaps, while check_enabled(). */
void check_ranges_add(const void *p, size_t len);
void check_ranges_remove(const void *p, size_t len);
/* True if p lies in a recorded range (or the table overflowed and cannot tell). */
bool check_ranges_hold(const void *p);
/* The start of the recorded range holding p; false if none (or the table overflowed). */
bool check_ranges_start(const void *p, const void **lo);

#endif /* ALLOCSHIM_CHECK_H */
