/* allocshim-doctor: says whether LD_PRELOAD of liballocshim can work on a program, for
 * allocshim-run (installed in libexec); reads ELF itself, as binutils may be absent. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/xattr.h>
#endif

#include "doctor_elf.h"

/* Exit statuses, documented in allocshim-run(1) as --doctor's. */
enum { OK = 0, WARN = 1, REFUSE = 2, UNCHECKED = 3, USAGE = 4 };

/* The dynamic symbols looked for: the program's own malloc, and the marks of an
 * allocator's API that the library may carry inside it. */
static const char *const names[] = {"malloc", "mallctl", "mi_malloc", "tc_malloc", "alloc_version"};
enum { SYM_MALLOC = 1u << 0, SYM_ALLOC_VERSION = 1u << 4 };

/* Allocators a program may link; mark is the symbol whose definition in liballocshim
 * means the shim serves that allocator's own API too (cmake/AllocshimBackend.cmake). */
static const struct family {
  const char *name, *soname_prefix;
  unsigned mark;
} families[] = {
    {"jemalloc", "libjemalloc.so", 1u << 1},   {"mimalloc", "libmimalloc.so", 1u << 2},
    {"mimalloc", "libmimalloc-secure.so", 0},  {"tcmalloc", "libtcmalloc", 1u << 3},
    {"snmalloc", "libsnmallocshim", 0},        {"rpmalloc", "librpmalloc", 0},
    {"Hoard", "libhoard", 0},
};

static int verdict = OK;

__attribute__((format(printf, 2, 3))) static void say(int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  if (level > verdict)
    verdict = level;
}

static const char *machine_name(unsigned m, int bits) {
  switch (m) {
  case 2: return "SPARC";
  case 3: return "x86 (i386)";
  case 8: return "MIPS";
  case 20: return "PowerPC";
  case 21: return "PowerPC64";
  case 22: return "S/390";
  case 40: return "ARM";
  case 43: return "SPARC V9";
  case 62: return bits == 32 ? "x86-64 (x32)" : "x86-64";
  case 183: return "AArch64";
  case 243: return "RISC-V";
  case 258: return "LoongArch";
  default: return NULL;
  }
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static int starts(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Which C library: the interpreter names it for a program (ld-musl-*, ld-linux*,
 * ld64.so.*, ld.so.1), the C library's soname for a shared library. NULL: cannot tell. */
static const char *libc_of(const struct doctor_elf *e) {
  if (e->has_interp) {
    const char *b = base_name(e->interp);
    if (starts(b, "ld-musl-"))
      return "musl";
    if (starts(b, "ld-linux") || starts(b, "ld64.so.") || strcmp(b, "ld.so.1") == 0)
      return "glibc";
  }
  for (size_t i = 0; i < e->n_needed; i++) {
    if (strcmp(e->needed[i], "libc.so.6") == 0)
      return "glibc";
    if (strcmp(e->needed[i], "libc.so") == 0 || starts(e->needed[i], "libc.musl-"))
      return "musl";
  }
  return NULL;
}

/* "64-bit x86-64, glibc": byte order only when the other file's differs. */
static void describe(const struct doctor_elf *e, int show_order, char *buf, size_t size) {
  const char *m = machine_name(e->machine, e->bits);
  char unknown[32];
  if (!m) {
    snprintf(unknown, sizeof unknown, "machine %u", e->machine);
    m = unknown;
  }
  const char *libc = libc_of(e);
  snprintf(buf, size, "%d-bit %s%s, %s", e->bits, m,
           show_order ? (e->big_endian ? " big-endian" : " little-endian") : "",
           libc ? libc : "C library unknown");
}

/* A descriptor for path only if it is a regular file: a FIFO would block the open for
 * ever, and opening a device can act (a watchdog arms, a tape rewinds), so neither is
 * opened; O_NONBLOCK and the identity check cover a swap between stat and open. */
static int open_regular(const char *path, struct stat *st, const char **why) {
  struct stat before;
  if (stat(path, &before) != 0) {
    *why = strerror(errno);
    return -1;
  }
  if (!S_ISREG(before.st_mode)) {
    *why = "not a regular file";
    return -1;
  }
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    *why = strerror(errno);
    return -1;
  }
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_dev != before.st_dev ||
      st->st_ino != before.st_ino) {
    close(fd);
    *why = "not a regular file";
    return -1;
  }
  return fd;
}

static int read_elf(const char *path, struct doctor_elf *e, const char **why) {
  struct stat st;
  int fd = open_regular(path, &st, why);
  if (fd < 0)
    return -1;
  struct doctor_src src = {.fd = fd, .size = (uint64_t)st.st_size};
  int rc = doctor_elf_read(&src, names, sizeof names / sizeof names[0], e, why);
  close(fd);
  return rc;
}

/* The allocator inside or under the library, for naming the second one: "jemalloc" when
 * it carries jemalloc's API, "mimalloc (libmimalloc.so.2)" when it links that. */
