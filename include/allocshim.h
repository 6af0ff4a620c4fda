/* allocshim: one allocator for the whole malloc family, chosen at build time.
 * The public API: version, backend identity, status codes and heap profiling. */
#ifndef ALLOCSHIM_H
#define ALLOCSHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version -------------------------------------------------------------- */

/* The project's one record of its version: CMakeLists.txt reads these four lines
 * (and refuses a STRING that does not match the numbers). */

#define ALLOCSHIM_VERSION_MAJOR  0
#define ALLOCSHIM_VERSION_MINOR  1
#define ALLOCSHIM_VERSION_PATCH  0
#define ALLOCSHIM_VERSION_STRING "0.1.0"
/* 0xMMmmpp: compare with >= in #if to test for a minimum version. */
#define ALLOCSHIM_VERSION_HEX                                                                      \
  ((ALLOCSHIM_VERSION_MAJOR << 16) | (ALLOCSHIM_VERSION_MINOR << 8) | ALLOCSHIM_VERSION_PATCH)

/* ---- Export macro --------------------------------------------------------- */

#if defined(_WIN32) && defined(ALLOCSHIM_BUILDING)
#define ALLOC_API __declspec(dllexport)
#elif defined(_WIN32)
#define ALLOC_API __declspec(dllimport)
#elif defined(__GNUC__)
#define ALLOC_API __attribute__((visibility("default")))
#else
#define ALLOC_API
#endif

/* ---- Status codes ----------------------------------------------------------- */

/* Every API call that can fail returns one of these; they are also what
 * alloc_strerror() explains. New codes may be added; existing values never change. */
#define ALLOC_STATUS_MAP(XX)                                                                       \
  XX(OK, 0, "success")                                                                             \
  XX(ENOTSUP, -1,                                                                                  \
     "heap profiling is not supported by this build: it needs the jemalloc backend built "         \
     "with profiling (allocshim uses jemalloc only on Linux glibc x86_64)")                        \
  XX(EPROFOFF, -2, "heap profiling is off: start the program with ALLOCSHIM_PROF=1 to enable it")  \
  XX(EINVAL, -3, "invalid argument")                                                               \
  XX(EIO, -4, "the heap profile or the statistics could not be written (errno tells why)")

typedef enum alloc_status {
#define ALLOC_STATUS_ENUM_(name, value, text) ALLOC_##name = (value),
  ALLOC_STATUS_MAP(ALLOC_STATUS_ENUM_)
#undef ALLOC_STATUS_ENUM_
} alloc_status;

/* A fixed English sentence for `status`; never NULL, also for unknown codes.
 * The string is static: do not free it. */
ALLOC_API const char *alloc_strerror(int status);

/* ---- Identity ------------------------------------------------------------------ */

/* The library version at run time ("0.1.0"); may differ from ALLOCSHIM_VERSION_STRING
 * when a program runs against a newer shared library than it was built with. */
ALLOC_API const char *alloc_version(void);

/* The backend serving every allocation in this process: "jemalloc" or "mimalloc".
 * Fixed when allocshim was built; never NULL. */
ALLOC_API const char *alloc_backend(void);

/* The backend's own version string, as the backend reports it (for jemalloc the
 * full "5.3.0-0-g..." tag, for mimalloc "2.0.9"); never NULL. */
ALLOC_API const char *alloc_backend_version(void);

/* ---- Heap profiling --------------------------------------------------------- */

/* Whether alloc_profile_dump() can work in this process: ALLOC_OK when the build has
 * the jemalloc backend and profiling was switched on at start (ALLOCSHIM_PROF=1),
 * ALLOC_EPROFOFF when it was not, ALLOC_ENOTSUP on the mimalloc backend. */
ALLOC_API int alloc_profile_supported(void);

