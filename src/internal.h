/* Helpers shared by the shim's own code: reading ALLOCSHIM_* settings and saying
 * things on stderr, both safe to call before main and from inside the allocator. */
#ifndef ALLOCSHIM_INTERNAL_H
#define ALLOCSHIM_INTERNAL_H

#include <stdbool.h>

/* The value of ALLOCSHIM_<suffix>, or NULL. Read with secure_getenv, so a setuid or
 * setgid program never obeys them. Every ALLOCSHIM_ variable goes through here. */
const char *allocshim_env(const char *suffix);

/* True when ALLOCSHIM_<suffix> is set to 1, y, yes, true or on (any case). */
bool allocshim_env_flag(const char *suffix);

/* One line on stderr, prefixed "allocshim: ". Formats into a stack buffer and
 * write()s it, so it never allocates. */
void allocshim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* ALLOCSHIM_INTERNAL_H */
