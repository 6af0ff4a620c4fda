/* Helpers shared by the shim's own code: reading ALLOCSHIM_* settings and saying
 * things on stderr, both safe to call before main and from inside the allocator. */
#ifndef ALLOCSHIM_INTERNAL_H
#define ALLOCSHIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

/* The value of ALLOCSHIM_<suffix>, or NULL. Read with secure_getenv, so a setuid or
 * setgid program never obeys them. Every ALLOCSHIM_ variable goes through here. */
const char *allocshim_env(const char *suffix);

/* True when ALLOCSHIM_<suffix> is set to 1, y, yes, true or on (any case). */
bool allocshim_env_flag(const char *suffix);

/* ALLOCSHIM_PURGE, idle return: seconds after which freed memory goes back to the OS
 * (0 to PURGE_MAX_SECONDS), or PURGE_DEFAULT (unset), PURGE_OFF ("off") or
 * PURGE_INVALID (anything else, which the backend says and treats as unset). Neither
 * allocates nor touches errno. */
#define PURGE_DEFAULT     (-1)
#define PURGE_OFF         (-2)
#define PURGE_INVALID     (-3)
#define PURGE_MAX_SECONDS 86400
int allocshim_purge_setting(void);
/* Idle return starts its thread only once the backend holds this much (jemalloc: mapped,
 * mimalloc: committed). Measured (docs/PERFORMANCE.md): python3 -c pass, ls and git
 * map 6.6-6.9 MiB through jemalloc, Python with a few imports 9-11; mimalloc commits 32
 * MiB for python3 -c pass (its first segment whole). Past 64 MiB, idle memory is worth
 * a thread. */
#define PURGE_THRESHOLD ((size_t)64 << 20)
/* mimalloc: how long a wholly free segment waits in mimalloc's cache before it is
 * decommitted (mimalloc's own default: 500 ms). Measured (docs/PERFORMANCE.md,
 * "mimalloc's segment delay"): 20 ms takes churn's peak from 15.0 to 11.7 MiB and
 * spawn's from 7.5 to 6.1 within 3% of their time; 5 ms saves more and costs 12-15%. */
#define MIMALLOC_SEGMENT_DELAY_MS 20
/* Whether a seccomp filter is on for the calling thread, which a new thread inherits:
 * one may kill the process on the clone() a thread needs, so idle return starts none.
 * True when /proc cannot tell. */
bool allocshim_under_seccomp(void);

/* One line on stderr, prefixed "allocshim: ". Formats into a stack buffer and
 * write()s it, so it never allocates. */
void allocshim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The start of a (/proc) file, read into buf and NUL-terminated: its length, or -1.
 * Never allocates, and leaves errno as it was. */
ssize_t allocshim_read_file(const char *path, char *buf, size_t size);

/* write() until all of buf is out, past EINTR; gives up quietly on an error (a
 * diagnostic has nowhere else to go). Never allocates. */
void allocshim_write_all(int fd, const char *buf, size_t len);

/* Called once when the library loads: ALLOCSHIM_PROF_SIGNAL, _AT_EXIT and _DIR. */
void profile_start(void);
/* How many signal-requested dumps have finished, failed or not (for tests). */
unsigned profile_signal_dumps_done(void);
/* A new 0600 file at `path`, for a profile jemalloc writes itself, in a directory
 * trusted as the shim's own dumps' are: a descriptor, or -1 with errno. */
int profile_create_new(const char *path);
/* A fresh profile from the backend in a memfd (close-on-exec): the descriptor, or -1. */
int profile_snapshot(void);
/* The bytes of memfd `mem` as a new profile under the default name, in
 * ALLOCSHIM_PROF_DIR or the current directory, trusted as every dump's: 0 with the
 * file's path in `written`, or -1 (an untrusted directory said on stderr). */
int profile_write_memfd(int mem, char *written, size_t cap);
/* Opens the absolute directory `dir`, checking every step: it and every directory
 * above it must be owned by root or the euid and not writable by group or others
 * unless sticky; with `create`, missing ones are made 0700 (mkdir -p). An O_PATH
 * descriptor, or -1 with errno; an untrusted directory gives EPERM, and `why` says
 * "refusing <doing> <dir>: <which one> is <why>". */
int trusted_dir_open(const char *dir, bool create, const char *doing, char *why, size_t cap);
/* Whether a file or directory owned by `uid` is trusted: root's, or the process's own
 * when its real, effective and saved uids are all that one. */
bool trusted_owner(uid_t uid);
/* Whether a pprof dump can be made: ALLOC_OK once the converter plugin is loaded
 * (src/pprof.c), else ALLOC_ENOTSUP (not installed, or cannot load) or ALLOC_EIO with
 * errno EPERM (found in an untrusted place), with `why` saying which. */
int pprof_ready(char *why, size_t cap);
/* The jemalloc profile in memfd `heap` as a gzipped pprof profile in a new memfd
 * (close-on-exec), by the plugin pprof_ready() loaded; -1 with errno and `why`. */
int pprof_from_heap(int heap, char *why, size_t cap);
/* ALLOCSHIM_PROF_LEAKS=1 on a backend that profiles: the check at exit (src/leaks.c). */
void leaks_start(void);
/* The exit status of a process whose check found blocks still live. */
#define LEAKS_EXIT_STATUS 23

/* ALLOCSHIM_PROF_SIGNAL's value ("USR2", "SIGUSR2", "12", "RTMIN+2") to a signal
 * number; -1, with *why (if why is not NULL) saying why, for what is not a signal or
 * may not be chosen: uncatchable, fatal, reserved. */
int profile_parse_signal(const char *text, const char **why);
/* ALLOCSHIM_PROF_SAMPLE's value to bytes: true for 1 to PROF_SAMPLE_MAX written in
 * decimal digits alone. Neither allocates nor touches errno. */
#define PROF_SAMPLE_MAX (1ull << 40)
bool profile_parse_sample(const char *text, unsigned long long *bytes);

/* Called once when the library loads: whose malloc the process uses (src/foreign.c),
 * said under ALLOCSHIM_VERBOSE when it is not the shim's. */
void foreign_start(void);

/* Called once when the library loads: ALLOCSHIM_DEEPBIND. */
void deepbind_start(void);
/* dlopen for a library the shim opens itself: the one after the shim's own (glibc's,
 * unless a library loaded after the shim defines one), which handles the program's
 * calls; NULL, as a failed dlopen, if there is none. */
void *deepbind_dlopen(const char *file, int mode);

/* Called once when the library loads: ALLOCSHIM_STATS_AT_EXIT. */
void stats_start(void);

/* glibc's introspection calls, answered by src/stats.c; musl has no such calls
 * (ALLOCSHIM_GLIBC: cmake/AllocshimBackend.cmake). */
#if ALLOCSHIM_GLIBC
struct mallinfo2 stats_mallinfo2(void);
struct mallinfo stats_mallinfo(void);
void stats_malloc_stats(void);
int stats_malloc_info(int options, FILE *fp);
int stats_malloc_trim(size_t pad);
int stats_mallopt(int param, int value);
#endif

#endif /* ALLOCSHIM_INTERNAL_H */
