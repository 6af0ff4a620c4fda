/* Heap profiles in pprof's format: finds, checks and loads the converter plugin
 * (src/pprof_plugin.h) the first time a pprof dump is asked for, and runs it. */
#define _GNU_SOURCE
#include "internal.h"
#include "pprof_plugin.h"

#include <allocshim.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where an installed static program finds the plugin; the build says (CMakeLists.txt). */
#ifndef ALLOCSHIM_PLUGIN_DIR
#define ALLOCSHIM_PLUGIN_DIR "/usr/local/lib/allocshim"
#endif

static _Atomic(pprof_plugin_convert) convert;
static pthread_mutex_t loading = PTHREAD_MUTEX_INITIALIZER;

/* "<directory of the library>/allocshim", when the library was loaded by an absolute
 * name; "" otherwise. Linked statically, the shim is part of the program, whose name
 * dladdr() takes from argv[0], which whoever starts it chooses. A relative name would
 * be taken from wherever the program has chdir()ed to since. */
static void beside_library(char *dir, size_t cap) {
  Dl_info info, program;
  dir[0] = '\0';
  if (dladdr((void *)beside_library, &info) == 0 || info.dli_fname == NULL ||
      info.dli_fname[0] != '/')
    return;
  if (dladdr((void *)getauxval(AT_PHDR), &program) != 0 && program.dli_fbase == info.dli_fbase)
    return; /* the program's headers and this code share one object */
  const char *slash = strrchr(info.dli_fname, '/');
  int n = snprintf(dir, cap, "%.*s/allocshim", (int)(slash - info.dli_fname), info.dli_fname);
  if (n < 0 || (size_t)n >= cap)
    dir[0] = '\0';
}

/* The plugin in `dir`, opened and checked: a root process must not run code another
 * user could have put there. The directory and those above it are trusted as a
 * profile's directory is; the file itself must be a regular file that root or we own
 * and that nobody else may write. A descriptor; -1 with errno ENOENT when it is not
 * there, or another errno with `why` filled in. */
static int open_plugin(const char *dir, char *why, size_t cap) {
  int dfd = trusted_dir_open(dir, false, "to load the pprof converter from", why, cap);
  if (dfd < 0)
    return -1;
  int fd = openat(dfd, PPROF_PLUGIN_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  int err = errno;
  close(dfd);
  if (fd < 0) {
    if (err != ENOENT)
      snprintf(why, cap, "cannot open the pprof converter %s/%s: %s", dir, PPROF_PLUGIN_FILE,
               strerror(err));
    errno = err;
    return -1;
  }
  struct stat st;
  const char *bad = NULL;
  if (fstat(fd, &st) != 0)
    bad = "unreadable";
  else if (!S_ISREG(st.st_mode))
    bad = "not a regular file";
  else if (!trusted_owner(st.st_uid))
    bad = "owned by another user";
  else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    bad = "writable by its group or others";
  if (bad == NULL)
    return fd;
  snprintf(why, cap, "refusing to load the pprof converter %s/%s: it is %s", dir, PPROF_PLUGIN_FILE,
           bad);
  close(fd);
  errno = EPERM;
  return -1;
}

/* dlopen()s exactly the file checked: through its descriptor, not its name again. */
static pprof_plugin_convert load_plugin(int fd, const char *dir, char *why, size_t cap) {
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  void *handle = dlopen(self, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    const char *e = dlerror();
    snprintf(why, cap, "cannot load the pprof converter %s/%s: %s", dir, PPROF_PLUGIN_FILE,
             e ? e : "unknown error");
    return NULL;
  }
  pprof_plugin_convert fn = (pprof_plugin_convert)dlsym(handle, PPROF_PLUGIN_ENTRY);
  if (fn == NULL) {
    snprintf(why, cap, "%s/%s is not this version's pprof converter (no %s)", dir,
             PPROF_PLUGIN_FILE, PPROF_PLUGIN_ENTRY);
    dlclose(handle);
  }
  return fn; /* loaded for good: never unloaded while a dump could need it */
}

int pprof_ready(char *why, size_t cap) {
  why[0] = '\0';
  if (atomic_load(&convert) != NULL)
    return ALLOC_OK;
  pthread_mutex_lock(&loading);
  char dirs[2][PATH_MAX];
  beside_library(dirs[0], sizeof dirs[0]);
  snprintf(dirs[1], sizeof dirs[1], "%s", ALLOCSHIM_PLUGIN_DIR);
  int status = ALLOC_ENOTSUP, err = ENOTSUP;
  for (int i = 0; i < 2 && atomic_load(&convert) == NULL; i++) {
    if (dirs[i][0] == '\0' || (i == 1 && strcmp(dirs[0], dirs[1]) == 0))
      continue;
    int fd = open_plugin(dirs[i], why, cap);
    if (fd < 0 && errno == ENOENT)
      continue; /* not installed there: look in the next place */
    if (fd < 0) {
      status = ALLOC_EIO, err = errno;
      break;
    }
    pprof_plugin_convert fn = load_plugin(fd, dirs[i], why, cap);
    if (fn == NULL) {
      close(fd);
      break; /* ALLOC_ENOTSUP: the part is there but cannot work here */
    }
    /* The descriptor stays open for good: the loader keeps "/proc/self/fd/N" as the
     * plugin's name, and a later dlopen of that name (a program loading a memfd) must
     * not be handed the plugin because N was free again. */
    atomic_store(&convert, fn);
  }
  pthread_mutex_unlock(&loading);
  if (atomic_load(&convert) != NULL) {
    why[0] = '\0';
    return ALLOC_OK;
  }
  if (why[0] == '\0')
    snprintf(why, cap,
             "pprof output needs allocshim's converter, %s, found neither in %s nor in %s; "
             "install it, or dump to a name not ending in .pb.gz for jeprof's format",
             PPROF_PLUGIN_FILE, dirs[0][0] ? dirs[0] : "(the library's directory)", dirs[1]);
  errno = err;
  return status;
}

int pprof_from_heap(int heap, char *why, size_t cap) {
  pprof_plugin_convert fn = atomic_load(&convert);
  if (fn == NULL) {
    errno = ENOTSUP;
    return -1;
  }
  int out = memfd_create("allocshim-pprof", MFD_CLOEXEC);
  if (out < 0)
    return -1;
  char err[512] = "";
  if (fn(heap, out, err, sizeof err) == 0)
    return out;
  snprintf(why, cap, "converting the heap profile to pprof's format: %s", err);
  close(out);
  errno = EIO;
  return -1;
}