static void lib_allocator(const struct doctor_elf *lib, char *buf, size_t size) {
  for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
    if (families[i].mark && (lib->defined & families[i].mark)) {
      snprintf(buf, size, "%s", families[i].name);
      return;
    }
  }
  for (size_t i = 0; i < lib->n_needed; i++)
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
      if (starts(lib->needed[i], families[f].soname_prefix)) {
        snprintf(buf, size, "%s (%s)", families[f].name, lib->needed[i]);
        return;
      }
  snprintf(buf, size, "its allocator");
}

static int lib_needs(const struct doctor_elf *lib, const char *soname) {
  for (size_t i = 0; i < lib->n_needed; i++)
    if (strcmp(lib->needed[i], soname) == 0)
      return 1;
  return 0;
}

/* A bare name found as execvp would find it (PATH, "." for an empty entry). */
static int find_in_path(const char *name, char *out, size_t size) {
  const char *path = getenv("PATH");
  if (!path || !*path)
    path = "/usr/bin:/bin";
  while (1) {
    size_t len = strcspn(path, ":");
    int n = snprintf(out, size, "%.*s/%s", (int)(len ? len : 1), len ? path : ".", name);
    struct stat st;
    if (n > 0 && (size_t)n < size && stat(out, &st) == 0 && S_ISREG(st.st_mode) &&
        access(out, X_OK) == 0)
      return 0;
    if (path[len] == '\0')
      return -1;
    path += len + 1;
  }
}

/* Set-user-ID, set-group-ID or file capabilities that put the loader in secure-execution
 * mode for this user (AT_SECURE: the effective ids differ from the real ones). */
static void check_secure(const char *prog, const struct stat *st) {
  char what[160] = "";
  if ((st->st_mode & S_ISUID) && st->st_uid != getuid()) {
    struct passwd *pw = getpwuid(st->st_uid);
    snprintf(what, sizeof what, "set-user-ID (to %s)", pw ? pw->pw_name : "another user");
  }
  /* Set-group-ID without group execute is mandatory locking, not a change of group. */
  if ((st->st_mode & S_ISGID) && (st->st_mode & S_IXGRP) && st->st_gid != getgid()) {
    struct group *gr = getgrgid(st->st_gid);
    size_t used = strlen(what);
    snprintf(what + used, sizeof what - used, "%sset-group-ID (to %s)", used ? " and " : "",
             gr ? gr->gr_name : "another group");
  }
#if defined(__linux__)
  /* Capabilities make execution secure for everyone but root. */
  if (!*what && getuid() != 0 && getxattr(prog, "security.capability", NULL, 0) > 0)
    snprintf(what, sizeof what, "given file capabilities");
#endif
  if (!*what)
    return;
  struct statvfs vfs;
  if (statvfs(prog, &vfs) == 0 && (vfs.f_flag & ST_NOSUID)) {
    say(OK, "%s is %s, but its file system is mounted nosuid, so that does not apply", prog, what);
    return;
  }
  say(REFUSE,
      "%s is %s: the loader will ignore LD_PRELOAD unless the library is installed in a "
      "trusted directory and marked setuid (ld.so(8): in secure-execution mode a preload "
      "path with a slash, as allocshim-run passes, is ignored, and only set-user-ID "
      "libraries in the standard search directories are loaded)",
      prog, what);
}

/* glibc's and musl's dynamic loaders have no interpreter of their own, yet, run as
 * "ld.so PROGRAM", they honour LD_PRELOAD: not to be called static. */
static int is_loader(const char *path) {
  char real[PATH_MAX];
  const char *name = base_name(realpath(path, real) ? real : path);
  return starts(name, "ld-linux") || starts(name, "ld64.so") || starts(name, "ld-musl") ||
         starts(name, "ld.so");
}

static void check(const char *prog, const struct doctor_elf *lib, int depth);

/* A script's interpreter is what LD_PRELOAD meets: "#!/usr/bin/env NAME" is followed
 * through PATH, as env would. */
static void check_script(const char *prog, const char *head, size_t n, const struct doctor_elf *lib,
                         int depth) {
  char line[256], interp[PATH_MAX];
  size_t len = 0;
  for (size_t i = 2; i < n && head[i] != '\n' && len + 1 < sizeof line; i++)
    line[len++] = head[i];
  line[len] = '\0';
  char *save = NULL, *word = strtok_r(line, " \t\r", &save);
  if (!word) {
    say(UNCHECKED, "%s starts with #! but names no interpreter: not checked", prog);
    return;
  }
  snprintf(interp, sizeof interp, "%s", word);
  if (strcmp(base_name(word), "env") == 0) {
    char *arg;
    while ((arg = strtok_r(NULL, " \t\r", &save)) && arg[0] == '-')
      ;
    if (arg && strchr(arg, '/')) {
      snprintf(interp, sizeof interp, "%s", arg);
    } else if (arg && find_in_path(arg, interp, sizeof interp) != 0) {
      say(UNCHECKED, "%s is a script for %s through env, which is not in PATH: not checked", prog, arg);
      return;
    }
  }
  say(OK, "%s is a script: its interpreter %s is what LD_PRELOAD acts on, checked instead", prog,
      interp);
  check(interp, lib, depth + 1);
}

