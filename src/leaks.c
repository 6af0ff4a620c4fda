/* The leak gate (ALLOCSHIM_PROF_LEAKS=1): at normal exit, the blocks still live, read
 * from a heap profile of every allocation, said with their stacks, and exit status 23. */
#define _GNU_SOURCE
#include "backend.h"
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* How much of the report goes to stderr; the profile file holds all of it. */
#define SHOWN_STACKS 10
#define SHOWN_FRAMES 16
/* Frames read per stack: jemalloc records up to 128 (prof_bt_max). */
#define MAX_FRAMES 128

/* glibc frees its own caches (stdio buffers, time-zone data, locale, NSS) here, the
 * call valgrind and mtrace make at exit; weak, because not every C library has it. */
extern void __libc_freeres(void) __attribute__((weak));

/* The process that started: a forked child that calls exit() holds its parent's
 * blocks, which are not its leaks; an exec'd program checks itself afresh. */
static pid_t starter;

/* One stack of the profile: its frames and what it still holds. */
struct stack {
  uintptr_t frame[MAX_FRAMES];
  int frames;
  unsigned long long objects, bytes;
};

/* The text of one line starting at p (up to end): its length without the newline. */
static size_t line_len(const char *p, const char *end) {
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  return (size_t)((nl ? nl : end) - p);
}

/* "@ 0x1 0x2 ..." into s->frame. */
static void parse_frames(const char *p, const char *end, struct stack *s) {
  s->frames = 0;
  for (p++; p < end && s->frames < MAX_FRAMES;) {
    while (p < end && *p == ' ')
      p++;
    if (p >= end)
      break;
    char *next;
    uintptr_t a = (uintptr_t)strtoull(p, &next, 16);
    if (next == p)
      break;
    s->frame[s->frames++] = a;
    p = next;
  }
}

/* "  t*: OBJECTS: BYTES [..." into s. */
static bool parse_counts(const char *p, const char *end, struct stack *s) {
  while (p < end && *p == ' ')
    p++;
  if (end - p < 4 || strncmp(p, "t*:", 3) != 0)
    return false;
  char *next;
  s->objects = strtoull(p + 3, &next, 10);
  if (*next != ':')
    return false;
  s->bytes = strtoull(next + 1, NULL, 10);
  return true;
}

/* Whether a stack is the C runtime's own rather than the program's: made while the
 * dynamic loader runs (libraries' constructors, the shim's among them, dlopen, thread-
 * local storage), in the main thread before the shim's constructor could unwind (early:
 * the one frame the backend gives such a sample), or a stdio buffer (glibc keeps those to the end,
 * __libc_freeres or not). Return addresses point after the call, hence the -1. */
static bool runtime_stack(const struct stack *s, uintptr_t loader, uintptr_t early) {
  for (int i = 0; i < s->frames; i++) {
    Dl_info info;
    if (s->frame[i] == early)
      return true;
    if (s->frame[i] == 0 || dladdr((void *)(s->frame[i] - 1), &info) == 0)
      continue;
    if (loader != 0 && (uintptr_t)info.dli_fbase == loader)
      return true;
    if (info.dli_sname != NULL && strcmp(info.dli_sname, "_IO_file_doallocate") == 0)
      return true;
  }
  return false;
}

/* One frame as "function (file)", or "file+0xOFFSET" where the file's dynamic symbols
 * do not name it (a static function: the profile file, read by jeprof, names those). */
static void say_frame(uintptr_t a) {
  Dl_info info;
  if (dladdr((void *)(a - 1), &info) == 0 || info.dli_fname == NULL)
    allocshim_say("    0x%" PRIxPTR, a);
  else if (info.dli_sname != NULL)
    allocshim_say("    %s (%s)", info.dli_sname, info.dli_fname);
  else
    allocshim_say("    %s+0x%" PRIxPTR, info.dli_fname, a - (uintptr_t)info.dli_fbase);
}

/* The first frame after the allocator's own (the shim's, which the profile records
 * first: its entry point and jemalloc's backtrace). */
static int first_frame(const struct stack *s, uintptr_t shim) {
  int i = 0;
  Dl_info info;
  while (shim != 0 && i < s->frames - 1 && dladdr((void *)(s->frame[i] - 1), &info) != 0 &&
         (uintptr_t)info.dli_fbase == shim)
    i++;
  return i;
}

static void say_stack(const struct stack *s, int i) {
  int shown = 0;
  allocshim_say("  %llu bytes in %llu block%s allocated at:", s->bytes, s->objects,
                s->objects == 1 ? "" : "s");
  for (; i < s->frames && shown < SHOWN_FRAMES; i++, shown++)
    say_frame(s->frame[i]);
  if (i < s->frames)
    allocshim_say("    ... %d more frames", s->frames - i);
}

/* Appends `len` bytes to the memfd `fd`; false on failure. */
static bool put(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n <= 0)
      return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

/* The stack's "@" line from frame `i` on: the program's frames, not the allocator's. */
static bool put_frames(int fd, const struct stack *s, int i) {
  char buf[32];
  if (!put(fd, "@", 1))
    return false;
  for (; i < s->frames; i++) {
    int n = snprintf(buf, sizeof buf, " 0x%" PRIxPTR, s->frame[i]);
    if (!put(fd, buf, (size_t)n))
      return false;
  }
  return put(fd, "\n", 1);
}

/* The process's thread count, from /proc without stdio (no allocation); 0 if unknown. */
static long thread_count(void) {
  char buf[4096];
  if (allocshim_read_file("/proc/self/status", buf, sizeof buf) <= 0)
    return 0;
  const char *at = strstr(buf, "\nThreads:");
  return at ? strtol(at + 9, NULL, 10) : 0;
}