/* Write a heap profile that `jeprof` reads to `path`, atomically: the file appears
 * complete (and synced) or not at all. A `path` ending in ".pb.gz" gets pprof's gzipped
 * profile.proto instead (inuse_objects/inuse_space, for go tool pprof), made by the
 * converter the library loads from "allocshim/liballocshim-pprof.so" beside itself on
 * the first such dump. NULL picks "<dir>/allocshim.<pid>.<seq>.heap" (".pb.gz" under
 * ALLOCSHIM_PROF_FORMAT=pprof),
 * <dir> being ALLOCSHIM_PROF_DIR (a relative one is taken from the directory the
 * program started in; created 0700 if missing) or the current directory; a default
 * name that exists already (an earlier run with the same pid) is never replaced, the
 * next <seq> is used. Profiling must be enabled at start with ALLOCSHIM_PROF=1.
 *
 * Safe in a root process next to hostile users: the directory, and every directory
 * above it, must be owned by root or the caller's euid and not writable by group or
 * others unless sticky (a symlink on the way is followed only if root or the euid owns
 * it), or the dump is refused with one line on stderr naming the directory and why.
 * The profile is written into a new 0600 file the shim creates itself (O_EXCL,
 * O_NOFOLLOW) and renamed into place; `path` may replace only a regular file owned by
 * the euid.
 *
 * Returns ALLOC_OK, with errno as it was. Otherwise:
 *   ALLOC_EINVAL   "" (errno EINVAL); a path of PATH_MAX bytes or more (ENAMETOOLONG)
 *   ALLOC_EPROFOFF profiling is off (ENOENT)
 *   ALLOC_EIO      nothing written and nothing replaced; errno says why:
 *                  EPERM        the directory is not trusted (said on stderr), or
 *                               `path` is another user's file
 *                  ELOOP        `path` is a symlink (the link and its target stay)
 *                  EEXIST       `path` is a FIFO, socket or device node
 *                  EISDIR       `path` is a directory
 *                  EFBIG        the profile would reach RLIMIT_FSIZE (no SIGXFSZ is
 *                               left to kill the process)
 *                  ENAMETOOLONG the final name is longer than NAME_MAX
 *                  ENOENT, ENOTDIR, EACCES, ENOSPC, EIO, ...: from the OS
 *   ALLOC_ENOTSUP  the mimalloc backend (ENOTSUP; said once on stderr); or a pprof
 *                  dump without its converter installed, or one that cannot load
 *                  (ENOTSUP; said on stderr). No file is touched.
 * A converter found where another user could have put it (a file or directory they
 * own or can write) is never loaded: ALLOC_EIO with EPERM, said on stderr.
 * Not async-signal-safe: it allocates, takes the allocator's locks and does file I/O,
 * so calling it from a signal handler can deadlock. For a dump on a signal, start the
 * program with ALLOCSHIM_PROF_SIGNAL, whose handler only wakes a thread that dumps. */
ALLOC_API int alloc_profile_dump(const char *path);

/* Start (true) or stop (false) sampling allocations, for a program started with
 * ALLOCSHIM_PROF=1. Memory sampled before a stop stays in later profiles.
 * Returns ALLOC_OK, ALLOC_EPROFOFF or ALLOC_ENOTSUP (errno as for the dump). */
ALLOC_API int alloc_profile_activate(bool active);

/* ---- Statistics ------------------------------------------------------------------ */

/* A field the backend cannot tell holds this value, never a made-up 0. */
#define ALLOC_STAT_UNKNOWN SIZE_MAX

/* Bytes, as the backend counts them, refreshed by every alloc_stats() call.
 *                jemalloc   mimalloc
 *   allocated    exact      unknown (mimalloc release builds keep no live-byte count)
 *   active       exact      approximate: memory mimalloc has committed
 *   resident     exact      approximate: the process's resident set (/proc/self/statm)
 *   mapped       exact      unknown
 *   retained     exact      unknown */
typedef struct alloc_stats {
  size_t allocated; /* in live blocks the program owns */
  size_t active;    /* in pages that hold live blocks */
  size_t resident;  /* physically resident */
  size_t mapped;    /* mapped from the system and in use */
  size_t retained;  /* mapped, unused, kept for reuse */
} alloc_stats_t;

/* Fill *out with the backend's current figures. ALLOC_OK, or ALLOC_EINVAL for NULL
 * (errno EINVAL). */
ALLOC_API int alloc_stats(alloc_stats_t *out);

/* TEXT: one line. JSON: one object, unknown fields null.
 * PROMETHEUS: the text exposition format (version 0.0.4) a Prometheus server scrapes,
 * gauges allocshim_<field>_bytes, allocshim_fragmentation_ratio (active/allocated) and
 * the counter allocshim_returned_bytes_total (bytes given back to the OS so far), each
 * sample labelled backend="..."; a figure the backend cannot tell is left out. */
typedef enum alloc_format {
  ALLOC_FORMAT_TEXT = 0,
  ALLOC_FORMAT_JSON = 1,
  ALLOC_FORMAT_PROMETHEUS = 2
} alloc_format;

/* Write the alloc_stats() figures to `f`, with the backend's name, in one of the
 * formats above. ALLOC_OK; ALLOC_EINVAL for a NULL stream or an unknown format
 * (errno EINVAL); ALLOC_EIO if writing fails. */
ALLOC_API int alloc_stats_print(FILE *f, int format);

#ifdef __cplusplus
}
#endif

#endif /* ALLOCSHIM_H */