static void check(const char *prog, const struct doctor_elf *lib, int depth) {
  struct stat st;
  if (depth > 4) { /* the kernel's own limit on nested interpreters is about this */
    say(UNCHECKED, "%s: too many nested #! interpreters: not checked", prog);
    return;
  }
  if (stat(prog, &st) != 0) {
    say(UNCHECKED, "%s: %s: not checked", prog, strerror(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    say(UNCHECKED, "%s is not a regular file: not checked", prog);
    return;
  }
  char head[256];
  ssize_t n = -1;
  struct stat opened;
  const char *why = "";
  int fd = open_regular(prog, &opened, &why);
  if (fd >= 0) {
    n = pread(fd, head, sizeof head, 0);
    int err = errno;
    close(fd);
    errno = err;
  }
  if (n >= 2 && head[0] == '#' && head[1] == '!') {
    /* The kernel ignores set-user-ID on scripts: only the interpreter's bits count. */
    check_script(prog, head, (size_t)n, lib, depth);
    return;
  }
  check_secure(prog, &st);
  if (n < 0) {
    say(UNCHECKED, "%s cannot be read (%s): its ELF headers were not checked", prog,
        fd < 0 ? why : strerror(errno));
    return;
  }
  struct doctor_elf e;
  if (read_elf(prog, &e, &why) != 0) {
    say(UNCHECKED, "%s: %s: not checked", prog, why);
    return;
  }
  if (e.type != 2 && e.type != 3) {
    say(UNCHECKED, "%s is an ELF file but not an executable (type %u): not checked", prog, e.type);
    return;
  }
  if (!e.has_interp && is_loader(prog)) {
    say(UNCHECKED,
        "%s is the dynamic loader: LD_PRELOAD acts on the program it is given to run, "
        "which is not checked here",
        prog);
    return;
  }
  if (!e.has_interp) {
    say(REFUSE,
        "%s is statically linked (no program interpreter): LD_PRELOAD cannot work on it, "
        "as no loader runs to preload anything; linking it with -lallocshim (or "
        "liballocshim.a) can",
        prog);
    return;
  }
  char pdesc[96], ldesc[96];
  int order = e.big_endian != lib->big_endian;
  describe(&e, order, pdesc, sizeof pdesc);
  describe(lib, order, ldesc, sizeof ldesc);
  const char *plibc = libc_of(&e), *llibc = libc_of(lib);
  if (e.bits != lib->bits || e.machine != lib->machine || order ||
      (plibc && llibc && strcmp(plibc, llibc) != 0)) {
    say(REFUSE,
        "%s cannot take this library, so LD_PRELOAD cannot work on it: program is %s; "
        "liballocshim is %s",
        prog, pdesc, ldesc);
    return;
  }

  char mine[96];
  lib_allocator(lib, mine, sizeof mine);
  if (e.symbols_read && (e.defined & SYM_MALLOC))
    say(WARN,
        "%s defines malloc itself: two allocators will run, the program's own malloc "
        "(which comes first in symbol lookup, so it serves the program's calls) and "
        "liballocshim's %s",
        prog, mine);
  for (size_t i = 0; i < e.n_needed; i++) {
    if (starts(e.needed[i], "liballocshim.so"))
      say(OK, "%s links %s already: its malloc is allocshim's without preloading", prog,
          e.needed[i]);
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
      const struct family *fam = &families[f];
      if (!starts(e.needed[i], fam->soname_prefix))
        continue;
      if ((fam->mark && (lib->defined & fam->mark)) || lib_needs(lib, e.needed[i]))
        say(OK,
            "%s links %s, but liballocshim serves %s's API itself, so its calls reach one "
            "allocator (the library is still loaded)",
            prog, e.needed[i], fam->name);
      else
        say(WARN, "%s links %s: two allocators will run, %s and liballocshim's %s", prog,
            e.needed[i], fam->name, mine);
      break;
    }
  }
  if (e.needed_dropped)
    say(OK,
        "%s: %zu of the libraries it links have names too long to check for a second "
        "allocator",
        prog, e.needed_dropped);
  if (verdict == OK)
    say(OK, "%s: preloading will work (%s, dynamically linked)", prog, pdesc);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: allocshim-doctor PROGRAM LIBRARY\n"
                    "Says whether LD_PRELOAD=LIBRARY can work on PROGRAM; exit 0 yes, 1 yes "
                    "with a second allocator, 2 no, 3 not checked, 4 usage or library unreadable\n");
    return USAGE;
  }
  struct doctor_elf lib;
  const char *why = "";
  if (read_elf(argv[2], &lib, &why) != 0) {
    fprintf(stderr, "allocshim-doctor: %s: %s\n", argv[2], why);
    return USAGE;
  }
  /* allocshim-run tries the library on true only where true can take it; the library's
   * own public name is what stands for that trial elsewhere. */
  if (!(lib.defined & SYM_ALLOC_VERSION)) {
    fprintf(stderr, "allocshim-doctor: %s: not a liballocshim (no alloc_version)\n", argv[2]);
    return USAGE;
  }
  check(argv[1], &lib, 0);
  if (fflush(stdout) != 0 || ferror(stdout))
    return USAGE;
  return verdict;
}