/* A gate that could not look fails closed: a CI run must not pass on a check that
 * never happened. */
static void cannot_check(const char *why) {
  allocshim_say("leak check: %s; nothing checked, exit status %d", why, LEAKS_EXIT_STATUS);
  fflush(NULL);
  _exit(LEAKS_EXIT_STATUS);
}

static void check_at_exit(void) {
  if (getpid() != starter)
    return;
  /* glibc's caches go back first, so that only the program's blocks are left. stdio
   * is flushed by it too (and after it, unbuffered), so nothing the program printed is
   * lost if this check ends the process. Only with one thread: exit() stops no other,
   * and a thread still writing to stdout or reading the locale would be using what
   * __libc_freeres frees. */
  long threads = thread_count();
  if (threads == 1 && __libc_freeres != NULL) {
    __libc_freeres();
  } else {
    fflush(NULL);
    if (threads != 1)
      allocshim_say("leak check: %ld threads still running at exit: glibc's caches stay, and "
                    "what those threads hold counts as live",
                    threads);
  }
  uintptr_t early = be_profile_early_frame();
  if (early == 0)
    cannot_check("the heap profile has no stacks: libgcc_s.so.1, the unwinder, could not "
                 "be opened");
  int mem = profile_snapshot();
  struct stat st;
  if (mem < 0 || fstat(mem, &st) != 0 || st.st_size == 0) {
    if (mem >= 0)
      close(mem);
    cannot_check("no heap profile from the backend");
  }
  const char *text = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, mem, 0);
  close(mem);
  if (text == MAP_FAILED)
    cannot_check("cannot read the heap profile");
  const char *end = text + st.st_size;
  /* Every allocation sampled, or a block can leak unseen: MALLOC_CONF has the last
   * word over lg_prof_sample, and the program may have paused profiling. */
  if (st.st_size < 10 || strncmp(text, "heap_v2/1\n", 10) != 0) {
    munmap((void *)text, (size_t)st.st_size);
    cannot_check("the profile does not sample every allocation (lg_prof_sample:0; is "
                 "MALLOC_CONF overriding it?)");
  }
  /* The profile again, with the runtime's stacks left out: what jeprof reads. */
  int kept = memfd_create("allocshim-leaks", MFD_CLOEXEC);
  bool kept_ok = kept >= 0;
  uintptr_t loader = (uintptr_t)getauxval(AT_BASE);
  /* The shim's own frames are skipped when it is a library of its own; linked into
   * the program (liballocshim.a), its frames are the program's file and all are kept. */
  Dl_info self, exe;
  uintptr_t shim = dladdr((void *)check_at_exit, &self) ? (uintptr_t)self.dli_fbase : 0;
  if (dladdr((void *)getauxval(AT_ENTRY), &exe) && (uintptr_t)exe.dli_fbase == shim)
    shim = 0;
  static struct stack s; /* 1 KiB of frames: off the stack, which exit may have little of */
  unsigned long long objects = 0, bytes = 0, stacks = 0;
  bool in_stack = false, keep = false, header = true;
  for (const char *p = text; p < end;) {
    size_t len = line_len(p, end);
    const char *next = p + len + (p + len < end);
    if (len >= 17 && strncmp(p, "MAPPED_LIBRARIES:", 17) == 0) {
      kept_ok = kept_ok && put(kept, "\n", 1) && put(kept, p, (size_t)(end - p));
      break;
    }
    if (p[0] == '@') {
      header = false;
      in_stack = true;
      parse_frames(p, p + len, &s);
      keep = parse_counts(next, end, &s) && s.objects > 0 && !runtime_stack(&s, loader, early);
      if (keep) {
        int first = first_frame(&s, shim);
        if (stacks == 0)
          allocshim_say("leak check: blocks still live at exit (ALLOCSHIM_PROF_LEAKS=1):");
        if (stacks < SHOWN_STACKS)
          say_stack(&s, first);
        stacks++, objects += s.objects, bytes += s.bytes;
        kept_ok = kept_ok && put_frames(kept, &s, first);
      }
    } else if (len == 0) {
      in_stack = false;
    }
    /* The header (its totals are the whole profile's; jeprof adds up the stacks) and
     * the counts of each stack kept. */
    if (header || (in_stack && keep && p[0] != '@'))
      kept_ok = kept_ok && put(kept, p, (size_t)(next - p));
    p = next;
  }
  munmap((void *)text, (size_t)st.st_size);
  if (stacks == 0) {
    if (kept >= 0)
      close(kept);
    return; /* clean: exit goes on with the program's own status */
  }
  if (stacks > SHOWN_STACKS)
    allocshim_say("  ... and %llu more stacks", stacks - SHOWN_STACKS);
  char path[4096];
  if (kept_ok && profile_write_memfd(kept, path, sizeof path) == 0)
    allocshim_say("leak check: these stacks, every function named: jeprof --text PROGRAM %s", path);
  if (kept >= 0)
    close(kept);
  allocshim_say("leak check: %llu bytes in %llu block%s from %llu stack%s still live at exit; "
                "exit status %d",
                bytes, objects, objects == 1 ? "" : "s", stacks, stacks == 1 ? "" : "s",
                LEAKS_EXIT_STATUS);
  _exit(LEAKS_EXIT_STATUS);
}

/* Registered from the library's constructor, before the program's main and its own
 * atexit handlers and C++ destructors: handlers run in reverse, so this one runs after
 * them, with what they freed already freed. */
void leaks_start(void) {
  starter = getpid();
  atexit(check_at_exit);
}
